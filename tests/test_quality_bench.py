"""`lookalike bench quality` end to end on photos the test draws, through a real database."""

from __future__ import annotations

import re
from pathlib import Path

from click.testing import CliRunner
from PIL import Image

from benchmarks.quality import EDITS, _rgb
from lookalike.cli import cli
from tests.images import encode, photo


def test_bench_quality_prints_recall_per_edit_and_false_matches(
    cli_env: dict[str, str], tmp_path: Path
) -> None:
    photos = tmp_path / "photos"
    (photos / "copies").mkdir(parents=True)
    for seed in range(4):
        (photos / f"photo{seed}.jpg").write_bytes(encode(photo(seed, (320, 240))))
    # a re-saved copy of photo 0, a little smaller: the same photo, never a false match
    copy = photo(0, (320, 240)).resize((310, 233), Image.Resampling.LANCZOS)
    (photos / "copies" / "photo0-copy.jpg").write_bytes(encode(copy))
    record = tmp_path / "bench.md"

    result = CliRunner().invoke(
        cli, ["bench", "quality", str(photos), "--record", str(record)], catch_exceptions=False
    )

    assert result.exit_code == 0, result.output
    assert "5 files indexed showing 4 photos; 4 edited 17 ways = 68 queries" in result.output
    header = next(line for line in result.output.splitlines() if line.startswith("recall"))
    assert header.split()[1:4] == ["Lookalike", "dHash", "r10"]
    rows = dict(re.findall(r"^(\S.*?)\s{2,}([\d.]+)\s", result.output, re.MULTILINE))
    assert list(rows) == [*EDITS, "all 17 edits", "false matches/query"]
    assert float(rows["resize 50%"]) == 1.0  # found by a plain dHash
    assert float(rows["mirror"]) == 0.0  # a mirrored copy's dHash is another hash today
    assert 0 < float(rows["all 17 edits"]) < 1
    assert float(rows["false matches/query"]) == 0.0  # the copy of photo 0 is not counted
    assert "## bench quality, 4 photos x 17 edits from photos" in record.read_text()


def test_bench_quality_refuses_a_folder_without_photos(tmp_path: Path) -> None:
    (tmp_path / "notes.jpg").write_bytes(b"not an image")

    result = CliRunner().invoke(cli, ["bench", "quality", str(tmp_path)])

    assert result.exit_code == 1
    assert "skipped" in result.output
    assert f"Error: no JPEG or PNG file in {tmp_path} could be read" in result.output


def test_edits_start_from_transparent_pixels_made_white() -> None:
    clear = Image.new("LA", (4, 4), (0, 0))  # black, fully transparent

    assert _rgb(encode(clear, "PNG")).getcolors() == [(16, (255, 255, 255))]
