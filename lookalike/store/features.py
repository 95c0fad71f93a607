"""Local features in PostgreSQL, and the in-memory index derived from them.

The ``image_features`` and ``bank_entry_features`` tables are the record; a
:class:`~lookalike.features.index.FeatureIndex` is rebuilt from one of them by reading what
it lacks, so a process that starts empty catches up, and a running one sees what crawlers
wrote since its last look.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass

import numpy as np
import psycopg
from psycopg import sql

from lookalike.features.index import FeatureIndex
from lookalike.features.orb import FeaturesUnreadable, LocalFeatures

# Ids are handed out before their transaction commits, so a batch can commit after rows with
# higher ids were read: every refresh looks again at this many ids below the highest known.
_LATE_COMMIT_WINDOW = 100_000
_BATCH = 5_000  # rows read and indexed at a time while catching up


@dataclass(frozen=True, slots=True)
class FeatureTable:
    table: str
    key: str  # the column holding the image or bank entry id


IMAGE_FEATURES = FeatureTable("image_features", "image_id")
BANK_ENTRY_FEATURES = FeatureTable("bank_entry_features", "entry_id")


def catch_up(
    connection: Callable[[], AbstractContextManager[psycopg.Connection]],
    source: FeatureTable,
    index: FeatureIndex,
) -> int:
    """Index every row of ``source`` the index lacks; the number added.

    A connection is taken from ``connection`` for each read and given back while the batch
    is indexed, so a build of a minute does not hold one of a site's few connections.
    """
    highest = index.highest_id
    floor = -1 if highest is None else highest - _LATE_COMMIT_WINDOW
    with connection() as conn:
        ids = [
            key
            for (key,) in conn.execute(
                sql.SQL("SELECT {key} FROM {table} WHERE {key} > %s ORDER BY {key}").format(
                    key=sql.Identifier(source.key), table=sql.Identifier(source.table)
                ),
                (floor,),
            )
            if key not in index
        ]

    def batches() -> Iterator[tuple[list[int], list[np.ndarray]]]:
        for start in range(0, len(ids), _BATCH):
            with connection() as conn:
                batch = read(conn, source, ids[start : start + _BATCH])
            yield list(batch), [features.descriptors for features in batch.values()]

    index.add_many(batches())
    return len(ids)


def read(
    conn: psycopg.Connection, source: FeatureTable, ids: Iterable[int]
) -> dict[int, LocalFeatures]:
    """The stored features of these ids (those that have readable ones)."""
    rows = conn.execute(
        sql.SQL("SELECT {key}, features FROM {table} WHERE {key} = ANY(%s)").format(
            key=sql.Identifier(source.key), table=sql.Identifier(source.table)
        ),
        (list(ids),),
        binary=True,
    ).fetchall()
    found = {}
    for key, data in rows:
        try:
            found[key] = LocalFeatures.from_bytes(bytes(data))
        except FeaturesUnreadable:  # written by a later format: found by its hashes only
            continue
    return found
