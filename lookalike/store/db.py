"""Connections, migrating on first use, and throwaway databases for tests and benchmarks."""

from __future__ import annotations

import contextlib
import secrets
from collections.abc import Callable, Iterator

import psycopg
from psycopg import conninfo, sql
from psycopg_pool import ConnectionPool

from lookalike.config import DatabaseUnavailable
from lookalike.store.migrate import Schema, bring_up_to_date

CONNECT_TIMEOUT_SECONDS = 10


def describe_server(url: str) -> str:
    """``host:port/dbname`` for messages, without the password."""
    params = conninfo.conninfo_to_dict(url)
    host = params.get("host") or "localhost"
    port = params.get("port") or 5432
    return f"{host}:{port}/{params.get('dbname') or params.get('user') or ''}"


def connect(url: str, **kwargs: object) -> psycopg.Connection:
    """Connect, turning any failure into :class:`DatabaseUnavailable` with a one-line reason."""
    try:
        return psycopg.connect(url, connect_timeout=CONNECT_TIMEOUT_SECONDS, **kwargs)
    except psycopg.Error as error:
        reason = (str(error).strip().splitlines() or ["connection failed"])[-1]
        raise DatabaseUnavailable(
            f"cannot connect to the database at {describe_server(url)}: {reason}"
        ) from None


def apply_migrations(
    url: str, schema: Schema | None = None, on_step: Callable[[str], None] | None = None
) -> list[str]:
    """Bring the database up to date (see lookalike.store.migrate); what was done, one line each.

    Raises :class:`DatabaseUnavailable` in one line when it cannot connect or apply a step
    (e.g. no CREATE privilege, an edited migration, a database migrated by a newer Lookalike).
    """
    with connect(url) as conn:
        return bring_up_to_date(conn, describe_server(url), schema, on_step)


def open_pool(
    url: str,
    *,
    max_size: int = 4,
    init_schema: bool = True,
    timeout: float = 30.0,
) -> ConnectionPool:
    """A connection pool on ``url``; checks the server answers and migrates it first.

    ``timeout``: how long a caller waits for a connection before PoolTimeout.
    """
    if init_schema:
        apply_migrations(url)
    else:
        connect(url).close()
    return ConnectionPool(
        url,
        min_size=1,
        max_size=max_size,
        kwargs={"connect_timeout": CONNECT_TIMEOUT_SECONDS},
        open=True,
        name="lookalike",
        timeout=timeout,
    )


def with_database(url: str, dbname: str) -> str:
    """The same server and credentials as ``url``, another database."""
    params = conninfo.conninfo_to_dict(url)
    params["dbname"] = dbname
    return conninfo.make_conninfo("", **params)


def with_statement_timeout(url: str, seconds: float) -> str:
    """``url`` whose sessions cancel any statement running (or waiting on a lock) longer."""
    params = conninfo.conninfo_to_dict(url)
    timeout = f"-c statement_timeout={max(1, round(seconds * 1000))}"
    params["options"] = f"{params.get('options') or ''} {timeout}".strip()
    return conninfo.make_conninfo("", **params)


@contextlib.contextmanager
def scratch_database(url: str, prefix: str = "lookalike_scratch") -> Iterator[str]:
    """Create a fresh database beside ``url``'s, yield its URL, drop it afterwards."""
    name = f"{prefix}_{secrets.token_hex(4)}"
    with connect(url, autocommit=True) as admin:
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        yield with_database(url, name)
    finally:
        with connect(url, autocommit=True) as admin:
            admin.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )
