"""lookalike.lanczos must equal Pillow's LANCZOS resize exactly, or dHash drifts from imagehash."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from lookalike import lanczos
from lookalike.lanczos import resize
from tests.images import photo

_RNG = np.random.default_rng(2026)
# (width, height) of the source: draft-decoded JPEG sizes, odd and tiny ones, images at most
# ~1.1× the target (upscaling), and tall ones on both sides of Pillow's vertical-first switch.
SOURCES = [(512, 384), (500, 375), (384, 512), (257, 1000), (1, 1), (7, 3), (9, 8), (33, 31)]
SOURCES += [(int(w), int(h)) for w, h in _RNG.integers(1, 700, size=(24, 2))]
SOURCES += [(w, 2 * w - d) for w in (40, 150, 301) for d in (-1, 0, 9, 10, 11, 31, 32, 33)]
TARGETS = [(9, 8), (32, 32), (5, 17), (160, 120)]


def _pillow(pixels: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    return np.asarray(Image.fromarray(pixels).resize(size, Image.Resampling.LANCZOS))


@pytest.mark.parametrize("source", SOURCES, ids=[f"{w}x{h}" for w, h in SOURCES])
def test_equals_pillow_on_noise_and_on_smooth_pictures(source: tuple[int, int]) -> None:
    width, height = source
    seed = width * 1000 + height
    noise = np.random.default_rng(seed).integers(0, 256, (height, width), dtype=np.uint8)
    smooth = np.asarray(photo(seed % 97, source).convert("L"))
    for pixels in (noise, smooth):
        for target in TARGETS:
            assert np.array_equal(resize(pixels, *target), _pillow(pixels, target)), target


def test_saturated_pixels_clip_like_pillow() -> None:
    # Lanczos overshoots at hard edges; Pillow clips the intermediate image to 0..255.
    stripes = np.zeros((300, 400), dtype=np.uint8)
    stripes[:, ::40] = 255
    stripes[::25, :] = 255
    for target in TARGETS:
        assert np.array_equal(resize(stripes, *target), _pillow(stripes, target))


def test_each_matrix_is_built_once_however_many_sizes_pictures_come_in(monkeypatch) -> None:
    built: list[tuple[int, int]] = []
    build = lanczos._dense_coefficients
    monkeypatch.setattr(
        lanczos, "_dense_coefficients", lambda *key: built.append(key) or build(*key)
    )
    monkeypatch.setattr(lanczos, "_cache", type(lanczos._cache)())
    sizes = [(200 + n, 100 + n) for n in range(60)]  # 240 matrices: crops, each its own size
    for _ in range(2):
        for width, height in sizes:
            resize(np.zeros((height, width), dtype=np.uint8), 9, 8)
            resize(np.zeros((height, width), dtype=np.uint8), 32, 32)
    assert len(built) == len(set(built)) == 240


def test_the_cache_keeps_the_latest_matrices_within_its_bytes(monkeypatch) -> None:
    monkeypatch.setattr(lanczos, "_CACHE_BYTES", 1_600_000)
    monkeypatch.setattr(lanczos, "_cache", type(lanczos._cache)())
    for width in range(100, 401, 10):
        pixels = np.asarray(photo(width, (width, 120)).convert("L"))
        assert np.array_equal(resize(pixels, 32, 32), _pillow(pixels, (32, 32)))
        assert sum(matrix.nbytes for matrix in lanczos._cache.values()) <= 1_600_000
    assert (400, 32) in lanczos._cache  # the last picture's
    assert (100, 32) not in lanczos._cache
    resize(np.zeros((120, 1000), dtype=np.uint8), 32, 32)  # 256 kB: over an eighth
    assert (1000, 32) not in lanczos._cache
