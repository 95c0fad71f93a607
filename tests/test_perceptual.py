"""lookalike.perceptual gives imagehash's dHash and pHash, bit for bit, in imagehash's order."""

from __future__ import annotations

import imagehash
import numpy as np
import pytest
from PIL import Image

from lookalike.perceptual import dhash, phash
from tests.images import photo

SIZES = [(512, 384), (375, 500), (300, 1000), (33, 20)]


def _as_int(image_hash: imagehash.ImageHash) -> int:
    return int(str(image_hash), 16)


@pytest.mark.parametrize("size", SIZES, ids=[f"{w}x{h}" for w, h in SIZES])
def test_dhash_and_phash_equal_imagehash_on_the_same_gray_image(size: tuple[int, int]) -> None:
    phash_agrees = 0
    for seed in range(12):
        gray = photo(seed, size).convert("L")
        pixels = np.asarray(gray)
        assert dhash(pixels) == _as_int(imagehash.dhash(gray))
        phash_agrees += phash(pixels) == _as_int(imagehash.phash(gray))
    # The DCT is numpy's, not SciPy's: a coefficient tying the median could round differently.
    assert phash_agrees >= 11


def test_bit_order_is_row_major_most_significant_first() -> None:
    # Brightness rising left to right everywhere: every dHash bit is set...
    ramp = np.tile(np.arange(0, 256, 2, dtype=np.uint8), (96, 1))
    assert dhash(ramp) == (1 << 64) - 1
    # ...and only the top row rising: the 8 most significant bits.
    top_only = np.full((96, 128), 128, dtype=np.uint8)
    top_only[:12] = ramp[:12]
    assert dhash(top_only) == _as_int(imagehash.dhash(Image.fromarray(top_only)))
    assert dhash(top_only) >> 56 == 0xFF
