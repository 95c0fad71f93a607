"""A hash kind that exists only in the tests: what adding a kind to Lookalike takes.

``average48`` is one small definition (:data:`KIND`) and one migration
(``migrations/0900_average48.py``). Nothing in the store, the site, the crawler or the banks
names it, yet the tests index, search and bank-check by it.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from lookalike import lanczos
from lookalike.kinds import HashKind

MIGRATIONS = Path(__file__).parent / "migrations"


def average_hash(pixels: np.ndarray) -> int:
    """Whether each cell of an 8×6 shrink is brighter than the mean: 48 bits, so the
    multi-index layout (16, 16, 16) differs from dHash's (21, 21, 22)."""
    small = lanczos.resize(pixels, 8, 6).astype(np.float64)
    return int.from_bytes(np.packbits((small > small.mean()).ravel()).tobytes(), "big")


KIND = HashKind(name="average48", title="aHash-48", bits=48, compute=average_hash, default_radius=6)
