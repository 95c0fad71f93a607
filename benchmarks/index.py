"""``lookalike bench index``: ``lookalike index`` against the article's ``index.py``, side by side.

Both run as a user runs them, one command each, start-up included, on the same files: the
article's script (imagehash + shelve, one process) and ``python -m lookalike index DIR`` on an
empty scratch database with the default settings (thumbnails on). Runs alternate A B A B…, so
both see the same load on a shared machine, and the medians are compared.
"""

from __future__ import annotations

import io
import os
import pickle
import resource
import shelve
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click
import imagehash
import numpy as np
from PIL import Image

from benchmarks.bench import Report, image_files, record_option, repeat_option
from lookalike import indexer, perceptual
from lookalike.config import database_url
from lookalike.fingerprint import fingerprint
from lookalike.hashes import from_bigint, hash_to_hex
from lookalike.store import Store
from lookalike.store.db import apply_migrations, connect, open_pool, scratch_database

ARTICLE_IMAGES = 7_876  # the article's Caltech-101 data set
ARTICLE_SCRIPT = Path(__file__).with_name("article_index.py")
# Caltech-101 photos are about 300 px on their long side; larger sources are shrunk to it.
CALTECH_LONG_SIDE = 300


def caltech_like(sources: list[Path], count: int, out: Path) -> list[Path]:
    """``count`` distinct JPEGs shaped like Caltech-101's, cut from the source photos.

    Each is a random crop (80–100% of each side) of a source, scaled by 0.90–1.15, mirrored
    half the time and saved at quality 75–95, so the sizes, the grayscale share and the JPEG
    sizes stay those of the sources while every file (and nearly every hash) differs.
    """
    rng = np.random.default_rng(5)
    photos = []
    for source in sources:
        with Image.open(source) as opened:
            photo = opened.convert("L" if opened.mode == "L" else "RGB")
        photo.thumbnail((CALTECH_LONG_SIDE, CALTECH_LONG_SIDE), Image.Resampling.LANCZOS)
        photos.append(photo)
    made = []
    for index in range(count):
        photo = photos[index % len(photos)]
        width, height = (int(side * rng.uniform(0.8, 1.0)) for side in photo.size)
        left = int(rng.integers(0, photo.width - width + 1))
        top = int(rng.integers(0, photo.height - height + 1))
        scale = rng.uniform(0.9, 1.15)
        copy = photo.crop((left, top, left + width, top + height)).resize(
            (round(width * scale), round(height * scale)), Image.Resampling.LANCZOS
        )
        if rng.random() < 0.5:
            copy = copy.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
        path = out / f"{index:04d}.jpg"
        copy.save(path, "JPEG", quality=int(rng.integers(75, 96)))
        made.append(path)
    return made


@dataclass(frozen=True)
class Timing:
    """One command's run: seconds on the clock, and CPU seconds of it and its processes."""

    wall: float
    cpu: float


def timed(
    command: list[str], env: dict[str, str] | None = None, *, check: bool = True
) -> tuple[Timing, str]:
    """Run ``command``; its timing (CPU includes its worker processes) and what it printed."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    done = subprocess.run(  # noqa: S603 - our own command lines
        command, capture_output=True, text=True, env=env, timeout=3600
    )
    elapsed = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime
    if check and done.returncode != 0:
        raise click.ClickException(f"{command[1:3]} failed: {done.stderr.strip()[-500:]}")
    return Timing(elapsed, cpu), done.stdout


def article_command(folder: Path, shelf: Path) -> list[str]:
    return [sys.executable, str(ARTICLE_SCRIPT), "--dataset", str(folder), "--shelve", str(shelf)]


def run_article(folder: Path, scratch: Path) -> tuple[Timing, dict[str, list[str]]]:
    """One run of the article's script, and the shelve it wrote."""
    scratch.mkdir()
    shelf = scratch / "db.shelve"
    timing, _ = timed(article_command(folder, shelf))
    with shelve.open(str(shelf), "r") as db:  # noqa: S301 - the shelve we just wrote
        return timing, dict(db)


def run_lookalike(folder: Path, server: str, *options: str) -> tuple[Timing, str, dict[str, str]]:
    """One run of ``lookalike index [OPTIONS] FOLDER`` on a fresh database, its summary, and
    file → dHash."""
    with scratch_database(server, "lookalike_bench") as url:
        apply_migrations(url)  # as `lookalike init-db` would have; the run checks it again
        env = {**os.environ, "DATABASE_URL": url}
        command = [sys.executable, "-m", "lookalike", "index", *options, str(folder)]
        timing, printed = timed(command, env)
        with connect(url) as conn:
            rows = conn.execute(
                "SELECT s.image_url, i.dhash FROM sightings s JOIN images i ON i.id = s.image_id"
            ).fetchall()
    hashes = {url.rsplit("/", 1)[-1]: hash_to_hex(from_bigint(dhash)) for url, dhash in rows}
    return timing, printed.strip(), hashes


@click.command("index")
@click.argument("folder", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option(
    "--images",
    type=click.IntRange(min=10),
    default=ARTICLE_IMAGES,
    show_default=True,
    help="JPEGs to make from FOLDER's photos and index (the article indexed 7,876).",
)
@repeat_option(3, "Runs of each, in turn; the medians are compared.")
@click.option("--breakdown", is_flag=True, help="Also time each stage of the work per file.")
@record_option
def bench_index(
    folder: Path, images: int, repeat: int, breakdown: bool, record: Path | None
) -> None:
    """`lookalike index` against the article's index.py on IMAGES Caltech-like JPEGs."""
    sources = image_files(folder)
    if not sources:
        raise click.ClickException(f"no JPEG or PNG files in {folder}")
    server = database_url()
    runs: dict[str, list[Timing]] = {name: [] for name in CONTENDERS}
    with tempfile.TemporaryDirectory() as scratch:
        photos = Path(scratch, "photos")
        photos.mkdir()
        made = caltech_like(sources, images, photos)
        sizes = [Image.open(path).size for path in made]
        for run in range(repeat):  # in turn, so all see the same load
            timing, shelf = run_article(photos, Path(scratch, f"article{run}"))
            runs["article"].append(timing)
            timing, summary, ours = run_lookalike(photos, server)
            runs["lookalike"].append(timing)
            runs["no thumbnails"].append(run_lookalike(photos, server, "--no-thumbnails")[0])
        stages = breakdown_per_file(made, server, Path(scratch)) if breakdown else {}
    theirs = {name: h for h, names in shelf.items() for name in names}
    same = sum(ours.get(name) == h for name, h in theirs.items())
    report = Report(f"bench index, {len(made):,} Caltech-like JPEGs, {repeat} runs of each in turn")
    width, height = (statistics.median(side) for side in zip(*sizes, strict=True))
    report.line(
        f"data: {len(made):,} JPEGs from {len(sources)} photos in {folder.name}, "
        f"median {width:.0f}×{height:.0f} px"
    )
    wall = {name: statistics.median(t.wall for t in timings) for name, timings in runs.items()}
    for name, timings in runs.items():
        walls = [t.wall for t in timings]
        cpu_ms = statistics.median(t.cpu for t in timings) / len(made) * 1000
        report.line(
            f"{CONTENDERS[name]:<42} median {wall[name]:6.2f} s "
            f"(range {min(walls):.2f}–{max(walls):.2f}): {len(made) / wall[name]:6.0f} images/s, "
            f"{cpu_ms:.2f} ms CPU a file"
        )
    report.line(
        f"lookalike index: {wall['article'] / wall['lookalike']:.2f}× the article's speed "
        f"({wall['article'] / wall['no thumbnails']:.2f}× with --no-thumbnails) "
        f"on {os.cpu_count()} cores at load {os.getloadavg()[0]:.1f}"
    )
    report.line(f"lookalike printed: {summary}")
    report.line(f"dHash equal to the article's for {same:,} of {len(theirs):,} files")
    for stage, ms in stages.items():
        report.line(f"  {stage:<58} {ms:7.3f} ms a file")
    report.record(record)


CONTENDERS = {
    "article": "article's index.py (imagehash + shelve)",
    "lookalike": "lookalike index",
    "no thumbnails": "lookalike index --no-thumbnails",
}
SAMPLE = 1000  # files each per-file stage is timed on


def breakdown_per_file(made: list[Path], server: str, scratch: Path) -> dict[str, float]:
    """Milliseconds a file of each stage: start-up (on no files, spread over the run's files),
    CPU time of each step in this one process on SAMPLE files, and the database's wall time.
    """
    empty = scratch / "empty"
    empty.mkdir()
    with scratch_database(server, "lookalike_bench") as url:
        apply_migrations(url)
        env = {**os.environ, "DATABASE_URL": url}
        command = [sys.executable, "-m", "lookalike", "index", str(empty)]
        lookalike_start = timed(command, env, check=False)[0]  # exits 1: nothing indexed
    article_start = timed(article_command(empty, scratch / "empty.shelve"))[0]
    sample = made[:SAMPLE]
    blobs = [path.read_bytes() for path in sample]
    opened = [Image.open(io.BytesIO(blob)) for blob in blobs]
    stages = {
        f"start-up, article: {article_start.wall:.2f} s once (on no files)": (
            article_start.wall * 1000 / len(made)
        ),
        f"start-up, lookalike index: {lookalike_start.wall:.2f} s once (the same)": (
            lookalike_start.wall * 1000 / len(made)
        ),
        "article: Image.open + imagehash.dhash": _cpu_ms(
            lambda b: imagehash.dhash(Image.open(io.BytesIO(b))), blobs
        ),
        "decode (Image.open + load)": _cpu_ms(lambda im: im.load(), opened),
    }
    gray = [np.asarray(image.convert("L")) for image in opened]
    stages["dHash + pHash of the decoded luma"] = _cpu_ms(
        lambda pixels: perceptual.dhash(pixels) ^ perceptual.phash(pixels), gray
    )
    small = [image.convert("RGB") for image in opened]  # shrunk in place, then encoded
    stages["thumbnail: Lanczos to 160 px"] = _cpu_ms(
        lambda image: image.thumbnail((160, 160), Image.Resampling.LANCZOS), small
    )
    stages["thumbnail: WebP encode, quality 75"] = _cpu_ms(
        lambda image: image.save(io.BytesIO(), "WEBP", quality=75), small
    )
    stages["fingerprint() without thumbnail, all steps"] = _cpu_ms(fingerprint, blobs)
    results = [indexer.fingerprint_file(path, with_thumbnail=True) for path in sample]
    stages["fingerprint() with thumbnail, all steps"] = _cpu_ms(
        lambda blob: fingerprint(blob, with_thumbnail=True), blobs
    )
    stages["results to the main process (pickle + unpickle)"] = _cpu_ms(
        lambda result: pickle.loads(pickle.dumps(result)),  # noqa: S301 - ours
        results,
    )
    with scratch_database(server, "lookalike_bench") as url, Store(open_pool(url)) as store:
        started = time.perf_counter()
        indexer.index_files(store, results)
        stages["record in batches of 500 (wall: this process + PostgreSQL)"] = (
            (time.perf_counter() - started) / len(results) * 1000
        )
    return stages


def _cpu_ms(step: Callable[[Any], object], items: list[Any]) -> float:
    started = time.process_time()
    for item in items:
        step(item)
    return (time.process_time() - started) / len(items) * 1000
