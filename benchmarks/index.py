"""``lookalike bench index``: ``lookalike index`` against the article's ``index.py``, side by side.

Both run as a user runs them, one command each, start-up included, on the same files: the
article's script (imagehash + shelve, one process) and ``python -m lookalike index DIR`` on an
empty scratch database with the default settings (thumbnails on). Runs alternate A B A B…, so
both see the same load on a shared machine, and the medians are compared.
"""

from __future__ import annotations

import os
import shelve
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import click
import numpy as np
from PIL import Image

from benchmarks.bench import Report, image_files, record_option, repeat_option
from lookalike.config import database_url
from lookalike.db import apply_schema, connect, scratch_database
from lookalike.hashes import from_bigint, hash_to_hex

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


def _seconds(command: list[str], env: dict[str, str] | None = None) -> tuple[float, str]:
    started = time.perf_counter()
    done = subprocess.run(  # noqa: S603 - our own command lines
        command, capture_output=True, text=True, env=env, timeout=3600
    )
    elapsed = time.perf_counter() - started
    if done.returncode != 0:
        raise click.ClickException(f"{command[1:3]} failed: {done.stderr.strip()[-500:]}")
    return elapsed, done.stdout


def run_article(folder: Path, scratch: Path) -> tuple[float, dict[str, list[str]]]:
    """Seconds of one run of the article's script, and the shelve it wrote."""
    scratch.mkdir()
    shelf = scratch / "db.shelve"
    command = [
        sys.executable,
        str(ARTICLE_SCRIPT),
        "--dataset",
        str(folder),
        "--shelve",
        str(shelf),
    ]
    elapsed, _ = _seconds(command)
    with shelve.open(str(shelf), "r") as db:  # noqa: S301 - the shelve we just wrote
        return elapsed, dict(db)


def run_lookalike(folder: Path, server: str, *options: str) -> tuple[float, str, dict[str, str]]:
    """Seconds of ``lookalike index [OPTIONS] FOLDER`` on a fresh database, its summary, and
    file → dHash."""
    with scratch_database(server, "lookalike_bench") as url:
        apply_schema(url)  # as `lookalike init-db` would have; the run applies it again
        env = {**os.environ, "DATABASE_URL": url}
        command = [sys.executable, "-m", "lookalike", "index", *options, str(folder)]
        elapsed, printed = _seconds(command, env)
        with connect(url) as conn:
            rows = conn.execute(
                "SELECT s.image_url, i.dhash FROM sightings s JOIN images i ON i.id = s.image_id"
            ).fetchall()
    hashes = {url.rsplit("/", 1)[-1]: hash_to_hex(from_bigint(dhash)) for url, dhash in rows}
    return elapsed, printed.strip(), hashes


@click.command("index")
@click.argument("folder", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option(
    "--images",
    type=click.IntRange(min=10),
    default=ARTICLE_IMAGES,
    show_default=True,
    help="JPEGs to make from FOLDER's photos and index (the article indexed 7,876).",
)
@repeat_option(3, "Runs of each, alternating; the medians are compared.")
@record_option
def bench_index(folder: Path, images: int, repeat: int, record: Path | None) -> None:
    """`lookalike index` against the article's index.py on IMAGES Caltech-like JPEGs."""
    sources = image_files(folder)
    if not sources:
        raise click.ClickException(f"no JPEG or PNG files in {folder}")
    server = database_url()
    seconds: dict[str, list[float]] = {"article": [], "lookalike": [], "no thumbnails": []}
    with tempfile.TemporaryDirectory() as scratch:
        photos = Path(scratch, "photos")
        photos.mkdir()
        made = caltech_like(sources, images, photos)
        sizes = [Image.open(path).size for path in made]
        for run in range(repeat):  # in turn, so both see the same load
            elapsed, shelf = run_article(photos, Path(scratch, f"article{run}"))
            seconds["article"].append(elapsed)
            elapsed, summary, ours = run_lookalike(photos, server)
            seconds["lookalike"].append(elapsed)
            seconds["no thumbnails"].append(run_lookalike(photos, server, "--no-thumbnails")[0])
    theirs = {name: h for h, names in shelf.items() for name in names}
    same = sum(ours.get(name) == h for name, h in theirs.items())
    report = Report(f"bench index, {len(made):,} Caltech-like JPEGs, {repeat} runs of each in turn")
    width, height = (statistics.median(side) for side in zip(*sizes, strict=True))
    report.line(
        f"data: {len(made):,} JPEGs from {len(sources)} photos in {folder.name}, "
        f"median {width:.0f}×{height:.0f} px"
    )
    medians = {name: statistics.median(values) for name, values in seconds.items()}
    labels = {
        "article": "article's index.py (imagehash + shelve)",
        "lookalike": f"lookalike index ({os.cpu_count()} cores)",
        "no thumbnails": "lookalike index --no-thumbnails",
    }
    for name, values in seconds.items():
        report.line(
            f"{labels[name]:<42} median {medians[name]:6.2f} s "
            f"(range {min(values):.2f}–{max(values):.2f}): "
            f"{len(made) / medians[name]:6.0f} images/s"
        )
    report.line(
        f"lookalike index: {medians['article'] / medians['lookalike']:.2f}× the article's speed"
    )
    report.line(f"lookalike printed: {summary}")
    report.line(f"dHash equal to the article's for {same:,} of {len(theirs):,} files")
    report.record(record)
