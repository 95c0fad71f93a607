"""Recording image sightings and finding near matches in PostgreSQL.

Writes are batched idempotent upserts: recording the same sighting again only moves its
``last_seen``. Search goes through the ``similar_images`` SQL function, the same one psql
users call, so the program and the database never disagree about what matches.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Hashable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import TypeVar
from urllib.parse import urlsplit

import psycopg
from psycopg import sql
from psycopg.rows import class_row
from psycopg_pool import ConnectionPool

from lookalike.fingerprint import Fingerprint
from lookalike.hashes import from_bigint, to_bigint

DEFAULT_MAX_DISTANCE = 10
DEFAULT_LIMIT = 20
_DEADLOCK_RETRIES = 5
_T = TypeVar("_T")
DEFAULT_SIGHTINGS_PER_MATCH = 50

# How search_page orders matches; ties always fall back to the best match first. Constants only:
# the user picks a key, never SQL text.
SORT_ORDERS = {
    "best": "distance, image_id",
    "pages": "pages DESC, distance, image_id",
    "newest": "first_seen DESC, distance, image_id",
    "oldest": "first_seen, distance, image_id",
    "biggest": "pixels DESC, distance, image_id",
}


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


@dataclass(frozen=True, slots=True)
class PageSighting:
    image_url: str
    page_url: str
    page_title: str | None
    domain: str | None
    alt_text: str | None
    first_seen: datetime
    last_seen: datetime

    def to_json(self) -> dict[str, object]:
        """The JSON form shared by `lookalike search --json` and the web API."""
        return {
            "image_url": self.image_url,
            "page_url": self.page_url,
            "page_title": self.page_title,
            "domain": self.domain,
            "alt_text": self.alt_text,
            "first_seen": self.first_seen.isoformat(),
            "last_seen": self.last_seen.isoformat(),
        }


@dataclass(slots=True)
class Match:
    image_id: int
    distance: int
    sha256: str
    width: int
    height: int
    format: str
    sightings: list[PageSighting] = field(default_factory=list)

    def to_json(self) -> dict[str, object]:
        return {
            "image_id": self.image_id,
            "distance": self.distance,
            "sha256": self.sha256,
            "width": self.width,
            "height": self.height,
            "format": self.format,
            "sightings": [sighting.to_json() for sighting in self.sightings],
        }


@dataclass(slots=True)
class RankedMatch(Match):
    """A match as a results page shows it: how many pages, since when, thumbnail or not."""

    pages: int = 0  # distinct pages it was seen on (on the filtered domain, if any)
    first_seen: datetime | None = None  # its earliest sighting
    has_thumbnail: bool = False


@dataclass(slots=True)
class SearchPage:
    """One page of sorted, filtered matches and how many there are in all."""

    matches: list[RankedMatch]
    total: int
    domains: list[tuple[str, int]]  # (domain, matching images seen there), most first


@dataclass(slots=True)
class StoredImage:
    """One stored image with everything known about it."""

    image_id: int
    sha256: str
    dhash: int  # unsigned, like Fingerprint.dhash
    phash: int
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


def page_domain(url: str) -> str | None:
    """Host name of a web page URL; None for ``file://`` folders."""
    parts = urlsplit(url)
    return parts.hostname if parts.scheme in ("http", "https") else None


class Store:
    """The PostgreSQL fingerprint store, over a psycopg connection pool."""

    def __init__(self, pool: ConnectionPool) -> None:
        self.pool = pool

    def close(self) -> None:
        self.pool.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def record(self, sightings: Sequence[Sighting]) -> RecordResult:
        """Upsert images, pages and sightings of one batch in one transaction."""
        return self.in_transaction(lambda conn: record_sightings(conn, sightings))

    def in_transaction(self, work: Callable[[psycopg.Connection], _T]) -> _T:
        """``work`` in one transaction on a pooled connection, replayed after a deadlock.

        Concurrent writers upserting overlapping rows can deadlock; every batch is sorted by
        key, so this is rare, and ``work`` must be safe to replay whole.
        """
        for attempt in range(_DEADLOCK_RETRIES):
            try:
                with self.pool.connection() as conn, conn.transaction():
                    return work(conn)
            except psycopg.errors.DeadlockDetected:
                time.sleep(0.05 * (attempt + 1))
        with self.pool.connection() as conn, conn.transaction():
            return work(conn)

    def search(
        self,
        dhash: int,
        *,
        max_distance: int = DEFAULT_MAX_DISTANCE,
        limit: int = DEFAULT_LIMIT,
    ) -> list[Match]:
        """Images within ``max_distance`` bits of ``dhash``, best first, with their sightings."""
        with self.pool.connection() as conn:
            matches = (
                conn.cursor(row_factory=class_row(Match))
                .execute(
                    """
                    SELECT m.image_id, m.distance, i.sha256, i.width, i.height, i.format
                    FROM similar_images(%s::bigint, %s) AS m
                    JOIN images i ON i.id = m.image_id
                    ORDER BY m.distance, m.image_id
                    LIMIT %s
                    """,
                    (to_bigint(dhash), max_distance, limit),
                )
                .fetchall()
            )
            _attach_sightings(conn, matches)
        return matches

    def search_page(
        self,
        dhash: int,
        *,
        max_distance: int = DEFAULT_MAX_DISTANCE,
        sort: str = "best",
        domain: str | None = None,
        limit: int = DEFAULT_LIMIT,
        offset: int = 0,
        sightings_per_match: int = DEFAULT_SIGHTINGS_PER_MATCH,
        with_domains: bool = False,
    ) -> SearchPage:
        """Matches within ``max_distance``, ordered by ``sort`` (a key of SORT_ORDERS).

        ``domain`` keeps only matches seen on that domain, and only those sightings.
        ``with_domains`` also lists the domains of all matches, for a filter menu.
        """
        if sort not in SORT_ORDERS:
            raise ValueError(f"unknown sort {sort!r}: expected one of {', '.join(SORT_ORDERS)}")
        order = sql.SQL(SORT_ORDERS[sort])  # type: ignore[arg-type]
        with self.pool.connection() as conn:
            found = conn.execute(
                "SELECT image_id, distance FROM similar_images(%s::bigint, %s)",
                (to_bigint(dhash), max_distance),
            ).fetchall()
            ids = [image_id for image_id, _ in found]
            rows = conn.execute(
                sql.SQL(_RANKED_PAGE_SQL).format(order=order),
                {
                    "ids": ids,
                    "distances": [distance for _, distance in found],
                    "domain": domain,
                    "limit": limit,
                    "offset": offset,
                },
            ).fetchall()
            total = rows[0][-1] if rows else 0
            matches = [
                RankedMatch(*row[:6], pages=row[6], first_seen=row[7], has_thumbnail=row[8])
                for row in rows
                if row[0] is not None
            ]
            _attach_sightings(conn, matches, domain=domain, per_image=sightings_per_match)
            domains = _domains_of(conn, ids) if with_domains else []
        return SearchPage(matches, total, domains)

    def image(
        self, image_id: int, *, sightings: int = DEFAULT_SIGHTINGS_PER_MATCH
    ) -> StoredImage | None:
        """One stored image and up to ``sightings`` of its sightings; None if there is none."""
        with self.pool.connection() as conn:
            row = conn.execute(
                """
                SELECT i.id, i.sha256, i.dhash, i.phash, i.width, i.height, i.format,
                       i.first_seen,
                       EXISTS (SELECT 1 FROM thumbnails t WHERE t.image_id = i.id)
                FROM images i WHERE i.id = %s
                """,
                (image_id,),
            ).fetchone()
            if row is None:
                return None
            found = StoredImage(*row)
            found.dhash, found.phash = from_bigint(found.dhash), from_bigint(found.phash)
            _attach_sightings(conn, [found], per_image=sightings)
        return found

    def thumbnail(self, image_id: int) -> bytes | None:
        """The stored WebP thumbnail of an image, if one was made."""
        with self.pool.connection() as conn:
            row = conn.execute(
                "SELECT webp FROM thumbnails WHERE image_id = %s", (image_id,)
            ).fetchone()
        return row[0] if row else None

    def stats(self) -> Stats:
        with self.pool.connection() as conn:
            row = conn.execute(
                """
                SELECT (SELECT count(*) FROM images), (SELECT count(*) FROM pages),
                       (SELECT count(*) FROM sightings), pg_database_size(current_database())
                """
            ).fetchone()
        assert row is not None
        return Stats(*row)


# One page of ranked matches, plus the count of all of them (a row of NULLs when the page is
# past the end, so the total still comes back). The found (image_id, distance) pairs come in as
# arrays, so similar_images() runs once per search.
_RANKED_PAGE_SQL = """
WITH ranked AS (
    SELECT f.image_id, f.distance, i.sha256, i.width, i.height, i.format,
           count(DISTINCT s.page_id) AS pages,
           coalesce(min(s.first_seen), i.first_seen) AS first_seen,
           EXISTS (SELECT 1 FROM thumbnails t WHERE t.image_id = f.image_id) AS has_thumbnail,
           i.width::bigint * i.height AS pixels
    FROM unnest(%(ids)s::bigint[], %(distances)s::int[]) AS f (image_id, distance)
    JOIN images i ON i.id = f.image_id
    LEFT JOIN sightings s ON s.image_id = f.image_id
        AND (%(domain)s::text IS NULL
             OR s.page_id IN (SELECT p.id FROM pages p WHERE p.domain = %(domain)s))
    GROUP BY f.image_id, f.distance, i.id
    HAVING %(domain)s::text IS NULL OR count(s.id) > 0
)
SELECT r.image_id, r.distance, r.sha256, r.width, r.height, r.format, r.pages, r.first_seen,
       r.has_thumbnail, t.total
FROM (SELECT count(*) AS total FROM ranked) AS t
LEFT JOIN LATERAL (
    SELECT * FROM ranked ORDER BY {order} LIMIT %(limit)s OFFSET %(offset)s
) AS r ON true
ORDER BY {order}
"""


def _attach_sightings(
    conn: psycopg.Connection,
    images: Sequence[Match | StoredImage],
    *,
    domain: str | None = None,
    per_image: int | None = None,
) -> None:
    """Fill each image's ``sightings``, earliest first (at most ``per_image`` each)."""
    by_id = {image.image_id: image for image in images}
    if not by_id:
        return
    rows = conn.execute(
        """
        SELECT image_id, image_url, page_url, page_title, domain, alt_text, first_seen, last_seen
        FROM (
            SELECT s.image_id, s.image_url, p.url AS page_url, p.title AS page_title, p.domain,
                   s.alt_text, s.first_seen, s.last_seen, s.id,
                   row_number() OVER (PARTITION BY s.image_id ORDER BY s.first_seen, s.id) AS n
            FROM sightings s JOIN pages p ON p.id = s.page_id
            WHERE s.image_id = ANY(%(ids)s)
              AND (%(domain)s::text IS NULL OR p.domain = %(domain)s)
        ) AS numbered
        WHERE %(per_image)s::int IS NULL OR n <= %(per_image)s
        ORDER BY image_id, first_seen, id
        """,
        {"ids": list(by_id), "domain": domain, "per_image": per_image},
    ).fetchall()
    for image_id, *sighting in rows:
        by_id[image_id].sightings.append(PageSighting(*sighting))


def _domains_of(conn: psycopg.Connection, image_ids: list[int]) -> list[tuple[str, int]]:
    """The domains these images were seen on, with how many of them each, most first."""
    rows = conn.execute(
        """
        SELECT p.domain, count(DISTINCT s.image_id)
        FROM sightings s JOIN pages p ON p.id = s.page_id
        WHERE s.image_id = ANY(%s) AND p.domain IS NOT NULL
        GROUP BY p.domain
        ORDER BY 2 DESC, 1
        LIMIT 200
        """,
        (image_ids,),
    ).fetchall()
    return [(domain, count) for domain, count in rows]


def record_sightings(conn: psycopg.Connection, sightings: Sequence[Sighting]) -> RecordResult:
    """Upsert images, pages and sightings on ``conn``, inside the caller's transaction."""
    if not sightings:
        return RecordResult(0, 0, 0)
    images = _unique_by(sightings, lambda s: s.fingerprint.sha256)
    inserted = conn.execute(
        """
        INSERT INTO images (sha256, dhash, phash, width, height, format)
        SELECT * FROM unnest(%s::text[], %s::bigint[], %s::bigint[], %s::int[], %s::int[],
                             %s::text[])
        ON CONFLICT (sha256) DO NOTHING
        RETURNING sha256
        """,
        _columns(
            (
                s.fingerprint.sha256,
                to_bigint(s.fingerprint.dhash),
                to_bigint(s.fingerprint.phash),
                s.fingerprint.width,
                s.fingerprint.height,
                s.fingerprint.format,
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

    with_thumbnails = [s for s in images if s.fingerprint.thumbnail]
    if with_thumbnails:
        conn.execute(
            """
            INSERT INTO thumbnails (image_id, webp)
            SELECT * FROM unnest(%b::bigint[], %b::bytea[])
            ON CONFLICT (image_id) DO NOTHING
            """,
            _columns(
                (image_ids[s.fingerprint.sha256], s.fingerprint.thumbnail) for s in with_thumbnails
            ),
        )

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
