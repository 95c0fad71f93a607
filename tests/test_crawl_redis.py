"""Two `lookalike crawl --redis` workers share one frontier: nothing fetched twice, nothing
missed, the same rows as one process would leave."""

from __future__ import annotations

import re
import subprocess
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler

import psycopg
import pytest
import redis

from tests.crawl_site import (
    ROOT,
    Site,
    crawl_command,
    crawl_reference,
    linked_routes,
    progress,
    send,
    snapshot,
    wait_for,
)

PAGES = 30
IMAGES = 45

REDIS_URL = "redis://127.0.0.1:6379/0"


@pytest.fixture
def redis_client() -> redis.Redis:
    client = redis.Redis.from_url(REDIS_URL)
    try:
        client.ping()
    except redis.ConnectionError:
        pytest.skip(f"no Redis at {REDIS_URL}")
    return client


@pytest.fixture
def site() -> Iterator[Site]:
    """100 ms a response, and the first page takes 2.5 s: time for both workers to be up before
    there is work to share, even on a busy machine."""
    routes = linked_routes(PAGES, IMAGES)
    first_page = routes["/p0"]

    def slow_first_page(handler: BaseHTTPRequestHandler) -> None:
        time.sleep(2.5)
        send(handler, first_page)  # type: ignore[arg-type]

    routes["/p0"] = slow_first_page
    with Site(routes, delay=0.1) as served:
        yield served


def test_two_workers_share_one_frontier(
    site: Site,
    database_url: str,
    reference_url: str,
    cli_env: dict[str, str],
    redis_client: redis.Redis,
) -> None:
    args = [site.url("/p0"), "--depth", "50", "-s", "DOWNLOAD_TIMEOUT=10"]
    crawl_reference(cli_env, reference_url, *args)
    site.hits.clear()

    # Each worker takes at most 4 requests off the shared queue at a time, leaving the rest.
    worker_args = crawl_command(
        *args, "--redis", REDIS_URL, "-s", "CONCURRENT_REQUESTS=4",
        "-s", "LOOKALIKE_STALLED_SECONDS=600",
    )  # fmt: skip
    workers = [
        subprocess.Popen(
            worker_args, env=cli_env, cwd=ROOT, stderr=subprocess.PIPE, stdout=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]  # fmt: skip
    outputs = [worker.communicate(timeout=120) for worker in workers]
    for worker, (_, err) in zip(workers, outputs, strict=True):
        assert worker.returncode == 0, err[-3000:]

    fetched = {path: n for path, n in site.hits.items() if path != "/robots.txt"}
    missed = set(linked_routes(PAGES, IMAGES)) - fetched.keys()
    assert not missed, (  # nothing missed…
        _frontier_rows(database_url, [site.url(path) for path in missed]),
        [err[-4000:] for _, err in outputs],
    )
    assert set(fetched.values()) == {1}  # …and nothing fetched twice
    assert snapshot(database_url) == snapshot(reference_url)
    # Both workers did part of the work.
    per_worker = [int(re.findall(r"'lookalike/images': (\d+)", err)[-1]) for _, err in outputs]
    assert sum(per_worker) == IMAGES and min(per_worker) > 0, per_worker
    # The finished crawl leaves no keys behind in Redis.
    with psycopg.connect(database_url) as conn:
        (crawl_key,) = conn.execute("SELECT key FROM crawls").fetchone()  # type: ignore[misc]
    assert not list(redis_client.scan_iter(f"lookalike:{crawl_key[:16]}:*"))


def _frontier_rows(database_url: str, urls: list[str]) -> list[tuple[object, ...]]:
    """What the frontier holds for ``urls``: absent, pending, or done (with its error), to tell
    a request never queued from one marked done without being fetched."""
    with psycopg.connect(database_url) as conn:
        found = conn.execute(
            "SELECT url, kind, depth, done_at IS NOT NULL, error FROM crawl_requests"
            " WHERE url = ANY(%s)",
            (urls,),
        ).fetchall()
    absent = sorted(set(urls) - {row[0] for row in found})
    return [*found, *((url, "absent") for url in absent)]


def test_a_killed_workers_requests_are_taken_over(
    site: Site,
    database_url: str,
    reference_url: str,
    cli_env: dict[str, str],
    redis_client: redis.Redis,
) -> None:
    args = [site.url("/p0"), "--depth", "50", "-s", "DOWNLOAD_TIMEOUT=10"]
    crawl_reference(cli_env, reference_url, *args)

    worker_args = crawl_command(
        *args, "--redis", REDIS_URL, "-s", "CONCURRENT_REQUESTS=4",
        "-s", "LOOKALIKE_STALLED_SECONDS=2",
    )  # fmt: skip
    doomed = subprocess.Popen(worker_args, env=cli_env, cwd=ROOT, stderr=subprocess.DEVNULL)
    survivor = subprocess.Popen(
        worker_args, env=cli_env, cwd=ROOT, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL,
        text=True,
    )  # fmt: skip
    wait_for(lambda: progress(database_url)[0] >= 15)
    doomed.kill()
    doomed.wait()
    _, err = survivor.communicate(timeout=120)
    assert survivor.returncode == 0, err[-3000:]
    assert "re-queueing" in err  # the survivor took over the dead worker's requests

    # Whatever the dead worker held (in flight, or fetched and not yet written) was redone.
    assert snapshot(database_url) == snapshot(reference_url)
    with psycopg.connect(database_url) as conn:
        assert conn.execute("SELECT outcome, pages FROM crawls").fetchall() == [("finished", PAGES)]


def test_all_workers_killed_then_one_restarted_resumes_from_the_database(
    site: Site,
    database_url: str,
    reference_url: str,
    cli_env: dict[str, str],
    redis_client: redis.Redis,
) -> None:
    args = [site.url("/p0"), "--depth", "50", "-s", "DOWNLOAD_TIMEOUT=10"]
    crawl_reference(cli_env, reference_url, *args)

    # No stalled-work re-queue here (600 s): the restarted worker must rebuild from the database.
    worker_args = crawl_command(
        *args, "--redis", REDIS_URL, "-s", "CONCURRENT_REQUESTS=4",
        "-s", "LOOKALIKE_STALLED_SECONDS=600", "-s", "LOOKALIKE_WORKER_LEASE_SECONDS=1",
    )  # fmt: skip
    workers = [
        subprocess.Popen(worker_args, env=cli_env, cwd=ROOT, stderr=subprocess.DEVNULL)
        for _ in range(2)
    ]
    wait_for(lambda: progress(database_url)[0] >= 15)
    for worker in workers:
        worker.kill()
        worker.wait()
    assert progress(database_url)[1] > 0, "killed too late to test a resume"
    time.sleep(1.5)  # the dead workers' lease runs out

    restarted = subprocess.run(
        worker_args, env=cli_env, cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert restarted.returncode == 0, restarted.stderr[-3000:]
    assert "re-queueing" not in restarted.stderr
    assert snapshot(database_url) == snapshot(reference_url)
