"""Reading stored images back: one image with its hashes, its thumbnail, the fingerprints of
known contents (to record new sightings of them without fetching again), and totals."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime

import psycopg
from psycopg import sql

from lookalike.fingerprint import Fingerprint
from lookalike.hashes import from_bigint
from lookalike.store import kind_tables
from lookalike.store.search import PageSighting, attach_sightings


@dataclass(slots=True)
class StoredImage:
    """One stored image with everything known about it."""

    image_id: int
    sha256: str
    hashes: dict[str, int]  # unsigned, like Fingerprint.hashes
    width: int
    height: int
    format: str
    first_seen: datetime
    has_thumbnail: bool
    sightings: list[PageSighting] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class Stats:
    images: int
    pages: int
    sightings: int
    database_bytes: int


def stored_image(conn: psycopg.Connection, image_id: int, *, sightings: int) -> StoredImage | None:
    """One stored image and up to ``sightings`` of its sightings; None if there is none."""
    row = conn.execute(
        """
        SELECT i.id, i.sha256, i.width, i.height, i.format, i.first_seen,
               EXISTS (SELECT 1 FROM thumbnails t WHERE t.image_id = i.id)
        FROM images i WHERE i.id = %s
        """,
        (image_id,),
    ).fetchone()
    if row is None:
        return None
    found_id, sha256, *facts = row
    found = StoredImage(found_id, sha256, hashes_of(conn, [found_id])[found_id], *facts)
    attach_sightings(conn, [found], per_image=sightings)
    return found


def hashes_of(conn: psycopg.Connection, image_ids: list[int]) -> dict[int, dict[str, int]]:
    """Every kind's hash of each image (unsigned), by image id; one query per table."""
    hashes: dict[int, dict[str, int]] = defaultdict(dict)
    for table, places in kind_tables.by_table(kind_tables.storages(conn), "image_table"):
        key = places[0].image_key
        rows = conn.execute(
            sql.SQL("SELECT {key}, {columns} FROM {table} WHERE {key} = ANY(%s)").format(
                key=sql.Identifier(key),
                columns=kind_tables.columns(places),
                table=sql.Identifier(table),
            ),
            (image_ids,),
        ).fetchall()
        for image_id, *values in rows:
            for place, value in zip(places, values, strict=True):
                hashes[image_id][place.name] = from_bigint(value)
    return hashes


def fingerprints_by_id(conn: psycopg.Connection, image_ids: list[int]) -> dict[int, Fingerprint]:
    """The fingerprints of stored images (without thumbnails), by image id."""
    hashes = hashes_of(conn, image_ids)
    rows = conn.execute(
        "SELECT id, sha256, width, height, format FROM images WHERE id = ANY(%s)", (image_ids,)
    ).fetchall()
    return {
        image_id: Fingerprint(sha256, hashes[image_id], width, height, fmt)
        for image_id, sha256, width, height, fmt in rows
    }


def thumbnail(conn: psycopg.Connection, image_id: int) -> bytes | None:
    row = conn.execute("SELECT webp FROM thumbnails WHERE image_id = %s", (image_id,)).fetchone()
    return row[0] if row else None


def stats(conn: psycopg.Connection) -> Stats:
    row = conn.execute(
        """
        SELECT (SELECT count(*) FROM images), (SELECT count(*) FROM pages),
               (SELECT count(*) FROM sightings), pg_database_size(current_database())
        """
    ).fetchone()
    assert row is not None
    return Stats(*row)
