"""Faults injected inside the crawler's batch write, at each of its steps, by PostgreSQL itself.

A trigger on one table fires at its Nth write statement and either blocks (the test then
kills the crawler with -9 while its transaction is open, and resumes the crawl) or terminates
its own backend (the crawler sees the database go away mid-write and replays the batch).
Either way the crawl must end with exactly the rows *and counters* of an uninterrupted one:
a batch whose rows and "done" marks committed apart would leave requests done without their
rows, or rows without their requests (redone, their images no longer "new").

The same triggers also hold a write on a lock for the whole crawl, refuse writes for longer
than the retry window, or fail one for no known reason: the crawl must either finish exactly
or stop unfinished and resume exactly. And faults of another kind: rows the database refuses
for what they hold, URLs that are not URLs. One page must not be able to stall a crawl.
"""

from __future__ import annotations

import os
import random
import signal
import string
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import psycopg
import pytest
from psycopg import sql

from tests.crawl_site import (
    ROOT,
    Handler,
    Resource,
    Site,
    crawl_command,
    crawl_reference,
    html,
    jpeg,
    linked_routes,
    reference_database,
    run_crawl,
    snapshot,
    wait_for,
)

# Where the write fails: (table, which write statement on it since the crawl began). Each is
# past the crawl's first batch, so some rows are already in when the fault comes.
STEPS = {
    "new requests": ("crawl_requests", 4),
    "image refs": ("crawl_image_refs", 2),
    "images": ("images", 2),
    "thumbnails": ("thumbnails", 2),
    "pages": ("pages", 2),
    "sightings": ("sightings", 2),
    "counters": ("crawls", 2),  # on crawls: the second batch that stores new images
    "commit": ("crawls", 2),  # a deferred trigger: it runs while the transaction commits
}
HOLD_KEY = 0x46_41_55_4C  # the advisory lock a blocking fault waits on while the test holds it
ARGS = ("--depth", "50", "-s", "CONCURRENT_REQUESTS_PER_DOMAIN=1")


@pytest.fixture(scope="module")
def site() -> Iterator[Site]:
    """12 pages, 18 images and one image URL that is not an image: a few batches' worth."""
    routes = linked_routes(12, 18)
    routes["/i3.jpg"] = Resource(b"not an image", content_type="image/jpeg")
    with Site(routes, delay=0.03) as served:
        yield served


@pytest.fixture(scope="module")
def expected(
    site: Site, server_url: str, tmp_path_factory: pytest.TempPathFactory
) -> tuple[dict[str, set[tuple[object, ...]]], list[tuple[object, ...]]]:
    """The rows and crawl counters of the same crawl, uninterrupted."""
    env = {**os.environ, "LOOKALIKE_HOME": str(tmp_path_factory.mktemp("home"))}
    with reference_database(server_url) as url:
        crawl_reference(env, url, site.url("/p0"), *ARGS)
        return snapshot(url), _crawls(url)


def _kill_9(crawl: subprocess.Popen[bytes], log: Path) -> None:
    crawl.send_signal(signal.SIGKILL)
    crawl.wait()


def _ctrl_c_twice(crawl: subprocess.Popen[bytes], log: Path) -> None:
    """The first asks Scrapy to stop after the work in hand: it waits for the blocked write.
    The second, once it has waited a while, forces it out. On a loaded machine the crawl may
    have fetched everything before the first arrives: it is then closing as "finished"."""
    crawl.send_signal(signal.SIGINT)
    wait_for(lambda: "Closing spider (" in log.read_text(), 30)
    time.sleep(2)  # the pipeline is waiting for its writer by now
    crawl.send_signal(signal.SIGINT)
    crawl.wait(timeout=30)


@pytest.mark.parametrize(
    ("stop", "step"),
    [pytest.param(_kill_9, step, id=f"kill -9 at {step}") for step in STEPS]
    + [pytest.param(_ctrl_c_twice, "sightings", id="ctrl-c twice at sightings")],
)
def test_stopped_inside_a_batch_write_then_resumed_gives_the_same_rows_and_counters(
    stop: Callable[[subprocess.Popen[bytes], Path], None],
    step: str,
    site: Site,
    expected: object,
    database_url: str,
    cli_env: dict[str, str],
    tmp_path: Path,
) -> None:
    log = tmp_path / "crawl.log"
    with psycopg.connect(database_url, autocommit=True) as holder, log.open("wb") as output:
        holder.execute("SELECT pg_advisory_lock(%s)", (HOLD_KEY,))
        _arm(database_url, step, "hang")
        crawl = subprocess.Popen(
            crawl_command(site.url("/p0"), *ARGS),
            env=cli_env,
            cwd=ROOT,
            stdout=subprocess.DEVNULL,
            stderr=output,
        )
        try:
            wait_for(lambda: _waiting_on_fault(holder), 60)
        finally:
            stop(crawl, log)
        # The dead crawler's backend would go on once the lock is free: end it first.
        holder.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE datname = current_database() AND pid <> pg_backend_pid()"
        )
    _disarm(database_url)
    _resume_and_compare(site, expected, database_url, cli_env)


@pytest.mark.parametrize("step", STEPS)
def test_database_lost_inside_a_batch_write_is_replayed_exactly(
    step: str, site: Site, expected: object, database_url: str, cli_env: dict[str, str]
) -> None:
    _arm(database_url, step, "terminate")
    result = run_crawl(cli_env, site.url("/p0"), *ARGS)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "database unavailable, retrying" in result.stderr
    assert (snapshot(database_url), _crawls(database_url)) == expected


def test_a_write_hung_on_a_lock_is_cancelled_and_replayed_exactly(
    site: Site, expected: object, database_url: str, cli_env: dict[str, str]
) -> None:
    with psycopg.connect(database_url, autocommit=True) as holder:
        holder.execute("SELECT pg_advisory_lock(%s)", (HOLD_KEY,))
        _arm(database_url, "sightings", "hang")  # held for the whole crawl
        result = run_crawl(
            cli_env, site.url("/p0"), *ARGS, "-s", "LOOKALIKE_DB_STATEMENT_SECONDS=1"
        )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "canceling statement due to statement timeout" in result.stderr
    assert (snapshot(database_url), _crawls(database_url)) == expected


def test_a_write_failing_for_no_known_reason_stops_the_crawl_resumable(
    site: Site, expected: object, database_url: str, cli_env: dict[str, str]
) -> None:
    _arm(database_url, "images", "bug")  # neither an outage nor the rows' fault: stop
    stopped = run_crawl(cli_env, site.url("/p0"), *ARGS)
    assert "could not write a batch" in stopped.stderr
    assert _crawls(database_url)[0][0] is None
    _disarm(database_url)
    _resume_and_compare(site, expected, database_url, cli_env)


def test_database_lost_while_finishing_the_crawl_leaves_it_to_the_next_run(
    site: Site, expected: object, database_url: str, cli_env: dict[str, str]
) -> None:
    _arm(database_url, "finish", "terminate")
    first = run_crawl(cli_env, site.url("/p0"), *ARGS)
    assert "could not record the end of crawl 1" in first.stderr
    assert _crawls(database_url)[0][0] is None
    _disarm(database_url)
    _resume_and_compare(site, expected, database_url, cli_env)


def test_writer_giving_up_as_the_crawl_ends_leaves_it_resumable(
    site: Site, expected: object, database_url: str, cli_env: dict[str, str]
) -> None:
    # Every batch with sightings refused from the first: the pages are all fetched long
    # before the writer stops retrying, so the crawl "runs out of work" with nothing stored.
    _arm(database_url, "sightings", "outage")
    stopped = run_crawl(cli_env, site.url("/p0"), *ARGS, "-s", "LOOKALIKE_DB_RETRY_SECONDS=3")
    assert "database unavailable, retrying" in stopped.stderr
    assert _crawls(database_url)[0][0] is None  # unfinished: its requests are pending
    _disarm(database_url)
    _resume_and_compare(site, expected, database_url, cli_env)


def test_a_page_whose_rows_the_database_refuses_is_counted_and_the_crawl_goes_on(
    cli_env: dict[str, str],
) -> None:
    # Each URL is within the crawler's 2,048 characters, but the pair keys crawl_image_refs
    # with 2 KB+ of incompressible text: past PostgreSQL's 2,704-byte index row limit.
    rng = random.Random(9)
    long_page, long_image = ("/" + "".join(rng.choices(string.ascii_letters, k=1500)) for _ in "ab")
    routes = {
        "/": html(f'<a href="{long_page}">long</a><img src="/a.jpg">'),
        long_page: html(f'<img src="{long_image}.jpg"><img src="/b.jpg">'),
        "/a.jpg": jpeg(1),
        "/b.jpg": jpeg(2),
        f"{long_image}.jpg": jpeg(3),
    }
    assert _crawl_row(routes, cli_env) == ("finished", 1, 3, {"not storable": 1})


def test_a_page_with_malformed_urls_is_recorded_without_them(cli_env: dict[str, str]) -> None:
    # urljoin and w3lib raise ValueError on these: the whole page used to be lost with them.
    bad = '<img src="http://[oops/x.jpg"><img src="http://127.0.0.1:port/y.jpg">'
    routes = {
        "/": html(f'<a href="/next">next</a>{bad}<img src="/a.jpg">'),
        "/next": html('<img src="/b.jpg">'),
        "/a.jpg": jpeg(1),
        "/b.jpg": jpeg(2),
    }
    assert _crawl_row(routes, cli_env) == ("finished", 2, 2, {})


def _resume_and_compare(
    site: Site, expected: object, database_url: str, cli_env: dict[str, str]
) -> None:
    """Run the same command again: it must end with the rows of an uninterrupted crawl."""
    resumed = run_crawl(cli_env, site.url("/p0"), *ARGS)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert (snapshot(database_url), _crawls(database_url)) == expected


def _crawl_row(
    routes: dict[str, Resource | Handler], cli_env: dict[str, str]
) -> tuple[object, ...]:
    """Crawl a site of ``routes`` to the end: (outcome, pages, new images, errors)."""
    with Site(routes) as served:
        result = run_crawl(cli_env, served.url("/"), "-s", "LOOKALIKE_DB_RETRY_SECONDS=5")
    assert result.returncode == 0, result.stderr[-3000:]
    with psycopg.connect(cli_env["DATABASE_URL"]) as conn:
        assert conn.execute(
            "SELECT count(*) FROM crawl_requests WHERE done_at IS NULL"
        ).fetchone() == (0,)
        row = conn.execute("SELECT outcome, pages, new_images, errors FROM crawls").fetchone()
    assert row is not None
    return row


# Steps on the crawls row fire on its update by a batch that stored new images, or by the end.
_ROW_TRIGGERS = {
    "counters": "TRIGGER lookalike_test_fault AFTER UPDATE ON {} FOR EACH ROW "
    "WHEN (NEW.new_images > OLD.new_images)",
    "commit": "CONSTRAINT TRIGGER lookalike_test_fault AFTER UPDATE ON {} "
    "DEFERRABLE INITIALLY DEFERRED FOR EACH ROW WHEN (NEW.new_images > OLD.new_images)",
    "finish": "TRIGGER lookalike_test_fault AFTER UPDATE ON {} FOR EACH ROW "
    "WHEN (NEW.outcome IS NOT NULL)",
}


def _arm(url: str, step: str, action: str) -> None:
    """Make the Nth write statement of a step fail as ``action`` says."""
    table, nth = STEPS.get(step, ("crawls", 1))
    when = sql.SQL(
        _ROW_TRIGGERS.get(
            step, "TRIGGER lookalike_test_fault AFTER INSERT OR UPDATE ON {} FOR EACH STATEMENT"
        )
    ).format(sql.Identifier(table))
    fault = {
        "hang": sql.SQL("PERFORM pg_advisory_xact_lock({});").format(sql.Literal(HOLD_KEY)),
        "terminate": sql.SQL("PERFORM pg_terminate_backend(pg_backend_pid());"),
        "outage": sql.SQL("RAISE EXCEPTION 'test outage' USING ERRCODE = 'cannot_connect_now';"),
        "bug": sql.SQL("RAISE EXCEPTION 'test bug' USING ERRCODE = 'internal_error';"),
    }[action]
    # An outage goes on from the Nth statement; the other faults strike once.
    comparison = sql.SQL(">=" if action == "outage" else "=")
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("CREATE SEQUENCE lookalike_test_fault_calls")
        conn.execute(
            sql.SQL(
                """
                CREATE FUNCTION lookalike_test_fault() RETURNS trigger LANGUAGE plpgsql AS $$
                BEGIN
                    IF nextval('lookalike_test_fault_calls') {} {} THEN {} END IF;
                    RETURN NULL;
                END $$
                """
            ).format(comparison, sql.Literal(nth), fault)
        )
        conn.execute(sql.SQL("CREATE {} EXECUTE FUNCTION lookalike_test_fault()").format(when))


def _disarm(url: str) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("DROP FUNCTION lookalike_test_fault() CASCADE")


def _waiting_on_fault(conn: psycopg.Connection) -> bool:
    row = conn.execute(
        "SELECT count(*) FROM pg_locks l JOIN pg_database d ON d.oid = l.database "
        "WHERE d.datname = current_database() AND l.locktype = 'advisory' "
        "AND l.objid = %s AND l.objsubid = 1 AND NOT l.granted",
        (HOLD_KEY,),
    ).fetchone()
    return row == (1,)


def _crawls(url: str) -> list[tuple[object, ...]]:
    with psycopg.connect(url) as conn:
        return conn.execute(
            "SELECT outcome, pages, images_seen, new_images, new_sightings, errors FROM crawls"
        ).fetchall()
