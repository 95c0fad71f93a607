"""`lookalike bench web` runs end to end on a small database (numbers are not checked here)."""

from __future__ import annotations

import re
import subprocess

import pytest


@pytest.mark.slow
def test_bench_web_prints_both_phases_without_errors(cli_env: dict[str, str], tmp_path) -> None:
    record = tmp_path / "bench.md"
    small = ["--rows", "1000", "--clients", "2", "--duration", "1", "--photos", "2"]
    small += ["--size", "640x480"]
    done = subprocess.run(
        ["lookalike", "bench", "web", *small, "--workers", "2", "--record", str(record)],
        env=cli_env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    for phase in ("upload", "dhash"):
        line = re.search(rf"^{phase} +([\d.]+) .* (\d+) (\d+)$", done.stdout, re.MULTILINE)
        assert line, done.stdout
        requests_per_s, peak_mb, errors = float(line.group(1)), int(line.group(2)), line.group(3)
        assert requests_per_s > 0 and errors == "0"
        assert peak_mb > 50  # the server process's own peak, with Python, Flask and numpy loaded
    assert "$ lookalike bench web --rows 1000" in record.read_text()
