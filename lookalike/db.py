"""Connections, the schema, and throwaway databases for tests and benchmarks."""

from __future__ import annotations

import contextlib
import secrets
from collections.abc import Iterator
from importlib import resources

import psycopg
from psycopg import conninfo, sql
from psycopg_pool import ConnectionPool

from lookalike.config import DatabaseUnavailable
from lookalike.wording import first_line

# Any constant works: it only has to be the same in every process applying the schema, so that
# two programs starting at once do not race on CREATE TABLE IF NOT EXISTS.
_SCHEMA_LOCK_KEY = 0x10_0C_A1_1C
CONNECT_TIMEOUT_SECONDS = 10


def schema_sql() -> str:
    """The text of ``schema.sql``, shipped inside the package."""
    return resources.files("lookalike").joinpath("schema.sql").read_text(encoding="utf-8")


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


def apply_schema(url: str) -> None:
    """Create or update every table, index, function and view; safe to run again."""
    with connect(url) as conn:
        try:
            with conn.transaction():
                conn.execute("SELECT pg_advisory_xact_lock(%s)", (_SCHEMA_LOCK_KEY,))
                conn.execute("SET LOCAL client_min_messages = warning")
                conn.execute(schema_sql().encode())
        except psycopg.Error as error:
            # e.g. no CREATE privilege, or objects made by an incompatible older schema
            raise DatabaseUnavailable(
                f"cannot apply schema.sql to {describe_server(url)}: {first_line(error)}"
            ) from None


def open_pool(
    url: str,
    *,
    max_size: int = 4,
    init_schema: bool = True,
    timeout: float = 30.0,
) -> ConnectionPool:
    """A connection pool on ``url``; checks the server answers and applies the schema first.

    ``timeout``: how long a caller waits for a connection before PoolTimeout.
    """
    if init_schema:
        apply_schema(url)
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
