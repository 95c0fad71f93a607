"""What a multi-index-hashing search has to read, computed from the hashes themselves.

A query's cost is, to a good approximation, a fixed part plus one b-tree descent per probed
chunk value plus one index row per candidate read. ``bench search`` fits those three costs to
the measured times, then asks how fast *any* radius split could be on the same server: when
even the best split is slower than a target, the target is out of reach of this index there,
whatever the split heuristic does.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from functools import cache

import numpy as np
from scipy.optimize import least_squares

from lookalike.kinds import chunk_layout, chunk_shifts

# images.dhash_chunk0..2: dHash's multi-index layout, the top 21 bits, the next 21, the low 22.
CHUNK_BITS = chunk_layout(64)
_SHIFTS = chunk_shifts(64)
MAX_CHUNK_RADIUS = 4  # hash_flip_masks holds masks of up to 4 bits


@dataclass(frozen=True, slots=True)
class Work:
    """Chunk values probed and index rows read by one query with one radius split."""

    probes: int
    rows: int

    def __add__(self, other: Work) -> Work:
        return Work(self.probes + other.probes, self.rows + other.rows)


@dataclass(frozen=True, slots=True)
class CostFit:
    """Least-squares fit of query time (ms) = fixed + per_probe · probes + per_row · rows."""

    fixed_ms: float
    per_probe_ms: float
    per_row_ms: float

    @classmethod
    def of(cls, work: list[Work], times_ms: list[float]) -> CostFit:
        """Fit non-negative costs to relative errors (a 0.7 ms query weighs as much as a 30 ms
        one), with a robust loss so a few queries slowed by other work do not drag the fit."""
        design = np.array([[1.0, w.probes, w.rows] for w in work])
        measured = np.array(times_ms)
        fit = least_squares(
            lambda costs: (design @ costs - measured) / measured,
            x0=np.array([0.5, 0.004, 0.0002]),
            bounds=(0, np.inf),
            loss="soft_l1",
            f_scale=0.1,
        )
        fixed, per_probe, per_row = fit.x
        return cls(float(fixed), float(per_probe), float(per_row))

    def ms(self, work: Work) -> float:
        return self.fixed_ms + self.per_probe_ms * work.probes + self.per_row_ms * work.rows


class ChunkCounts:
    """Rows per chunk value for each chunk, so any probe set's rows are one sum away."""

    def __init__(self, hashes: np.ndarray) -> None:
        unsigned = hashes.view(np.uint64)
        self._counts = []
        for bits, shift in zip(CHUNK_BITS, _SHIFTS, strict=True):
            values = (unsigned >> np.uint64(shift)) & np.uint64((1 << bits) - 1)
            self._counts.append(np.bincount(values.astype(np.int64), minlength=1 << bits))

    def work(self, query: int, radii: tuple[int, ...]) -> Work:
        """What probing each chunk within its radius (-1: not probed) reads for ``query``."""
        return sum((self._chunk_work(query, c, k) for c, k in enumerate(radii)), Work(0, 0))

    def cheapest(self, query: int, max_distance: int, fit: CostFit) -> Work:
        """The work of the fastest exact split under ``fit``: the floor for this index."""
        per_chunk = [
            [self._chunk_work(query, chunk, k) for k in range(-1, MAX_CHUNK_RADIUS + 1)]
            for chunk in range(len(CHUNK_BITS))
        ]
        splits = (
            radii
            for radii in itertools.product(range(-1, MAX_CHUNK_RADIUS + 1), repeat=len(CHUNK_BITS))
            if sum(k + 1 for k in radii) >= max_distance + 1  # the pigeonhole condition
        )
        totals = (
            sum((per_chunk[c][k + 1] for c, k in enumerate(radii)), Work(0, 0)) for radii in splits
        )
        return min(totals, key=fit.ms)

    def _chunk_work(self, query: int, chunk: int, radius: int) -> Work:
        masks = _masks(CHUNK_BITS[chunk], radius)
        return Work(len(masks), int(self._counts[chunk][_chunk_of(query, chunk) ^ masks].sum()))


def _chunk_of(query: int, chunk: int) -> int:
    return ((query & 0xFFFF_FFFF_FFFF_FFFF) >> _SHIFTS[chunk]) & ((1 << CHUNK_BITS[chunk]) - 1)


@cache
def _masks(bits: int, radius: int) -> np.ndarray:
    """Every XOR mask of at most ``radius`` set bits within ``bits`` (none for radius -1)."""
    masks = [
        sum(1 << bit for bit in chosen)
        for weight in range(radius + 1)
        for chosen in itertools.combinations(range(bits), weight)
    ]
    return np.array(masks, dtype=np.int64)
