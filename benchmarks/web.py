"""``lookalike bench web``: concurrent searches against a running ``lookalike serve``.

Builds a throwaway database of clustered hashes (the core benchmark's loader) with a sighting
for every image, adds real photos to search for, starts the site on waitress in its own process
and has CLIENTS threads post searches for DURATION seconds. Latency is split with the site's
``Server-Timing`` header into fingerprinting (decode + hash) and database time.
"""

from __future__ import annotations

import http.client
import io
import os
import random
import socket
import statistics
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import click
import numpy as np
from PIL import Image, ImageDraw

from benchmarks.bench import Report, record_option, size_option
from benchmarks.data import clustered_hashes, load_hashes
from benchmarks.peak_memory import reset_peak, status_kb
from lookalike.config import database_url
from lookalike.fingerprint import fingerprint
from lookalike.store import Sighting, Store
from lookalike.store.db import apply_migrations, connect, open_pool, scratch_database


@dataclass
class Samples:
    """Per-request measurements from every client thread of one phase."""

    total_ms: list[float] = field(default_factory=list)
    fingerprint_ms: list[float] = field(default_factory=list)
    db_ms: list[float] = field(default_factory=list)
    matches: list[int] = field(default_factory=list)
    errors: dict[int, int] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)


@click.command("web")
@click.option(
    "--rows",
    type=click.IntRange(min=1000),
    default=1_000_000,
    show_default=True,
    help="Images stored before the run.",
)
@click.option(
    "--clients",
    type=click.IntRange(min=1),
    default=8,
    show_default=True,
    help="Concurrent HTTP clients.",
)
@click.option(
    "--duration",
    type=click.FloatRange(min=1),
    default=30,
    show_default=True,
    help="Seconds per phase (uploads, then dHash searches).",
)
@click.option(
    "--workers",
    type=click.IntRange(min=1),
    default=8,
    show_default=True,
    help="waitress threads of the site.",
)
@click.option(
    "--photos",
    type=click.IntRange(min=1),
    default=64,
    show_default=True,
    help="Distinct photos the clients upload.",
)
@size_option("1024x768", "Size of the uploaded photos, e.g. 4000x3000 for 12 MP.")
@record_option
def bench_web(
    rows: int,
    clients: int,
    duration: float,
    workers: int,
    photos: int,
    size: tuple[int, int],
    record: Path | None,
) -> None:
    """Requests/s, p50/p99 latency and the server's peak memory for POST /api/search.

    Two phases of DURATION seconds each over ROWS stored images: uploads of SIZE JPEGs
    (fingerprinting plus search), then searches by dHash (database only). "peak MB" is the
    server process's resident high-water mark during the phase (reset before it, from /proc).
    Runs beside $DATABASE_URL's server.
    """
    report = Report(
        f"bench web, {rows:,} images, {clients} clients, {workers} server threads, "
        f"{duration:g} s per phase, {size[0]}×{size[1]} uploads"
    )
    with scratch_database(database_url(), "lookalike_bench_web") as url:
        started = time.perf_counter()
        apply_migrations(url)
        load_hashes(url, clustered_hashes(rows))
        _add_sightings(url)
        uploads = _add_query_photos(url, photos, size)
        report.line(
            f"loaded {rows:,} images with a sighting each + {len(uploads)} query photos in "
            f"{time.perf_counter() - started:.0f} s"
        )
        with _site(url, workers) as (port, server_pid):
            report.line(f"server resident at start: {status_kb('VmRSS', server_pid) / 1024:.0f} MB")
            report.line(
                f"{'phase':<8} {'req/s':>7} {'p50 ms':>7} {'p99 ms':>7} "
                f"{'fp p50':>7} {'fp p99':>7} {'db p50':>7} {'db p99':>7} "
                f"{'matches':>7} {'peak MB':>7} errors"
            )
            phases = {
                "upload": [_multipart({"image": ("query.jpg", data)}) for data in uploads],
                "dhash": [_json_body(fingerprint(data).hex("dhash")) for data in uploads],
            }
            for name, bodies in phases.items():
                reset_peak(server_pid)
                samples, elapsed = _fire(port, bodies, clients, duration)
                peak_mb = status_kb("VmHWM", server_pid) / 1024
                report.line(_summary(name, samples, elapsed, peak_mb))
    report.line(
        f"machine: {os.cpu_count()} cores; clients and server share them; "
        "fp = fingerprinting, db = database time (Server-Timing)"
    )
    report.record(record)


def _add_sightings(url: str) -> None:
    """One page per 4 images on 1,000 domains and one sighting per image, in two statements."""
    with connect(url, autocommit=True) as conn:
        conn.execute(
            """
            INSERT INTO pages (url, domain, title)
            SELECT format('https://site%s.example/page/%s', n % 1000, n),
                   format('site%s.example', n % 1000), format('Page %s', n)
            FROM generate_series(0, (SELECT count(*) FROM images) / 4) AS n
            """
        )
        conn.execute(
            """
            INSERT INTO sightings (image_id, page_id, image_url)
            SELECT i.id, p.id, format('https://cdn.example/%s.jpg', i.id)
            FROM images i
            JOIN pages p ON p.url = format('https://site%s.example/page/%s',
                                           (i.id / 4) % 1000, i.id / 4)
            """
        )
        conn.execute("VACUUM (ANALYZE) pages, sightings")


def _add_query_photos(url: str, count: int, size: tuple[int, int]) -> list[bytes]:
    """Photo-like JPEGs to upload, each stored with two copies so searches find something."""
    rng = random.Random(5)
    uploads = []
    sightings = []
    for index in range(count):
        image = _photo(rng, size)
        data = _jpeg(image, 85)
        uploads.append(data)
        for name, copy in (
            ("copy", _jpeg(image, 60)),
            ("small", _jpeg(image.resize((512, 384)), 80)),
        ):
            sightings.append(
                Sighting(
                    fingerprint(copy, with_thumbnail=True),
                    f"https://photos.example/{index}/{name}.jpg",
                    f"https://photos.example/{index}",
                    f"Photo {index}",
                )
            )
    with Store(open_pool(url, init_schema=False)) as store:
        store.record(sightings)
    return uploads


def _photo(rng: random.Random, size: tuple[int, int]) -> Image.Image:
    """Gradients and shapes with noise: decodes and hashes like a real photo does."""
    image = Image.linear_gradient("L").resize(size).convert("RGB")
    image = image.rotate(rng.uniform(0, 360), fillcolor=_colour(rng))
    draw = ImageDraw.Draw(image)
    scale = size[0] / 1024  # shapes as large, relative to the picture, at every size
    for _ in range(12):
        x, y = rng.uniform(0, size[0]), rng.uniform(0, size[1])
        w, h = rng.uniform(50, 500) * scale, rng.uniform(50, 400) * scale
        (draw.ellipse if rng.random() < 0.5 else draw.rectangle)((x, y, x + w, y + h), _colour(rng))
    grain = np.random.default_rng(rng.randrange(1 << 30)).normal(0, 6, (*size[::-1], 3))
    return Image.fromarray(np.clip(np.asarray(image) + grain, 0, 255).astype(np.uint8))


def _colour(rng: random.Random) -> tuple[int, int, int]:
    return (rng.randrange(256), rng.randrange(256), rng.randrange(256))


def _jpeg(image: Image.Image, quality: int) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=quality)
    return buffer.getvalue()


def _multipart(files: dict[str, tuple[str, bytes]]) -> tuple[bytes, str]:
    boundary = uuid.uuid4().hex
    parts = [
        f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"; filename="{filename}"'
        f"\r\nContent-Type: image/jpeg\r\n\r\n".encode()
        + data
        + b"\r\n"
        for name, (filename, data) in files.items()
    ]
    return b"".join(parts) + f"--{boundary}--\r\n".encode(), (
        f"multipart/form-data; boundary={boundary}"
    )


def _json_body(dhash_hex: str) -> tuple[bytes, str]:
    return f'{{"dhash": "{dhash_hex}"}}'.encode(), "application/json"


@contextmanager
def _site(url: str, workers: int) -> Iterator[tuple[int, int]]:
    """``lookalike serve`` on a free port over ``url``, rate limits off; yields (port, pid)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    env = {**os.environ, "DATABASE_URL": url, "LOOKALIKE_RATELIMIT_ENABLED": "false"}
    command = [sys.executable, "-c", "from lookalike.cli import main; main()", "serve"]
    server = subprocess.Popen(  # noqa: S603 (our own interpreter and arguments)
        [*command, "--port", str(port), "--workers", str(workers)],
        env=env,
        stderr=subprocess.DEVNULL,
    )
    try:
        _wait_until_up(port, server)
        yield port, server.pid
    finally:
        server.terminate()
        server.wait(timeout=30)


def _wait_until_up(port: int, server: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise click.ClickException("lookalike serve exited before answering")
        try:
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            connection.request("GET", "/api/stats")
            if connection.getresponse().status == 200:
                return
        except OSError:
            time.sleep(0.2)
    raise click.ClickException("lookalike serve did not answer within 60 s")


def _fire(
    port: int, bodies: list[tuple[bytes, str]], clients: int, duration: float
) -> tuple[Samples, float]:
    """``clients`` threads, each on its own keep-alive connection, until ``duration`` is up."""
    samples = Samples()
    stop_at = time.monotonic() + duration
    threads = [
        threading.Thread(target=_client, args=(port, bodies, n, stop_at, samples))
        for n in range(clients)
    ]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return samples, time.perf_counter() - started


def _client(
    port: int, bodies: list[tuple[bytes, str]], offset: int, stop_at: float, samples: Samples
) -> None:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    index = offset
    while time.monotonic() < stop_at:
        body, content_type = bodies[index % len(bodies)]
        index += 1
        started = time.perf_counter()
        connection.request("POST", "/api/search", body, {"Content-Type": content_type})
        response = connection.getresponse()
        payload = response.read()
        elapsed = (time.perf_counter() - started) * 1000
        timings = _server_timings(response.getheader("Server-Timing", ""))
        with samples.lock:
            if response.status != 200:
                samples.errors[response.status] = samples.errors.get(response.status, 0) + 1
                continue
            samples.total_ms.append(elapsed)
            samples.fingerprint_ms.append(timings.get("fingerprint", 0.0))
            samples.db_ms.append(timings.get("db", 0.0))
            samples.matches.append(payload.count(b'"distance"'))
    connection.close()


def _server_timings(header: str) -> dict[str, float]:
    """``fingerprint;dur=2.1, db;dur=3.4`` → {"fingerprint": 2.1, "db": 3.4}."""
    timings = {}
    for entry in filter(None, (part.strip() for part in header.split(","))):
        name, _, duration = entry.partition(";dur=")
        timings[name] = float(duration or 0)
    return timings


def _summary(name: str, samples: Samples, elapsed: float, peak_mb: float) -> str:
    if not samples.total_ms:
        return f"{name:<8} no successful requests; errors {samples.errors}"

    def p(values: list[float], q: float) -> float:
        return float(np.percentile(values, q))

    errors = sum(samples.errors.values())
    return (
        f"{name:<8} {len(samples.total_ms) / elapsed:>7.1f} "
        f"{p(samples.total_ms, 50):>7.1f} {p(samples.total_ms, 99):>7.1f} "
        f"{p(samples.fingerprint_ms, 50):>7.1f} {p(samples.fingerprint_ms, 99):>7.1f} "
        f"{p(samples.db_ms, 50):>7.1f} {p(samples.db_ms, 99):>7.1f} "
        f"{statistics.mean(samples.matches):>7.1f} {peak_mb:>7.0f} {errors}"
    )
