"""The fingerprint path's memory bound, measured on the crawler's worker function alone.

The bound ``lookalike.fingerprint.decode_cost`` states (6 bytes a decoded pixel plus 48 MB) is
checked as the kernel sees it: the peak RSS of a process that holds only the worker function,
reset just before the one image it hashes (as ``benchmarks.peak_memory`` measures the hashers).
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from PIL import Image

from tests.images import declared_png, encode, photo

_MEASURE = """
import sys
from pathlib import Path
from crawler.hashing import fingerprint_or_kind
from benchmarks.peak_memory import reset_peak, status_kb
from tests.images import encode, photo

fingerprint_or_kind(encode(photo(1), "PNG"), 50_000_000, True)  # loads every library
data = Path(sys.argv[1]).read_bytes()
reset_peak()
before = status_kb("VmRSS")
result = fingerprint_or_kind(data, 50_000_000, True)
print(status_kb("VmHWM") - before)
print(result if isinstance(result, str) else "hashed")
"""
_MB = 1 << 20
_SIDE = 7000  # 49 MP


def _worker_peak_rise(path: Path) -> tuple[float, str]:
    """(MB the worker's peak RSS rose while fingerprinting path, its outcome)."""
    run = subprocess.run(
        [sys.executable, "-c", _MEASURE, str(path)],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=Path(__file__).parent.parent,
    )
    assert run.returncode == 0, run.stderr
    rise_kib, outcome = run.stdout.splitlines()
    return int(rise_kib) / 1024, outcome


def _bound_mb(pixels: int) -> float:
    return (pixels * 6 + 48 * _MB) / _MB


def _exif(orientation: int) -> bytes:
    exif = Image.Exif()
    exif[0x0112] = orientation
    return exif.tobytes()


PALETTE = bytes(range(256)) * 3
# Built when a test runs, not when the suite is collected (each takes ~0.7 s).
BIG: dict[str, Callable[[], bytes]] = {
    "RGBA": lambda: declared_png(_SIDE, _SIDE, colour_type=6),
    "RGB": lambda: declared_png(_SIDE, _SIDE, colour_type=2),
    "gray": lambda: declared_png(_SIDE, _SIDE),
    "gray with tRNS": lambda: declared_png(_SIDE, _SIDE, extra_chunks=((b"tRNS", b"\0\x80"),)),
    "palette with tRNS": lambda: declared_png(
        _SIDE, _SIDE, colour_type=3, extra_chunks=((b"PLTE", PALETTE), (b"tRNS", bytes(256)))
    ),
    "gray+alpha": lambda: declared_png(_SIDE, _SIDE, colour_type=4),
    "RGBA turned by EXIF": lambda: declared_png(
        _SIDE, _SIDE, colour_type=6, extra_chunks=((b"eXIf", _exif(6)[6:]),)
    ),
    "16-bit gray": lambda: declared_png(_SIDE, _SIDE, bit_depth=16),
    # Drafted small, but libjpeg holds 3 × 2 bytes of coefficients a pixel until the last scan.
    "progressive JPEG": lambda: encode(
        Image.linear_gradient("L").resize((_SIDE, _SIDE)).convert("RGB"),
        "JPEG",
        progressive=True,
        subsampling=0,
    ),
}


@pytest.mark.parametrize("name", BIG)
def test_a_49_mp_image_stays_within_6_bytes_a_pixel_plus_48_mb(name: str, tmp_path: Path) -> None:
    path = tmp_path / "big.png"
    path.write_bytes(BIG[name]())
    rise, outcome = _worker_peak_rise(path)
    assert outcome == "hashed"
    assert rise <= _bound_mb(_SIDE * _SIDE)


TINY: dict[str, Callable[[], bytes]] = {
    "2x25000000 gray": lambda: declared_png(2, 25_000_000),
    "50000000x1 gray": lambda: declared_png(50_000_000, 1),
    "65535x2 gray": lambda: declared_png(65_535, 2),
    "12 MP JPEG": lambda: encode(photo(3, (4000, 3000)), "JPEG"),
}


@pytest.mark.parametrize("name", TINY)
def test_small_or_refused_images_cost_the_worker_under_100_mb(name: str, tmp_path: Path) -> None:
    path = tmp_path / "image"
    path.write_bytes(TINY[name]())
    rise, outcome = _worker_peak_rise(path)
    assert rise < 100, outcome
    assert outcome.startswith("image too long") == ("25000000" in name or "50000000" in name)


def test_a_webp_stays_within_16_bytes_a_pixel_plus_48_mb(tmp_path: Path) -> None:
    # Pillow decodes every WebP through libwebp's animation decoder: two canvases and a copy.
    path = tmp_path / "red.webp"
    path.write_bytes(encode(Image.new("RGB", (5000, 5000), "red"), "WEBP", lossless=True))
    rise, outcome = _worker_peak_rise(path)
    assert outcome == "hashed"
    assert rise <= (5000 * 5000 * 16 + 48 * _MB) / _MB
