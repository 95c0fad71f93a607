"""lookalike.lanczos must equal Pillow's LANCZOS resize exactly, or dHash drifts from imagehash."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

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
