"""`lookalike bench radius`, `bench check` and `bench moderation` run end to end on tiny inputs
(numbers unchecked)."""

from __future__ import annotations

import re
from pathlib import Path

from click.testing import CliRunner

from lookalike.cli import cli
from tests.images import encode, photo, textured_photo


def test_bench_radius_measures_recall_and_false_positives_per_radius(tmp_path: Path) -> None:
    for seed in range(4):
        (tmp_path / f"photo{seed}.jpg").write_bytes(encode(photo(seed, (320, 240)), "JPEG"))
    record = tmp_path / "bench.md"

    result = CliRunner().invoke(cli, ["bench", "radius", str(tmp_path), "--record", str(record)])

    assert result.exit_code == 0, result.output
    assert "4 files showing 4 distinct photos, 5 transformed copies of each" in result.output
    assert "20 related pairs, 216 unrelated pairs" in result.output
    rows = re.findall(r"^\s*(\d+)\s+([\d.]+)%\s+(\d+)/216", result.output, re.MULTILINE)
    assert [int(r) for r, _, _ in rows] == list(range(17))
    recall_at_8, false_positives_at_8 = float(rows[8][1]), int(rows[8][2])
    assert (recall_at_8, false_positives_at_8) == (100.0, 0)  # smooth synthetic photos
    assert "## bench radius, 24 samples" in record.read_text()


def test_bench_check_reports_latency_and_throughput(cli_env: dict[str, str]) -> None:
    args = ["bench", "check", "--entries", "2000", "--queries", "20", "--clients", "2"]
    result = CliRunner().invoke(cli, [*args, "--seconds", "1"])

    assert result.exit_code == 0, result.output
    assert re.search(
        r"1 client,  radius  8: p50 +[\d.]+ ms, p99 +[\d.]+ ms over 20 checks", result.output
    )
    assert re.search(r"2 clients, radius  8: \d+ checks/s", result.output)


def test_bench_moderation_reports_recall_per_disguise_and_false_positives_per_route(
    cli_env: dict[str, str], tmp_path: Path
) -> None:
    for seed in range(3):
        (tmp_path / f"photo{seed}.png").write_bytes(encode(textured_photo(90 + seed), "PNG"))

    result = CliRunner().invoke(cli, ["bench", "moderation", str(tmp_path)])

    assert result.exit_code == 0, result.output
    assert "disguised 6 ways = 21 checks, each an unrelated upload to the other 2" in result.output
    assert re.search(r"^recall +plain +views +features +robust$", result.output, re.MULTILINE)
    rows = re.findall(r"^(\S.*?) +([\d.]+) +([\d.]+) +([\d.]+) +([\d.]+)$", result.output, re.M)
    assert [row[0] for row in rows] == [
        "mirror",
        "rotate 90°",
        "rotate 5°",
        "5% white border",
        "caption band",
        "crop centre 60%",
        "all disguises",
        "false pos./check",
    ]
    assert re.search(r"check p50: plain [\d.]+ ms, robust [\d.]+ ms", result.output)
