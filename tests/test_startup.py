"""`lookalike` starts without the benchmarks: no SciPy, and the core imports no Scrapy or Flask."""

from __future__ import annotations

import ast
import re
import subprocess
import sys
from pathlib import Path

from tests.images import encode, photo

ROOT = Path(__file__).resolve().parent.parent
PRODUCT = ("lookalike", "crawler", "searchweb")

# What a command that fingerprints must not load: heavy packages (SciPy alone took ~0.5 s a
# start), and the moderation commands with the banks, which load only when one of them runs.
NOT_AT_START = ("scipy", "scrapy", "flask", "benchmarks", "lookalike.moderation_cli")
WITHOUT_SCIPY = "import sys; sys.modules['scipy'] = None; from lookalike.cli import main; main()"


def _python(code: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", code, *args], capture_output=True, text=True, timeout=120
    )


def test_hash_loads_neither_the_benchmarks_nor_the_crawler_nor_the_site(tmp_path: Path) -> None:
    image = tmp_path / "photo.png"
    image.write_bytes(encode(photo(1, (64, 48)), "PNG"))
    done = _python(
        "import sys; from lookalike.cli import cli; "
        "cli.main(['hash', sys.argv[1]], standalone_mode=False); "
        f"print(' '.join(m for m in {NOT_AT_START!r} if m in sys.modules))",
        str(image),
    )
    assert done.returncode == 0, done.stderr
    hashed, loaded = done.stdout.splitlines()
    assert hashed.endswith(str(image))
    assert loaded == ""


def _imported_modules(source: Path) -> set[str]:
    """The modules a source file imports, read from its syntax tree (not by importing it)."""
    tree = ast.parse(source.read_text(), str(source))
    names = {
        alias.name
        for node in ast.walk(tree)
        if isinstance(node, ast.Import)
        for alias in node.names
    }
    return names | {
        node.module or "" for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)
    }


def test_the_product_never_imports_the_benchmarks() -> None:
    sources = [path for package in PRODUCT for path in (ROOT / package).rglob("*.py")]
    importing = [
        str(path.relative_to(ROOT))
        for path in sources
        if any(name.split(".")[0] == "benchmarks" for name in _imported_modules(path))
    ]
    assert sources and importing == []


def test_without_scipy_bench_is_one_line_naming_the_extra_and_the_rest_runs() -> None:
    bench = _python(WITHOUT_SCIPY, "bench", "search")
    assert bench.returncode == 1
    assert bench.stderr.splitlines() == [
        "Error: bench needs 'scipy.optimize', which is not installed "
        "(pip install 'lookalike[bench]')"
    ]
    listed = _python(WITHOUT_SCIPY, "--help")
    assert listed.returncode == 0, listed.stderr
    assert "bench          (unavailable: bench needs 'scipy.optimize'" in listed.stdout
    assert "hash " in listed.stdout


def test_bench_start_puts_lookalike_hash_near_the_bare_imports(tmp_path: Path) -> None:
    """The target is 1.5×; 2× leaves room for a loaded machine (it was 2.3× with SciPy)."""
    record = tmp_path / "bench.md"
    done = subprocess.run(
        ["lookalike", "bench", "start", "--repeat", "3", "--record", str(record)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    ratio = float(re.search(r"lookalike hash takes ([\d.]+)× the bare imports", done.stdout)[1])
    assert ratio < 2
    assert "$ lookalike bench start" in record.read_text()
