"""Many images with stored features, cheaply: for tests of building the feature index.

The features are all-zero, so PostgreSQL compresses each row to ~40 bytes in the row, and no
real query's features share their keys: they make the index long to build without being found.
"""

from __future__ import annotations

import numpy as np

from lookalike.features.orb import DESCRIPTOR_BYTES, STORED_FEATURES, LocalFeatures
from lookalike.store.db import connect

ZERO_FEATURES = LocalFeatures(
    np.zeros((STORED_FEATURES, 2), np.float32),
    np.zeros((STORED_FEATURES, DESCRIPTOR_BYTES), np.uint8),
    512,
    384,
).to_bytes()


def add_described_images(database_url: str, count: int) -> None:
    """``count`` more images (64×48 PNGs by their row), each with the all-zero features."""
    with connect(database_url) as conn:
        (first,) = conn.execute("SELECT coalesce(max(id), 0) + 1 FROM images").fetchone()
        conn.execute(
            """INSERT INTO images (sha256, dhash, phash, width, height, format)
               SELECT encode(sha256(n::text::bytea), 'hex'), n * 7919, n * 104729, 64, 48, 'PNG'
               FROM generate_series(1::bigint, %s) AS n""",
            (count,),
        )
        conn.execute(
            "INSERT INTO image_features (image_id, features) SELECT id, %s FROM images"
            " WHERE id >= %s",
            (ZERO_FEATURES, first),
        )
        (largest,) = conn.execute(
            "SELECT max(pg_column_size(features)) FROM image_features WHERE features = %s",
            (ZERO_FEATURES,),
        ).fetchone()
    assert largest < 100  # compressed in the row: the filler costs the test little disk
