"""`lookalike bench index`: the article's index.py and `lookalike index` on the same files."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from PIL import Image

from benchmarks.index import caltech_like
from tests.images import encode, photo


def _sources(folder: Path) -> Path:
    folder.mkdir()
    for seed in range(3):
        (folder / f"{seed}.png").write_bytes(encode(photo(seed, (400, 300)), "PNG"))
    return folder


def test_the_data_set_is_distinct_jpegs_of_caltech_size(tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    made = caltech_like(sorted(_sources(tmp_path / "src").iterdir()), 30, out)
    assert len({path.read_bytes() for path in made}) == 30
    for path in made:
        with Image.open(path) as image:
            assert image.format == "JPEG"
            assert 216 <= image.width <= 345 and 162 <= image.height <= 259, image.size


def test_bench_index_times_both_in_turn_on_the_same_files(tmp_path: Path, database_url) -> None:
    folder = _sources(tmp_path / "src")
    command = ["bench", "index", str(folder), "--images", "12", "--repeat", "1", "--breakdown"]
    done = subprocess.run(
        [sys.executable, "-m", "lookalike", *command],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "DATABASE_URL": database_url},
    )
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0].startswith("data: 12 JPEGs from 3 photos in src, median ")
    assert lines[1].startswith("article's index.py (imagehash + shelve)    median ")
    assert lines[2].startswith("lookalike index                            median ")
    assert lines[3].startswith("lookalike index --no-thumbnails")
    assert all("(range " in line and "images/s" in line for line in lines[1:4])
    assert "× the article's speed" in lines[4]
    assert lines[5] == (
        "lookalike printed: indexed 12 files (12 new images, 0 duplicates, 0 already known); "
        "rejected 0"
    )
    assert lines[6] == "dHash equal to the article's for 12 of 12 files"
    stages = [line.split("  ")[1].strip() for line in lines[7:]]
    assert "thumbnail: WebP encode, quality 75" in stages
    assert all(line.endswith(" ms a file") for line in lines[7:]) and len(stages) == 11
