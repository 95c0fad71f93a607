"""Fixtures: a real PostgreSQL (``$DATABASE_URL`` or an embedded server) and fresh databases.

Every test that touches the database gets its own database, cloned from a template that has
the schema applied once per test run, so tests never see each other's rows. Every test, and
every subprocess it starts, runs behind ``tests/netguard``: connects outside 127.0.0.0/8 and
::1 are refused, and a test that attempted one fails.
"""

from __future__ import annotations

import json
import os
import secrets
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from psycopg import sql

from lookalike.config import embedded_database_url
from lookalike.store import Store
from lookalike.store.db import apply_migrations, connect, open_pool, with_database
from tests.crawl_site import reference_database
from tests.netguard import netguard

NETGUARD_DIR = Path(__file__).parent / "netguard"
StubHosts = Callable[[dict[str, list[list[str]]]], dict[str, str]]


@pytest.fixture(scope="session", autouse=True)
def _guarded_network() -> Iterator[None]:
    """This process and every subprocess started from ``os.environ`` connect to loopback only."""
    netguard.install()
    saved = os.environ.get("PYTHONPATH")
    os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (str(NETGUARD_DIR), saved) if p)
    yield
    if saved is None:
        del os.environ["PYTHONPATH"]
    else:
        os.environ["PYTHONPATH"] = saved


class GuardedConnects:
    """Connects the guard refused during one test, in this process and its subprocesses."""

    def __init__(self, log: Path) -> None:
        self.log = log

    def attempts(self) -> list[str]:
        logged = self.log.read_text().splitlines() if self.log.exists() else []
        return netguard.refused + logged

    def clear(self) -> None:
        netguard.refused.clear()
        self.log.unlink(missing_ok=True)


@pytest.fixture(autouse=True)
def guarded_connects(
    tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> Iterator[GuardedConnects]:
    """Fails the test if anything it ran tried to connect outside this machine."""
    log = tmp_path_factory.mktemp("netguard") / "refused-connects"
    monkeypatch.setenv(netguard.CONNECT_LOG_VARIABLE, str(log))
    record = GuardedConnects(log)
    record.clear()
    yield record
    attempts = record.attempts()
    record.clear()
    netguard.stub({})
    if attempts:
        pytest.fail(f"tried to connect outside this machine: {attempts}")


@pytest.fixture
def stub_hosts() -> StubHosts:
    """Resolve chosen names to chosen answers here; returns the env entries for subprocesses."""

    def stub(names: dict[str, list[list[str]]]) -> dict[str, str]:
        netguard.stub(names)
        return {netguard.HOSTS_VARIABLE: json.dumps(names)}

    return stub


@pytest.fixture(scope="session")
def server_url() -> Iterator[str]:
    """A PostgreSQL server: ``$DATABASE_URL``'s, or an embedded one for this run only."""
    configured = os.environ.get("DATABASE_URL")
    if configured:
        yield configured
        return
    with tempfile.TemporaryDirectory(prefix="lookalike-test-pg-") as home:
        yield embedded_database_url(Path(home) / "pgdata", keep_running=False)


def _create_database(server: str, name: str, template: str | None = None) -> str:
    statement = sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name))
    if template:
        statement += sql.SQL(" TEMPLATE {}").format(sql.Identifier(template))
    with connect(server, autocommit=True) as admin:
        admin.execute(statement)
    return with_database(server, name)


def _drop_database(server: str, name: str) -> None:
    with connect(server, autocommit=True) as admin:
        admin.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
        )


@pytest.fixture(scope="session")
def template_database(server_url: str) -> Iterator[str]:
    """Name of a database with the schema applied, cloned for each test."""
    name = f"lookalike_test_template_{secrets.token_hex(4)}"
    apply_migrations(_create_database(server_url, name))
    yield name
    _drop_database(server_url, name)


@pytest.fixture
def database_url(server_url: str, template_database: str) -> Iterator[str]:
    """URL of a fresh database with the schema applied, dropped after the test."""
    name = f"lookalike_test_{secrets.token_hex(6)}"
    url = _create_database(server_url, name, template=template_database)
    yield url
    _drop_database(server_url, name)


@pytest.fixture
def reference_url(server_url: str) -> Iterator[str]:
    """A second fresh database, for an uninterrupted crawl to compare a disturbed one with."""
    with reference_database(server_url) as url:
        yield url


@pytest.fixture
def store(database_url: str) -> Iterator[Store]:
    with Store(open_pool(database_url, init_schema=False)) as opened:
        yield opened


@pytest.fixture
def cli_env(database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """Environment for running ``lookalike`` against the test database in a subprocess."""
    env = {**os.environ, "DATABASE_URL": database_url, "LOOKALIKE_HOME": str(tmp_path / "home")}
    monkeypatch.setenv("DATABASE_URL", database_url)
    return env
