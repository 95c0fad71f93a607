"""Pillow's 8-bit Lanczos resize, pixel for pixel, as numpy matrix products.

imagehash shrinks every image with ``Image.resize(size, LANCZOS)``; Pillow does that with
scalar C loops, which took about a third of Lookalike's fingerprint time. The same arithmetic
as dense matrix products is ~3× faster, and it must stay *equal* to Pillow's (not merely
close), or our dHash would drift from imagehash's on the same decoded image. So this follows
Pillow 13's src/libImaging/Resample.c step by step:

- coefficients as in ``precompute_coeffs`` (window bounds rounded the C way, weights
  normalised by their sequential sum), then turned into 22-bit fixed point as in
  ``normalize_coeffs_8bpc`` (round half away from zero);
- two passes, each adding half an LSB and dropping to 8 bits with clipping (``clip8``); the
  intermediate image is 8-bit, so the pass order matters, and Pillow runs the vertical pass
  first when the height shrinks more than twice as much as the width.

Pixel × coefficient products and their sums stay below 2^40, so float64 sums are exact
integers, whatever order BLAS adds them in. tests/test_lanczos.py compares against Pillow.
"""

from __future__ import annotations

import math
import threading
from collections import OrderedDict

import numpy as np

_SUPPORT = 3.0  # Lanczos-3
_PRECISION_BITS = 22  # Pillow's 32 - 8 - 2: room for 8-bit pixels and negative lobes
_HALF = float(1 << (_PRECISION_BITS - 1))
_UNIT = 1.0 / (1 << _PRECISION_BITS)
# OpenBLAS splits a product over all cores once rows × columns × depth passes 4 × 65536. On
# a busy 2-core machine that made a 0.35 ms pass take 5 ms, and callers already run one
# fingerprinting process per core, so products are cut into blocks that stay on one core.
_SINGLE_CORE_PRODUCT = 4 * 65536
# Matrices are cached up to this many bytes in all: pictures come in many sizes (each crawled or
# cropped photo its own), and one side's three hash matrices take (8 + 9 + 32) × 8 bytes per
# pixel of it, 118 kB for a 300 px side, so this keeps ~280 such sides, or 10 of 8192 px. A
# matrix over an eighth of it (a side over 16,384 px) is built per call instead.
_CACHE_BYTES = 32 * 1024 * 1024


def resize(pixels: np.ndarray, width: int, height: int) -> np.ndarray:
    """``Image.fromarray(pixels).resize((width, height), LANCZOS)`` for 8-bit grayscale."""
    rows, columns = pixels.shape
    if rows - height > 0 and rows - height > (columns - width) * 2:
        return _horizontal(_vertical(pixels, height), width).astype(np.uint8)
    return _vertical(_horizontal(pixels, width), height).astype(np.uint8)


def _horizontal(image: np.ndarray, width: int) -> np.ndarray:
    if image.shape[1] == width:
        return image
    return _to_8_bits(_product(image, _coefficients(image.shape[1], width).T))


def _vertical(image: np.ndarray, height: int) -> np.ndarray:
    if image.shape[0] == height:
        return image
    return _to_8_bits(_product(_coefficients(image.shape[0], height), image))


def _to_8_bits(sums: np.ndarray) -> np.ndarray:
    """Pillow's ``clip8(sum + half)``: an arithmetic shift by 22 bits, clipped to 0..255."""
    sums += _HALF
    sums *= _UNIT
    np.floor(sums, out=sums)
    return np.clip(sums, 0, 255, out=sums)


def _product(left: np.ndarray, right: np.ndarray) -> np.ndarray:
    """``left @ right`` in float64, in blocks small enough for OpenBLAS to keep on one core.

    The blocks go through one reused float64 buffer: converting a 50 MP image at once would
    take 400 MB, eight times its 8-bit pixels.
    """
    if left.shape[0] < right.shape[1]:
        return _product(right.T, left.T).T
    rows, depth = left.shape
    columns = right.shape[1]
    step = max(1, _SINGLE_CORE_PRODUCT // (depth * columns))
    block = np.empty((min(step, rows), depth))
    out = np.empty((rows, columns))
    for start in range(0, rows, step):
        stop = min(start + step, rows)
        np.copyto(block[: stop - start], left[start:stop])
        np.matmul(block[: stop - start], right, out=out[start:stop])
    return out


def _coefficients(in_size: int, out_size: int) -> np.ndarray:
    """(out_size, in_size) fixed-point weights: Pillow's taps for each output pixel, dense.

    They take out_size × in_size × 8 bytes: 128 kB for 512 → 32, 16.8 MB for a 65,535 px
    side (the longest the fingerprint path lets through). Shared and cached, so read-only:
    building one took 0.1–0.3 ms, four times per picture, as long as both hashes' products.
    """
    key = (in_size, out_size)
    with _cache_lock:
        if (dense := _cache.get(key)) is not None:
            _cache.move_to_end(key)
            return dense
    dense = _dense_coefficients(in_size, out_size)
    dense.flags.writeable = False
    if dense.nbytes <= _CACHE_BYTES // 8:
        with _cache_lock:
            _cache[key] = dense
            while sum(cached.nbytes for cached in _cache.values()) > _CACHE_BYTES:
                _cache.popitem(last=False)  # the least recently used
    return dense


_cache: OrderedDict[tuple[int, int], np.ndarray] = OrderedDict()
_cache_lock = threading.Lock()  # the site fingerprints on several threads


def _dense_coefficients(in_size: int, out_size: int) -> np.ndarray:
    scale = in_size / out_size
    filter_scale = max(scale, 1.0)
    support = _SUPPORT * filter_scale
    taps = math.ceil(support) * 2 + 1
    centres = (np.arange(out_size) + 0.5) * scale
    first = np.maximum((centres - support + 0.5).astype(np.int64), 0)  # C casts truncate
    count = np.minimum((centres + support + 0.5).astype(np.int64), in_size) - first
    positions = first[:, None] + np.arange(taps)
    used = np.arange(taps) < count[:, None]
    weights = _lanczos(((positions - centres[:, None]) + 0.5) * (1.0 / filter_scale))
    weights[~used] = 0.0
    totals = np.cumsum(weights, axis=1)[:, -1:]  # C adds the taps in order, so must we
    np.divide(weights, totals, out=weights, where=totals != 0.0)
    scaled = weights * (1 << _PRECISION_BITS)
    fixed = np.where(scaled < 0, np.trunc(scaled - 0.5), np.trunc(scaled + 0.5))
    dense = np.zeros((out_size, in_size))
    out_index = np.broadcast_to(np.arange(out_size)[:, None], used.shape)
    dense[out_index[used], positions[used]] = fixed[used]
    return dense


def _lanczos(x: np.ndarray) -> np.ndarray:
    """Pillow's ``lanczos_filter``: sinc(x)·sinc(x/3) on [-3, 3), zero elsewhere."""
    return np.where((x >= -_SUPPORT) & (x < _SUPPORT), _sinc(x) * _sinc(x / 3), 0.0)


def _sinc(x: np.ndarray) -> np.ndarray:
    scaled = x * math.pi
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(x == 0.0, 1.0, np.sin(scaled) / scaled)
