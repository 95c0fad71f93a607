"""`lookalike bench quality` end to end on photos the test draws, through a real database."""

from __future__ import annotations

import re
from pathlib import Path

from click.testing import CliRunner
from PIL import Image

from benchmarks.quality import EDITS, _rgb
from lookalike.cli import cli
from tests.images import encode, photo


def _table(output: str) -> dict[str, list[float]]:
    """Each row of the printed table: its label and one number per column."""
    rows = re.findall(r"^(\s*\S.*?)\s{2,}((?:[\d.]+ *)+)$", output, re.MULTILINE)
    return {label.strip(): [float(cell) for cell in cells.split()] for label, cells in rows}


def test_bench_quality_prints_recall_per_edit_and_false_matches_by_class(
    cli_env: dict[str, str], tmp_path: Path
) -> None:
    photos = tmp_path / "photos"
    (photos / "copies").mkdir(parents=True)
    for seed in range(3):
        (photos / f"photo{seed}.jpg").write_bytes(encode(photo(seed, (320, 240))))
    # a re-saved copy of photo 0, a little smaller: the same photo, never a false match
    copy = photo(0, (320, 240)).resize((310, 233), Image.Resampling.LANCZOS)
    (photos / "copies" / "photo0-copy.jpg").write_bytes(encode(copy))
    # a crop of photo 1, which no hash groups with it: one photo by --same-photo
    (photos / "photo1-crop.png").write_bytes(
        encode(photo(1, (320, 240)).crop((0, 0, 220, 240)), "PNG")
    )
    # two overlapping shots of one scene: each a photo, their matches a class of their own
    scene = photo(8, (380, 240))
    (photos / "scene-left.png").write_bytes(encode(scene.crop((0, 0, 320, 240)), "PNG"))
    (photos / "scene-right.png").write_bytes(encode(scene.crop((60, 0, 380, 240)), "PNG"))
    record = tmp_path / "bench.md"

    result = CliRunner().invoke(
        cli,
        [
            "bench",
            "quality",
            str(photos),
            "--same-photo",
            "photo1*",
            "--same-scene",
            "scene-*",
            "--record",
            str(record),
        ],
        catch_exceptions=False,
    )

    assert result.exit_code == 0, result.output
    assert "7 files indexed showing 5 photos; 5 edited 17 ways = 85 queries" in result.output
    header = next(line for line in result.output.splitlines() if line.startswith("recall"))
    assert header.split()[1:5] == ["Lookalike", "Lookalike", "hash-only", "dHash"]
    rows = _table(result.output)
    assert list(rows) == [
        *EDITS,
        "all 17 edits",
        "false matches/query",
        "unrelated photos",
        "same scene/product",
    ]
    robust, hash_only = 0, 1
    assert rows["resize 50%"][robust] == rows["resize 50%"][hash_only] == 1.0
    # a mirrored or turned copy's dHash is another hash: only the robust search finds it
    for edit in ("mirror", "rotate 90°"):
        assert rows[edit][robust] == 1.0
        assert rows[edit][hash_only] == 0.0
    assert rows["all 17 edits"][hash_only] < rows["all 17 edits"][robust]
    # the copy of photo 0 and the crop of photo 1 are not counted; the other shot of the
    # scene is, as a match of the same scene
    assert rows["unrelated photos"][robust] == 0.0
    assert rows["same scene/product"][robust] > 0
    assert rows["false matches/query"][robust] == rows["same scene/product"][robust]
    assert "robust search per query, median:" in result.output
    assert "## bench quality, 5 photos x 17 edits from photos" in record.read_text()


def test_bench_quality_with_stored_edits_searches_each_photo_among_its_edited_copies(
    cli_env: dict[str, str], tmp_path: Path
) -> None:
    photos = tmp_path / "photos"
    photos.mkdir()
    for seed in range(3):
        (photos / f"photo{seed}.jpg").write_bytes(encode(photo(seed, (320, 240))))

    result = CliRunner().invoke(
        cli, ["bench", "quality", str(photos), "--stored-edits"], catch_exceptions=False
    )

    assert result.exit_code == 0, result.output
    assert (
        "51 files indexed: 3 photos' 17 edited copies, without the photos, among 0 others; "
        "each photo searched for = 3 queries"
    ) in result.output
    rows = _table(result.output)
    robust, hash_only = 0, 1
    # a stored framed copy is found by what is inside its frame, a mirrored one by a view
    for edit in ("5% white border", "letterbox to square", "mirror"):
        assert rows[edit][robust] == 1.0, edit
    assert rows["mirror"][hash_only] == 0.0
    assert rows["unrelated photos"][robust] == 0.0


def test_bench_quality_refuses_a_folder_without_photos(tmp_path: Path) -> None:
    (tmp_path / "notes.jpg").write_bytes(b"not an image")

    result = CliRunner().invoke(cli, ["bench", "quality", str(tmp_path)])

    assert result.exit_code == 1
    assert "skipped" in result.output
    assert f"Error: no JPEG or PNG file in {tmp_path} could be read" in result.output


def test_edits_start_from_transparent_pixels_made_white() -> None:
    clear = Image.new("LA", (4, 4), (0, 0))  # black, fully transparent

    assert _rgb(encode(clear, "PNG")).getcolors() == [(16, (255, 255, 255))]
