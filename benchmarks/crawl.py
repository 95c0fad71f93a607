"""``lookalike bench crawl``: crawl a generated local site end to end and print pages/s and
images/s, for one process and for scrapy-redis workers.

The site is static files served by Twisted's web server in its own process on 127.0.0.1; the
crawl is the real ``lookalike crawl`` command, with throttling off, into a scratch database.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

import click
import numpy as np
import psycopg
import redis
from PIL import Image

from benchmarks.bench import Report, record_option
from lookalike.config import database_url
from lookalike.store.db import apply_migrations, scratch_database

CHILDREN_PER_PAGE = 10  # a tree: every page is within log10(pages) links of the first
IMAGES_PER_PAGE = 3
LOCAL_SETTINGS = (
    "--no-throttle",
    "-s", "CONCURRENT_REQUESTS=32",
    "-s", "CONCURRENT_REQUESTS_PER_DOMAIN=32",
    "-s", "LOG_LEVEL=WARNING",
)  # fmt: skip


@click.command("crawl")
@click.option(
    "--pages",
    type=click.IntRange(min=10),
    default=2000,
    show_default=True,
    help="Pages of the generated site.",
)
@click.option(
    "--images",
    type=click.IntRange(min=10),
    default=5000,
    show_default=True,
    help="Distinct JPEGs the pages show.",
)
@click.option(
    "--workers",
    type=click.IntRange(min=2),
    default=2,
    show_default=True,
    help="scrapy-redis workers in the shared-frontier run.",
)
@click.option(
    "--redis", "redis_url", default="redis://127.0.0.1:6379/0", show_default=True,
    help="Redis for the scrapy-redis run (skipped if it does not answer).",
)  # fmt: skip
@record_option
def bench_crawl(pages: int, images: int, workers: int, redis_url: str, record: Path | None) -> None:
    """Crawl a generated site of PAGES pages showing IMAGES distinct JPEGs."""
    report = Report(f"bench crawl, {pages} pages, {images} images, {os.cpu_count()} cores")
    with tempfile.TemporaryDirectory(prefix="lookalike-bench-site-") as folder:
        started = time.perf_counter()
        make_site(Path(folder), pages, images)
        click.echo(f"site generated in {time.perf_counter() - started:.1f} s", err=True)
        with serve(Path(folder)) as base:
            seed = f"{base}/p0.html"
            load_before = os.getloadavg()[0]
            report.line(_run(seed, 1, None))
            if _redis_answers(redis_url):
                report.line(_run(seed, workers, redis_url))
            else:
                report.line(f"{workers} workers: skipped, no Redis at {redis_url}")
    report.line(
        f"site, crawler(s) and PostgreSQL share the machine; load average "
        f"{load_before:.1f} before, {os.getloadavg()[0]:.1f} after (other work included)"
    )
    report.record(record)


def _run(seed: str, workers: int, redis_url: str | None) -> str:
    """Crawl into a scratch database; one result line."""
    with scratch_database(database_url(), "lookalike_bench_crawl") as url:
        apply_migrations(url)
        command = [sys.executable, "-m", "lookalike", "crawl", seed, "--depth", "10"]
        command += [*LOCAL_SETTINGS, "--max-pages", "0"]
        if redis_url:
            # The workers share this machine's cores: split the fingerprinting processes too.
            per_worker = max(1, (os.cpu_count() or 2) // workers)
            command += ["--redis", redis_url, "-s", f"LOOKALIKE_FINGERPRINT_WORKERS={per_worker}"]
        env = {**os.environ, "DATABASE_URL": url}
        with ExitStack() as stack:
            logs = [stack.enter_context(tempfile.TemporaryFile()) for _ in range(workers)]
            started = time.perf_counter()
            processes = [  # our own command line, no untrusted input
                subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=log)  # noqa: S603
                for log in logs
            ]
            failed = [log for process, log in zip(processes, logs, strict=True) if process.wait()]
            elapsed = time.perf_counter() - started
            if failed:
                failed[0].seek(0)
                raise click.ClickException(failed[0].read().decode(errors="replace")[-2000:])
        with psycopg.connect(url) as conn:
            pages, images, crawl_seconds, sightings = conn.execute(
                """
                SELECT c.pages, c.images_seen,
                       extract(epoch FROM c.finished_at - c.started_at)::float8,
                       (SELECT count(*) FROM sightings)
                FROM crawls c
                """
            ).fetchone()  # type: ignore[misc]
    who = "1 process" if workers == 1 else f"{workers} scrapy-redis workers"
    return (
        f"{who:>22}: {pages} pages, {images} images, {sightings} sightings in {elapsed:.1f} s "
        f"end to end: {pages / elapsed:.0f} pages/s, {images / elapsed:.0f} images/s "
        f"({images / crawl_seconds:.0f} images/s after start-up)"
    )


def make_site(folder: Path, pages: int, images: int) -> None:
    """Pages in a tree of CHILDREN_PER_PAGE links, each showing IMAGES_PER_PAGE images; with
    fewer images than image slots, images repeat on several pages (more sightings)."""
    rng = np.random.default_rng(7)
    for n in range(images):
        _picture(rng).save(folder / f"i{n}.jpg", "JPEG", quality=85)
    for page in range(pages):
        children = range(page * CHILDREN_PER_PAGE + 1, (page + 1) * CHILDREN_PER_PAGE + 1)
        links = "".join(f'<a href="p{c}.html">page {c}</a>' for c in children if c < pages)
        shown = "".join(
            f'<img src="i{(page * IMAGES_PER_PAGE + k) % images}.jpg" alt="picture {k}">'
            for k in range(IMAGES_PER_PAGE)
        )
        html = f"<!doctype html><title>page {page}</title><body>{shown}{links}</body>"
        (folder / f"p{page}.html").write_text(html, encoding="utf-8")
    # Every image should be on some page, whatever the two counts are.
    extra = range(pages * IMAGES_PER_PAGE, images)
    if extra:
        listing = "".join(f'<img src="i{n}.jpg">' for n in extra)
        (folder / "p0.html").write_text(
            (folder / "p0.html").read_text(encoding="utf-8").replace("<body>", f"<body>{listing}")
        )


def _picture(rng: np.random.Generator) -> Image.Image:
    """A 320×240 picture of blurred blocks: distinct dHashes, photo-like JPEG sizes."""
    blocks = rng.integers(0, 256, size=(6, 8, 3), dtype=np.uint8)
    image = Image.fromarray(blocks).resize((320, 240), Image.Resampling.BICUBIC)
    noise = rng.normal(0, 8, (240, 320, 3))
    return Image.fromarray(np.clip(np.asarray(image) + noise, 0, 255).astype(np.uint8))


@contextmanager
def serve(folder: Path) -> Iterator[str]:
    """Serve ``folder`` with Twisted's static web server in a child process; yields its URL."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = subprocess.Popen(  # noqa: S603 - our own command line
        [sys.executable, "-m", "twisted", "web", "--path", str(folder),
         "--listen", f"tcp:{port}:interface=127.0.0.1"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise click.ClickException("the local web server did not start") from None
                time.sleep(0.1)
        yield f"http://127.0.0.1:{port}"
    finally:
        server.terminate()
        server.wait()


def _redis_answers(url: str) -> bool:
    try:
        return bool(redis.Redis.from_url(url, socket_connect_timeout=2).ping())
    except redis.RedisError:
        return False
