"""imagehash's dHash and pHash, computed from an 8-bit grayscale array.

Same algorithms, sizes and bit order as ``imagehash.dhash`` and ``imagehash.phash`` (so
``hash_to_hex(dhash(pixels)) == str(imagehash.dhash(image))``), without their costs: Pillow's
scalar resize (see :mod:`lookalike.lanczos`), a grayscale copy per hash, building each hash
as a string of "0"s and "1"s, and SciPy, which ``imagehash.phash`` imports for a full 32×32
DCT of which it keeps 64 coefficients (the import took 27 MB and 0.16–0.23 s here).
"""

from __future__ import annotations

from functools import cache

import numpy as np

from lookalike import lanczos

HASH_SIZE = 8
_PHASH_SIDE = HASH_SIZE * 4  # imagehash's highfreq_factor


def dhash(pixels: np.ndarray) -> int:
    """Whether each pixel of a 9×8 shrink is brighter than its left neighbour, row by row."""
    small = lanczos.resize(pixels, HASH_SIZE + 1, HASH_SIZE)
    return _bits_to_int(small[:, 1:] > small[:, :-1])


def phash(pixels: np.ndarray) -> int:
    """Whether each of the 8×8 lowest DCT-II frequencies of a 32×32 shrink is above their median.

    Only those 64 coefficients are computed, as ``basis @ image @ basis.T``; they equal
    SciPy's up to float rounding, so a bit can differ from imagehash's only where a
    coefficient ties the median to ~1e-12.
    """
    small = lanczos.resize(pixels, _PHASH_SIDE, _PHASH_SIDE).astype(np.float64)
    basis = _dct_basis()
    low = basis @ small @ basis.T
    return _bits_to_int(low > np.median(low))


@cache
def _dct_basis() -> np.ndarray:
    """The first 8 rows of unnormalised DCT-II on 32 points (SciPy's ``dct`` default)."""
    k = np.arange(HASH_SIZE)[:, None]
    n = np.arange(_PHASH_SIDE)[None, :]
    return 2.0 * np.cos(np.pi * k * (2 * n + 1) / (2 * _PHASH_SIDE))


def _bits_to_int(bits: np.ndarray) -> int:
    """Row-major, first bit most significant: imagehash's order."""
    return int.from_bytes(np.packbits(bits.ravel()).tobytes(), "big")
