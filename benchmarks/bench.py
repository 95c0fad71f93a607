"""``lookalike bench …``: commands that measure speed and print numbers.

Each prints its results and, with ``--record FILE``, appends them to FILE (docs/benchmarks.md)
with the exact command line, so every number in the docs can be reproduced.
"""

from __future__ import annotations

import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TypeVar

import click
import numpy as np
import psycopg
from PIL import Image
from psycopg import sql

from benchmarks.data import clustered_hashes, load_hashes, uniform_hashes
from benchmarks.mih_cost import ChunkCounts, CostFit, Work
from benchmarks.peak_memory import HASHERS, dhash_with_imagehash, dhash_with_lookalike
from lookalike.cli import BENCH_EXTRA_HINT
from lookalike.config import database_url
from lookalike.hashes import hamming, to_bigint
from lookalike.plugins import PluginGroup
from lookalike.store.db import (
    apply_migrations,
    connect,
    describe_server,
    scratch_database,
    with_database,
)

SEARCH_RADII = (4, 8, 12)


class Report:
    """Collects printed lines so they can also be appended to a Markdown file."""

    def __init__(self, title: str) -> None:
        self.title = title
        self.lines: list[str] = []

    def line(self, text: str = "") -> None:
        click.echo(text)
        self.lines.append(text)

    def record(self, path: Path | None) -> None:
        if path is None:
            return
        command = shlex.join(["lookalike", *sys.argv[1:]])
        stamp = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
        block = "\n".join(self.lines)
        with path.open("a", encoding="utf-8") as out:
            out.write(f"\n## {self.title} ({stamp})\n\n```\n$ {command}\n{block}\n```\n")
        click.echo(f"recorded in {path}")


record_option = click.option(
    "--record",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Append the results, with this command line, to this Markdown file.",
)
same_photo_option = click.option(
    "--same-photo",
    multiple=True,
    metavar="GLOB",
    help="Files matching this glob (repeatable) are one photo, e.g. crops of it.",
)


FC = TypeVar("FC", bound=Callable[..., object])


def size_option(default: str | None, help_text: str) -> Callable[[FC], FC]:
    """``--size WIDTHxHEIGHT``, given to the command as a (width, height) tuple or None."""
    return click.option(
        "--size", default=default, show_default=default is not None, callback=_size, help=help_text
    )


def repeat_option(default: int, help_text: str) -> Callable[[FC], FC]:
    """``--repeat N``: how many timed runs a benchmark takes the median of."""
    return click.option(
        "--repeat", type=click.IntRange(min=1), default=default, show_default=True, help=help_text
    )


def _size(ctx: click.Context, param: click.Parameter, value: str | None) -> tuple[int, int] | None:
    if value is None:
        return None
    width, _, height = value.lower().partition("x")
    if not (width.isdigit() and height.isdigit() and int(width) and int(height)):
        raise click.BadParameter(f"expected WIDTHxHEIGHT such as 1024x768, not {value!r}")
    return int(width), int(height)


@click.group(
    cls=PluginGroup,
    lazy_commands={
        "radius": "benchmarks.moderation:bench_radius",
        "check": "benchmarks.moderation:bench_check",
        "moderation": "benchmarks.moderation:bench_moderation",
        "web": "benchmarks.web:bench_web",
        "crawl": "benchmarks.crawl:bench_crawl",
        "index": "benchmarks.index:bench_index",
        "quality": "benchmarks.quality:bench_quality",
        "robust": "benchmarks.robust:bench_robust",
    },
    missing_hint=BENCH_EXTRA_HINT,
)
def bench() -> None:
    """Measure search, fingerprinting, indexing and start-up speed on this machine."""


# --- search -------------------------------------------------------------------------------


def _timed_ms(run: Callable[[], object], repeat: int) -> list[float]:
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        run()
        times.append((time.perf_counter() - started) * 1000)
    return times


def percentile(values: list[float], fraction: float) -> float:
    return float(np.percentile(values, fraction * 100))


DISTRIBUTIONS: dict[str, Callable[[int], np.ndarray]] = {
    "uniform": uniform_hashes,
    "clustered": clustered_hashes,
}


@bench.command("search")
@click.option(
    "--rows",
    type=click.IntRange(min=1000),
    default=1_000_000,
    show_default=True,
    help="Hashes loaded per distribution.",
)
@click.option(
    "--distribution",
    "distributions",
    type=click.Choice(list(DISTRIBUTIONS)),
    multiple=True,
    help="Hash distribution(s) to load [default: both].",
)
@click.option(
    "--queries",
    type=click.IntRange(min=5),
    default=200,
    show_default=True,
    help="similar_images() queries per radius.",
)
@click.option(
    "--scan-queries",
    type=click.IntRange(min=3),
    default=10,
    show_default=True,
    help="Sequential-scan queries to compare with.",
)
@click.option("--keep", is_flag=True, help="Keep the benchmark databases and reuse them next time.")
@record_option
def bench_search(
    rows: int,
    distributions: tuple[str, ...],
    queries: int,
    scan_queries: int,
    keep: bool,
    record: Path | None,
) -> None:
    """similar_images() against a sequential scan on ROWS hashes, uniform and clustered.

    Queries are stored hashes with one bit flipped; each radius runs them once untimed first,
    so the numbers are for warm indexes, as on a serving database. Runs in its own databases
    beside $DATABASE_URL's (or the embedded server's).
    """
    report = Report(f"bench search, {rows:,} hashes")
    server = database_url()
    with connect(server) as conn:
        version = conn.execute("SHOW server_version").fetchone()[0]  # type: ignore[index]
    report.line(f"server: PostgreSQL {version} at {describe_server(server)}")
    measured: dict[str, tuple[ChunkCounts, list[RadiusResult]]] = {}
    for distribution in distributions or tuple(DISTRIBUTIONS):
        name = f"lookalike_bench_{distribution}_{rows}"
        with _bench_database(server, name, keep) as (url, fresh):
            hashes = DISTRIBUTIONS[distribution](rows)
            if fresh:
                started = time.perf_counter()
                load_hashes(url, hashes)
                elapsed = time.perf_counter() - started
                report.line(f"loaded {rows:,} {distribution} rows + MIH indexes in {elapsed:.0f} s")
            rng = np.random.default_rng(7)
            picks = hashes[rng.integers(0, rows, size=queries)].view(np.uint64)
            noise = np.uint64(1) << rng.integers(0, 64, size=queries).astype(np.uint64)
            query_hashes = [to_bigint(int(h)) for h in (picks ^ noise)]
            counts = ChunkCounts(hashes)
            with connect(url, autocommit=True) as conn:
                measured[distribution] = (
                    counts,
                    [
                        _compare_radius(conn, counts, query_hashes, scan_queries, radius)
                        for radius in SEARCH_RADII
                    ],
                )
    _report_search(report, measured)
    report.record(record)


@dataclass
class RadiusResult:
    """One radius of ``bench search``: per-query MIH times and reads, and the scan beside it."""

    radius: int
    queries: list[int]
    mih_ms: list[float]
    work: list[Work]  # what each timed query read, with the split similar_images chose
    scan_ms: list[float]
    matches: list[int]
    exact: bool


def _compare_radius(
    conn: psycopg.Connection,
    counts: ChunkCounts,
    query_hashes: list[int],
    scan_queries: int,
    radius: int,
) -> RadiusResult:
    mih_sql = "SELECT image_id FROM similar_images(%s::bigint, %s)"
    scan_sql = "SELECT id FROM images WHERE hamming(dhash, %s::bigint) <= %s"
    split_sql = "SELECT k0, k1, k2 FROM image_chunk_radii(%s::bigint, %s)"
    for query in query_hashes:  # warm-up: a serving database has its indexes in memory
        conn.execute(mih_sql, (query, radius)).fetchall()
    queries = iter(query_hashes)
    mih_times = _timed_ms(
        lambda: conn.execute(mih_sql, (next(queries), radius)).fetchall(), len(query_hashes)
    )
    work = [
        counts.work(query, conn.execute(split_sql, (query, radius)).fetchone() or ())
        for query in query_hashes
    ]
    scan_times: list[float] = []
    exact = True
    matches = []
    for query in query_hashes[:scan_queries]:
        started = time.perf_counter()
        scanned = {row[0] for row in conn.execute(scan_sql, (query, radius))}
        scan_times.append((time.perf_counter() - started) * 1000)
        probed = {row[0] for row in conn.execute(mih_sql, (query, radius))}
        exact &= scanned == probed
        matches.append(len(probed))
    return RadiusResult(radius, query_hashes, mih_times, work, scan_times, matches, exact)


def _report_search(
    report: Report, measured: dict[str, tuple[ChunkCounts, list[RadiusResult]]]
) -> None:
    """The timings, what each query read, and the floor any radius split has on this server.

    One cost fit over every distribution and radius (their mixes of probes and rows differ,
    which separates the two costs); the floor prices the cheapest exact split of every query
    at those costs, so a target below it cannot be met by this index on this server.
    """
    results = [r for _, per_radius in measured.values() for r in per_radius]
    fit = CostFit.of([w for r in results for w in r.work], [t for r in results for t in r.mih_ms])
    for distribution, (counts, per_radius) in measured.items():
        report.line(
            f"{distribution:>9} {'radius':>6} {'MIH p50':>9} {'MIH p90':>9} {'scan p50':>9} "
            f"{'ratio':>7} {'matches':>8}  exact {'probes':>7} {'rows':>7} {'floor p50':>10}"
        )
        for r in per_radius:
            mih_p50, scan_p50 = statistics.median(r.mih_ms), statistics.median(r.scan_ms)
            floor = [fit.ms(counts.cheapest(q, r.radius, fit)) for q in r.queries]
            columns = [
                f"{r.radius:>6}",
                f"{mih_p50:>7.2f}ms",
                f"{percentile(r.mih_ms, 0.9):>7.2f}ms",
                f"{scan_p50:>7.1f}ms",
                f"{scan_p50 / mih_p50:>6.0f}×",
                f"{statistics.median(r.matches):>8.0f}",
                f" {'yes' if r.exact else 'NO':>5}",
                f"{statistics.median(w.probes for w in r.work):>7.0f}",
                f"{statistics.median(w.rows for w in r.work):>7.0f}",
                f"{statistics.median(floor):>8.2f}ms",
            ]
            report.line(f"{'':>9} " + " ".join(columns))
    report.line(
        f"fitted cost per query: {fit.fixed_ms:.2f} ms + {fit.per_probe_ms * 1000:.2f} µs per "
        f"probe + {fit.per_row_ms * 1000:.3f} µs per index row read; floor p50: the best exact "
        "split at those costs"
    )


@contextmanager
def _bench_database(server_url: str, name: str, keep: bool) -> Iterator[tuple[str, bool]]:
    """(url, fresh): a reusable named database with --keep, else a throwaway one."""
    if not keep:
        with scratch_database(server_url, "lookalike_bench") as url:
            apply_migrations(url)
            yield url, True
        return
    with connect(server_url, autocommit=True) as admin:
        exists = admin.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone()
        if not exists:
            admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    url = with_database(server_url, name)
    apply_migrations(url)
    with connect(url) as conn:
        row = conn.execute("SELECT count(*) FROM images").fetchone()
    yield url, not row or row[0] == 0


# --- hash ---------------------------------------------------------------------------------


def image_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.suffix.lower() in (".jpg", ".jpeg", ".png"))


def _mosaics(sources: list[Path], size: tuple[int, int], count: int, out: Path) -> list[Path]:
    """``count`` JPEGs of ``size`` tiled from the source photos at their own resolution.

    Upscaling small photos would make smooth pictures that decode and hash unlike real ones;
    tiles keep real photographic detail at full resolution, whatever the requested size.
    """
    rng = np.random.default_rng(3)
    photos = [Image.open(source).convert("RGB") for source in sources]
    made = []
    for index in range(count):
        canvas = Image.new("RGB", size)
        y = 0
        while y < size[1]:
            x, row_height = 0, 0
            while x < size[0]:
                tile = photos[int(rng.integers(len(photos)))]
                canvas.paste(tile, (x, y))
                x, row_height = x + tile.width, max(row_height, tile.height)
            y += row_height
        path = out / f"{index:04d}.jpg"
        canvas.save(path, "JPEG", quality=90)
        made.append(path)
    return made


def _peak_memory_mb(hasher: str, paths: list[Path]) -> tuple[float, float]:
    """(peak growth while hashing, whole-process peak) in a process holding only the hasher.

    See :mod:`benchmarks.peak_memory` for why it is a separate ``python -m`` process. It runs
    beside this very ``lookalike`` package, so it measures the code being benchmarked.
    """
    files = [str(path.resolve()) for path in paths]
    command = [sys.executable, "-m", "benchmarks.peak_memory", hasher, *files]
    measured = subprocess.run(  # noqa: S603 - our own command line
        command, capture_output=True, text=True, check=True, cwd=Path(__file__).parents[1]
    )
    before_kb, peak_kb = (int(value) for value in measured.stdout.split())
    return (peak_kb - before_kb) / 1024, peak_kb / 1024


@bench.command("hash")
@click.argument("folder", type=click.Path(exists=True, file_okay=False, path_type=Path))
@size_option(None, "Re-encode the images at WIDTHxHEIGHT first, e.g. 1024x768.")
@repeat_option(3, "Timed runs; the median is reported.")
@record_option
def bench_hash(
    folder: Path, size: tuple[int, int] | None, repeat: int, record: Path | None
) -> None:
    """Lookalike's fingerprint path against imagehash.dhash(Image.open(p)) on FOLDER's images."""
    sources = image_files(folder)
    if not sources:
        raise click.ClickException(f"no JPEG or PNG files in {folder}")
    with tempfile.TemporaryDirectory() as scratch:
        files = sources
        if size:
            files = _mosaics(sources, size, len(sources), Path(scratch))
        blobs = [path.read_bytes() for path in files]
        at = f" at {size[0]}x{size[1]}" if size else ""
        report = Report(f"bench hash, {len(files)} images from {folder.name}{at}")

        for hasher in HASHERS.values():
            hasher(blobs[0])  # loads its libraries: the timings are per image, not per process
        timings = {
            name: statistics.median(_timed_ms(lambda h=hasher: [h(b) for b in blobs], repeat))
            / 1000
            for name, hasher in HASHERS.items()
        }
        sampled = files[:20]
        peaks = {name: _peak_memory_mb(name, sampled) for name in HASHERS}
        diffs = [hamming(dhash_with_lookalike(blob), dhash_with_imagehash(blob)) for blob in blobs]
    n = len(blobs)
    report.line(
        f"lookalike fingerprint (sha256+dHash+pHash): {n / timings['lookalike']:8.1f} images/s  "
        f"peak +{peaks['lookalike'][0]:.1f} MB (process {peaks['lookalike'][1]:.0f} MB)"
    )
    report.line(
        f"imagehash.dhash(Image.open(p)):            {n / timings['imagehash']:8.1f} images/s  "
        f"peak +{peaks['imagehash'][0]:.1f} MB (process {peaks['imagehash'][1]:.0f} MB)"
    )
    report.line(
        f"speed-up {timings['imagehash'] / timings['lookalike']:.2f}×; dHash vs baseline: mean "
        f"{statistics.mean(diffs):.2f} bits, max {max(diffs)}, "
        f"{100 * diffs.count(0) / n:.0f}% identical"
    )
    report.line(
        f"peak: resident memory hashing {len(sampled)} of the files one at a time, in a fresh "
        "process that imports only that hasher; +: over its level with the libraries loaded"
    )
    report.record(record)


# --- start --------------------------------------------------------------------------------

BARE_IMPORTS = "import numpy, PIL.Image, psycopg"


def _start_seconds(command: list[str]) -> float:
    started = time.perf_counter()
    subprocess.run(command, check=True, capture_output=True, timeout=120)  # noqa: S603 (ours)
    return time.perf_counter() - started


@bench.command("start")
@repeat_option(11, "Runs of each command, taken in turn; the median is reported.")
@record_option
def bench_start(repeat: int, record: Path | None) -> None:
    """`lookalike hash FILE` start-up against a bare import of numpy, Pillow and psycopg."""
    with tempfile.TemporaryDirectory() as scratch:
        photo = Path(scratch) / "photo.jpg"
        Image.new("RGB", (640, 480), (90, 140, 200)).save(photo)
        commands = {
            "lookalike hash FILE": [sys.executable, "-m", "lookalike", "hash", str(photo)],
            f'python -c "{BARE_IMPORTS}"': [sys.executable, "-c", BARE_IMPORTS],
        }
        seconds: dict[str, list[float]] = {name: [] for name in commands}
        for _ in range(repeat):  # in turn, so both see the same load on a shared machine
            for name, command in commands.items():
                seconds[name].append(_start_seconds(command))
    report = Report(f"bench start, {repeat} runs of each, in turn")
    medians = {name: statistics.median(values) for name, values in seconds.items()}
    width = max(map(len, seconds))
    for name, values in seconds.items():
        report.line(
            f"{name:<{width}}  median {medians[name] * 1000:5.0f} ms "
            f"(range {min(values) * 1000:.0f}–{max(values) * 1000:.0f})"
        )
    hashing, bare = medians.values()
    report.line(f"lookalike hash takes {hashing / bare:.2f}× the bare imports")
    report.record(record)
