"""`lookalike bench robust` end to end on photos the test draws, through a real database."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from benchmarks.robust import _flip_bits
from lookalike.cli import cli
from lookalike.features.orb import DESCRIPTOR_BYTES, STORED_FEATURES
from tests.images import encode, photo

STAGES = [
    "views' hash searches (SQL)",
    "candidates (feature index)",
    "feature reads (SQL)",
    "sizes + hashes (SQL)",
    "verification",
    "matches' rows + sightings (SQL)",
]


def _photos(folder: Path) -> Path:
    folder.mkdir()
    for seed in range(3):
        (folder / f"photo{seed}.jpg").write_bytes(encode(photo(seed, (400, 300))))
    return folder


@pytest.mark.parametrize(
    ("descriptors", "described"),
    [("perturbed", "each feature one of the photos' "), ("random", "random descriptors")],
)
def test_bench_robust_prints_each_target_and_stage(
    cli_env: dict[str, str], tmp_path: Path, descriptors: str, described: str
) -> None:
    folder = _photos(tmp_path / "photos")
    record = tmp_path / "bench.md"
    command = ["bench", "robust", str(folder), "--images", "300", "--queries", "6"]
    options = ["--descriptors", descriptors, "--record", str(record)]

    result = CliRunner().invoke(cli, [*command, *options], catch_exceptions=False)

    assert result.exit_code == 0, result.output
    out = result.output
    assert re.search(r"^indexing 3 JPEGs at 1024x768 q85 .* with local features \d+ ", out, re.M)
    made = "3 photos from the folder + 297 synthetic images (random hashes; features: "
    assert made + described in out
    assert re.search(r"^fill: COPY images \d+ s, COPY image_features \d+ s", out, re.M)
    stored = int(re.search(r"image_features ([\d,]+) B", out).group(1).replace(",", ""))
    assert 5 + STORED_FEATURES * (4 + DESCRIPTOR_BYTES) < stored < 20_000  # the features, once
    assert re.search(r"refresh_features on an empty index\): 300 images in [\d.]+ s \(", out)
    assert re.search(r"arrays [\d,]+ B per image, process RSS [+-][\d,]+ B per image", out)
    robust = re.search(
        r"robust Store.search, 6 edited copies \(6 edits\): p50 \d+ ms, p99 (\d+)", out
    )
    found = re.search(r"the edited photo found for (\d)$", out, re.M)
    # at least the mirrored, turned and framed copies: one of the views' hashes finds each
    assert robust and found and int(found.group(1)) >= 3
    assert re.search(r"^hash-only Store.search, the same queries' hashes: p50 [\d.]+ ms", out, re.M)
    rows = dict(re.findall(r"^(\S.*?)\s+([\d.]+)\s+[\d.]+\s+\S+$", out, re.M))
    assert list(rows) == STAGES
    # the stages are parts of each search: their medians add up to no more than the slowest
    assert sum(map(float, rows.values())) <= int(robust.group(1)) + len(STAGES)
    refreshed = r"^refresh: 1,000 new images at a time, 8 times: median \d+ ms, slowest \d+ ms \("
    assert re.search(refreshed, out, re.M)
    assert f"## bench robust, 300 images ({descriptors} synthetic features)" in record.read_text()


def test_bench_robust_needs_room_for_the_photos(cli_env: dict[str, str], tmp_path: Path) -> None:
    folder = _photos(tmp_path / "photos")

    result = CliRunner().invoke(cli, ["bench", "robust", str(folder), "--images", "2"])

    assert result.exit_code == 1
    assert "Error: --images must be at least the 3 photos" in result.output


def test_bench_robust_refuses_a_folder_without_photos(tmp_path: Path) -> None:
    (tmp_path / "notes.jpg").write_bytes(b"not an image")

    result = CliRunner().invoke(cli, ["bench", "robust", str(tmp_path)])

    assert result.exit_code == 1
    assert f"Error: no JPEG or PNG file in {tmp_path} could be read" in result.output


def test_perturbed_descriptors_are_the_flips_away() -> None:
    rng = np.random.default_rng(1)
    descriptors = rng.integers(0, 256, size=(500, DESCRIPTOR_BYTES), dtype=np.uint8)

    flipped = _flip_bits(descriptors, 8, rng)

    distances = np.unpackbits(descriptors ^ flipped, axis=1).sum(axis=1)
    assert distances.max() == 8 and (distances % 2 == 0).all()  # a bit flipped twice: back
    assert (distances == 8).mean() > 0.8
