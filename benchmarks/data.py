"""Synthetic 64-bit hashes for the search benchmarks and tests, and a fast way to load them.

Kept apart from the benchmark commands so the tests that use these hashes need no SciPy.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np
import psycopg
from psycopg import sql

from lookalike.store.db import connect


def clustered_hashes(rows: int, seed: int = 1) -> np.ndarray:
    """``rows`` 64-bit hashes shaped like real ones: skewed bits and near-duplicate clusters.

    Each bit is set with its own probability in 0.1–0.9 (real dHash bits are far from fair:
    16-bit chunks collide ~20× more than uniform ones), and every "original" has a few copies
    a handful of bits away, like re-encoded and resized copies of one photo.
    """
    rng = np.random.default_rng(seed)
    bit_probability = rng.uniform(0.1, 0.9, size=64)
    originals = rows // 4
    bits = rng.random((originals, 64)) < bit_probability
    weights = (1 << np.arange(63, -1, -1, dtype=np.uint64)).astype(np.uint64)
    centres = (bits.astype(np.uint64) * weights).sum(axis=1, dtype=np.uint64)
    copies = rows - originals
    parents = centres[rng.integers(0, originals, size=copies)]
    flips = np.zeros(copies, dtype=np.uint64)
    for _ in range(4):  # up to 4 flipped bits per copy (some flips coincide or are skipped)
        flip = rng.random(copies) < 0.6
        positions = rng.integers(0, 64, size=copies).astype(np.uint64)
        flips ^= np.where(flip, np.uint64(1) << positions, np.uint64(0))
    hashes = np.concatenate([centres, parents ^ flips])
    rng.shuffle(hashes)
    return hashes.view(np.int64)


@contextmanager
def indexes_dropped(conn: psycopg.Connection, names: list[str]) -> Iterator[None]:
    """Drop these indexes for a bulk load, then build each again from its own definition."""
    definitions = [
        conn.execute("SELECT pg_get_indexdef(%s::regclass)", (name,)).fetchone()[0]
        for name in names
    ]
    for name in names:
        conn.execute(sql.SQL("DROP INDEX {}").format(sql.Identifier(name)))
    yield
    for definition in definitions:
        conn.execute(sql.SQL(definition))  # the catalog's own text


def load_hashes(url: str, hashes: np.ndarray) -> None:
    """COPY the hashes in with the chunk indexes dropped, then rebuild them once."""
    chunk_indexes = [f"images_dhash_chunk{chunk}" for chunk in range(3)]
    with (
        connect(url, autocommit=True) as conn,
        indexes_dropped(conn, chunk_indexes),
        conn.cursor().copy(
            "COPY images (sha256, dhash, phash, width, height, format) FROM STDIN"
        ) as copy,
    ):
        for start in range(0, len(hashes), 100_000):
            block = hashes[start : start + 100_000]
            copy.write(
                "".join(
                    f"{start + offset:064x}\t{value}\t{value}\t1024\t768\tJPEG\n"
                    for offset, value in enumerate(block.tolist())
                )
            )
    with connect(url, autocommit=True) as conn:
        conn.execute("VACUUM (ANALYZE) images")  # sets the visibility map: index-only scans


def uniform_hashes(rows: int, seed: int = 1) -> np.ndarray:
    """``rows`` independent, uniformly random 64-bit hashes: MIH's best case."""
    info = np.iinfo(np.int64)
    return np.random.default_rng(seed).integers(info.min, info.max, rows, dtype=np.int64)
