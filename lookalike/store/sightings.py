"""The write path: images, pages and sightings recorded in batches.

Writes are idempotent upserts: recording the same sighting again only moves its
``last_seen``. Each kind's hash goes where ``hash_kinds`` says (:mod:`lookalike.store.kind_tables`).
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from urllib.parse import urlsplit

import psycopg
from psycopg import sql

from lookalike.fingerprint import Fingerprint
from lookalike.hashes import to_bigint
from lookalike.store import kind_tables, picture_frames
from lookalike.store.kind_tables import KindStorage


@dataclass(frozen=True, slots=True)
class Sighting:
    """One image seen at one URL on one page (a web page, or a folder for local files)."""

    fingerprint: Fingerprint
    image_url: str
    page_url: str
    page_title: str | None = None
    alt_text: str | None = None
    seen_at: datetime | None = None  # None: the database's now()


@dataclass(frozen=True, slots=True)
class RecordResult:
    new_images: int
    known_images: int
    new_sightings: int


def page_domain(url: str) -> str | None:
    """Host name of a web page URL; None for ``file://`` folders."""
    parts = urlsplit(url)
    return parts.hostname if parts.scheme in ("http", "https") else None


def record_sightings(conn: psycopg.Connection, sightings: Sequence[Sighting]) -> RecordResult:
    """Upsert images, pages and sightings on ``conn``, inside the caller's transaction."""
    if not sightings:
        return RecordResult(0, 0, 0)
    images = _unique_by(sightings, lambda s: s.fingerprint.sha256)
    places = kind_tables.storages(conn)
    in_row = [place for place in places if place.image_table == "images"]
    inserted = conn.execute(
        sql.SQL("""
        INSERT INTO images (sha256, width, height, format, {hash_columns})
        SELECT * FROM unnest(%s::text[], %s::int[], %s::int[], %s::text[], {hash_arrays})
        ON CONFLICT (sha256) DO NOTHING
        RETURNING sha256
        """).format(
            hash_columns=kind_tables.columns(in_row),
            hash_arrays=sql.SQL(", ").join(sql.SQL("%s::bigint[]") for _ in in_row),
        ),
        _columns(
            (
                s.fingerprint.sha256,
                s.fingerprint.width,
                s.fingerprint.height,
                s.fingerprint.format,
                *(to_bigint(s.fingerprint.hashes[place.name]) for place in in_row),
            )
            for s in images
        ),
    ).fetchall()
    image_ids = dict(
        conn.execute(
            "SELECT sha256, id FROM images WHERE sha256 = ANY(%s)",
            ([s.fingerprint.sha256 for s in images],),
        ).fetchall()
    )
    for place in places:
        if place.image_table != "images":
            _record_own_table_hashes(conn, place, images, image_ids)
    picture_frames.store(
        conn,
        picture_frames.IMAGE_FRAMES,
        (
            (image_ids[s.fingerprint.sha256], s.fingerprint.picture_box)
            for s in images
            if s.fingerprint.picture_box is not None
        ),
    )

    # for known images too: one recorded before features were kept gets them
    features = [(image_ids[s.fingerprint.sha256], s.fingerprint.features) for s in images]
    _insert_blobs(conn, "image_features", "features", features)
    thumbnails = [(image_ids[s.fingerprint.sha256], s.fingerprint.thumbnail) for s in images]
    _insert_blobs(conn, "thumbnails", "webp", thumbnails)

    pages = _unique_by(reversed(sightings), lambda s: s.page_url)  # the latest title wins
    page_ids = dict(
        conn.execute(
            """
            INSERT INTO pages AS p (url, domain, title, first_seen, last_seen)
            SELECT u.url, u.domain, u.title, coalesce(u.seen, now()), coalesce(u.seen, now())
            FROM unnest(%s::text[], %s::text[], %s::text[], %s::timestamptz[])
                AS u (url, domain, title, seen)
            ON CONFLICT (url) DO UPDATE
            SET title = coalesce(excluded.title, p.title),
                last_seen = greatest(p.last_seen, excluded.last_seen)
            RETURNING url, id
            """,
            _columns((s.page_url, page_domain(s.page_url), s.page_title, s.seen_at) for s in pages),
        ).fetchall()
    )

    unique_sightings = _unique_by(
        reversed(sightings), lambda s: (s.fingerprint.sha256, s.page_url, s.image_url)
    )
    new_sightings = conn.execute(
        """
        INSERT INTO sightings AS s (image_id, page_id, image_url, alt_text, first_seen, last_seen)
        SELECT u.image_id, u.page_id, u.image_url, u.alt_text,
               coalesce(u.seen, now()), coalesce(u.seen, now())
        FROM unnest(%s::bigint[], %s::bigint[], %s::text[], %s::text[], %s::timestamptz[])
            AS u (image_id, page_id, image_url, alt_text, seen)
        ORDER BY 1, 2, 3
        ON CONFLICT (image_id, page_id, image_url) DO UPDATE
        SET last_seen = greatest(s.last_seen, excluded.last_seen),
            alt_text = coalesce(excluded.alt_text, s.alt_text)
        RETURNING (xmax = 0) AS inserted
        """,
        _columns(
            (
                image_ids[s.fingerprint.sha256],
                page_ids[s.page_url],
                s.image_url,
                s.alt_text,
                s.seen_at,
            )
            for s in unique_sightings
        ),
    ).fetchall()
    return RecordResult(
        new_images=len(inserted),
        known_images=len(images) - len(inserted),
        new_sightings=sum(1 for (was_inserted,) in new_sightings if was_inserted),
    )


def _insert_blobs(
    conn: psycopg.Connection, table: str, column: str, rows: list[tuple[int, bytes | None]]
) -> None:
    """Each image's bytes of ``table`` (thumbnail, features) that it has, unless already kept."""
    kept = [(image_id, blob) for image_id, blob in rows if blob]
    if kept:
        conn.execute(
            sql.SQL("""
            INSERT INTO {table} (image_id, {column})
            SELECT * FROM unnest(%b::bigint[], %b::bytea[])
            ON CONFLICT (image_id) DO NOTHING
            """).format(table=sql.Identifier(table), column=sql.Identifier(column)),
            _columns(kept),
        )


def _record_own_table_hashes(
    conn: psycopg.Connection,
    place: KindStorage,
    images: Sequence[Sighting],
    image_ids: dict[str, int],
) -> None:
    """A plug-in kind's hashes of every image in the batch. Images stored before the kind
    existed get theirs when they are seen again."""
    rows = sorted(
        (image_ids[s.fingerprint.sha256], to_bigint(s.fingerprint.hashes[place.name]))
        for s in images
        if place.name in s.fingerprint.hashes  # rebuilt from a row stored before the kind
    )
    if not rows:  # a kind that says nothing of these pictures (framed_dhash, none framed)
        return
    conn.execute(
        sql.SQL("""
        INSERT INTO {table} ({key}, {hash}) SELECT * FROM unnest(%s::bigint[], %s::bigint[])
        ON CONFLICT DO NOTHING
        """).format(
            table=sql.Identifier(place.image_table),
            key=sql.Identifier(place.image_key),
            hash=sql.Identifier(place.hash_column),
        ),
        _columns(rows),
    )


def _unique_by(items: Iterable[Sighting], key: Callable[[Sighting], Hashable]) -> list[Sighting]:
    """First item per key, sorted by key so concurrent batches lock rows in one order."""
    unique: dict[Hashable, Sighting] = {}
    for item in items:
        unique.setdefault(key(item), item)
    return [unique[k] for k in sorted(unique)]  # type: ignore[type-var]


def _columns(rows: Iterable[tuple[object, ...]]) -> list[list[object]]:
    """Row tuples → one list per column, for ``unnest``."""
    materialised = list(rows)
    if not materialised:
        return []
    return [list(column) for column in zip(*materialised, strict=True)]
