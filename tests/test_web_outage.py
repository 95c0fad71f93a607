"""The site while its database fails: a stopped server, a database dropped and re-created empty.

Real PostgreSQL throughout: the outage is a relay in front of it being shut, the re-creation a
real DROP DATABASE … WITH (FORCE) and CREATE DATABASE under the running site.
"""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor

import pytest
from flask import Flask
from psycopg import conninfo, sql

from lookalike.store.db import connect
from tests.web_support import TcpRelay, running_app

DHASH = {"dhash": "0123456789abcdef"}


def _timed_get(app: Flask, path: str) -> tuple[int, float, str | None]:
    started = time.monotonic()
    response = app.test_client().get(path)
    return response.status_code, time.monotonic() - started, response.headers.get("Retry-After")


def _until_ok(app: Flask, path: str, seconds: float) -> list[int]:
    """Statuses of ``path``, asked every 0.2 s until it answers 200 or time is up."""
    statuses: list[int] = []
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline and statuses[-1:] != [200]:
        statuses.append(app.test_client().get(path).status_code)
        time.sleep(0.2)
    return statuses


def test_during_an_outage_requests_get_503_at_once_and_the_site_recovers(
    database_url: str,
) -> None:
    relay = TcpRelay(database_url)
    with relay, running_app(relay.url) as app:
        assert app.test_client().get("/api/stats").status_code == 200
        relay.stop()
        with ThreadPoolExecutor(16) as clients:
            answers = list(clients.map(lambda _: _timed_get(app, "/api/stats"), range(32)))
        search = app.test_client().post("/api/search", json=DHASH)
        relay.start()  # the server is back, on the same port
        recovered = _until_ok(app, "/api/stats", 10)
    assert {status for status, _, _ in answers} == {503}
    assert max(elapsed for _, elapsed, _ in answers) < 1
    assert {retry_after for _, _, retry_after in answers} == {"2"}
    assert search.status_code == 503
    assert recovered[-1] == 200 and set(recovered) <= {503, 200}


@pytest.mark.parametrize("emptied", ["database re-created", "schema re-created"])
def test_a_database_emptied_under_the_site_gets_its_schema_back(
    database_url: str, server_url: str, emptied: str
) -> None:
    name = sql.Identifier(conninfo.conninfo_to_dict(database_url)["dbname"])
    with running_app(database_url) as app:
        assert app.test_client().get("/").status_code == 200
        if emptied == "database re-created":
            with connect(server_url, autocommit=True) as admin:
                admin.execute(sql.SQL("DROP DATABASE {} WITH (FORCE)").format(name))
                admin.execute(sql.SQL("CREATE DATABASE {}").format(name))
        else:  # the site's connections stay open, their queries find no tables
            with connect(database_url, autocommit=True) as owner:
                owner.execute("DROP SCHEMA public CASCADE")
                owner.execute("CREATE SCHEMA public")
        home = _until_ok(app, "/", 10)
        client = app.test_client()
        search = client.post("/api/search", json=DHASH)
        check = client.post("/api/check", json=DHASH)
    assert home[-1] == 200 and set(home) <= {503, 200}, home
    assert (search.status_code, search.get_json()["total"]) == (200, 0)
    assert check.get_json() == {"flagged": False, "matches": []}


def test_one_failed_query_is_a_503_but_not_an_outage(database_url: str) -> None:
    """A lock timeout fails that request only: the next one, once the lock is gone, is served."""
    with (
        running_app(f"{database_url} options='-c lock_timeout=200'") as app,
        connect(database_url) as locker,
    ):
        assert app.test_client().get("/api/stats").status_code == 200
        with locker.transaction():
            locker.execute("LOCK TABLE images IN ACCESS EXCLUSIVE MODE")
            blocked = app.test_client().get("/api/stats")
        after = app.test_client().get("/api/stats")
    assert (blocked.status_code, after.status_code) == (503, 200)
