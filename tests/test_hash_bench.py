"""`lookalike bench hash` and its memory probe: the numbers must be about the fingerprint path."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.images import encode, photo

# Libraries the benchmark harness loads but fingerprinting must not need.
HARNESS_ONLY = ("click", "psycopg", "scipy", "imagehash", "benchmarks.bench", "lookalike.cli")


def _photos(folder: Path, count: int = 3) -> list[Path]:
    folder.mkdir()
    paths = [folder / f"{seed}.png" for seed in range(count)]
    for seed, path in enumerate(paths):
        path.write_bytes(encode(photo(seed, (800, 600)), "PNG"))
    return paths


def _python(*args: str) -> str:
    done = subprocess.run(
        [sys.executable, *args], capture_output=True, text=True, check=True, timeout=120
    )
    return done.stdout


def test_the_lookalike_probe_loads_only_what_fingerprinting_needs(tmp_path: Path) -> None:
    paths = _photos(tmp_path / "photos")
    loaded = _python(
        "-c",
        "import sys; from pathlib import Path; from benchmarks.peak_memory import measure; "
        f"measure('lookalike', [Path(p) for p in {[str(p) for p in paths]!r}]); "
        f"print(' '.join(m for m in {HARNESS_ONLY!r} if m in sys.modules))",
    )
    assert loaded.strip() == ""


def test_the_probe_prints_resident_then_peak_kilobytes(tmp_path: Path) -> None:
    paths = _photos(tmp_path / "photos")
    printed = _python("-m", "benchmarks.peak_memory", "imagehash", *map(str, paths))
    before_kb, peak_kb = map(int, printed.split())
    assert 10_000 < before_kb <= peak_kb < 500_000


def test_bench_hash_reports_speed_identity_and_what_the_peak_measures(tmp_path: Path) -> None:
    _photos(tmp_path / "photos")
    out = _python("-m", "lookalike", "bench", "hash", str(tmp_path / "photos"), "--repeat", "1")
    lines = out.splitlines()
    assert lines[0].startswith("lookalike fingerprint (sha256+dHash+pHash):")
    assert "peak +" in lines[0] and "(process " in lines[0]
    assert "100% identical" in lines[2]  # PNGs: the same decode as imagehash's
    assert "fresh process that imports only that hasher" in lines[3]
