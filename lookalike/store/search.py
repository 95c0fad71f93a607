"""Finding near matches: the images whose hash of one kind is within a radius of a query's.

Both searches go through the ``similar_hashes`` SQL function, the one psql users call, so the
program and the database never disagree about what matches.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol

import psycopg
from psycopg import sql

from lookalike.features.relation import Relation
from lookalike.hashes import to_bigint
from lookalike.kinds import HashKind

DEFAULT_MAX_DISTANCE = 10
DEFAULT_LIMIT = 20
DEFAULT_SIGHTINGS_PER_MATCH = 50

# How search_page orders matches; ties always fall back to the best match first. Constants only:
# the user picks a key, never SQL text.
SORT_ORDERS = {
    "best": "rank",
    "pages": "pages DESC, distance, image_id",
    "newest": "first_seen DESC, distance, image_id",
    "oldest": "first_seen, distance, image_id",
    "biggest": "pixels DESC, distance, image_id",
}


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


@dataclass(frozen=True, slots=True)
class Found:
    """An image a search found, before its details are read: best first in a list."""

    image_id: int
    distance: int  # bits from the query (from its nearest view, for an image query)
    relation: Relation | None  # None for a search by hash alone


class HasSightings(Protocol):
    image_id: int
    sightings: list[PageSighting]


@dataclass(slots=True)
class Match:
    image_id: int
    distance: int
    sha256: str
    width: int
    height: int
    format: str
    sightings: list[PageSighting] = field(default_factory=list)
    relation: Relation | None = None  # how it differs from the query, for an image query

    def to_json(self) -> dict[str, object]:
        return {
            "image_id": self.image_id,
            "distance": self.distance,
            "sha256": self.sha256,
            "width": self.width,
            "height": self.height,
            "format": self.format,
            "relation": self.relation.to_json() if self.relation else None,
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


def search(conn: psycopg.Connection, found: Sequence[Found], *, limit: int) -> list[Match]:
    """The first ``limit`` of the ``found`` images (best first), with their sightings."""
    kept = list(found[:limit])
    rows = conn.execute(
        "SELECT id, sha256, width, height, format FROM images WHERE id = ANY(%s)",
        ([match.image_id for match in kept],),
    ).fetchall()
    facts = {row[0]: row[1:] for row in rows}
    matches = [
        Match(match.image_id, match.distance, *facts[match.image_id], relation=match.relation)
        for match in kept
        if match.image_id in facts
    ]
    attach_sightings(conn, matches)
    return matches


def found_by_hash(
    conn: psycopg.Connection, kind: HashKind, query: int, *, max_distance: int
) -> list[Found]:
    """Images within ``max_distance`` bits of ``query`` (the plain hash search), best first."""
    rows = conn.execute(
        """
        SELECT image_id, distance FROM similar_hashes(%s, %s::bigint, %s)
        ORDER BY distance, image_id
        """,
        (kind.name, to_bigint(query), max_distance),
    ).fetchall()
    return [Found(image_id, distance, None) for image_id, distance in rows]


def search_page(
    conn: psycopg.Connection,
    found: Sequence[Found],
    *,
    sort: str,
    domain: str | None,
    limit: int,
    offset: int,
    sightings_per_match: int,
    with_domains: bool,
) -> SearchPage:
    """The ``found`` images (best first), ordered by ``sort`` (a key of SORT_ORDERS).

    ``domain`` keeps only matches seen on that domain, and only those sightings.
    ``with_domains`` also lists the domains of all matches, for a filter menu.
    """
    if sort not in SORT_ORDERS:
        raise ValueError(f"unknown sort {sort!r}: expected one of {', '.join(SORT_ORDERS)}")
    order = sql.SQL(SORT_ORDERS[sort])  # type: ignore[arg-type]
    ids = [match.image_id for match in found]
    relations = {match.image_id: match.relation for match in found}
    rows = conn.execute(
        sql.SQL(_RANKED_PAGE_SQL).format(order=order),
        {
            "ids": ids,
            "distances": [match.distance for match in found],
            "domain": domain,
            "limit": limit,
            "offset": offset,
        },
    ).fetchall()
    total = rows[0][-1] if rows else 0
    matches = [
        RankedMatch(
            *row[:6],
            relation=relations[row[0]],
            pages=row[6],
            first_seen=row[7],
            has_thumbnail=row[8],
        )
        for row in rows
        if row[0] is not None
    ]
    attach_sightings(conn, matches, domain=domain, per_image=sightings_per_match)
    domains = _domains_of(conn, ids) if with_domains else []
    return SearchPage(matches, total, domains)


# One page of ranked matches, plus the count of all of them (a row of NULLs when the page is
# past the end, so the total still comes back). The found (image_id, distance) pairs come in as
# arrays, best first: their position is the "best" order.
_RANKED_PAGE_SQL = """
WITH ranked AS (
    SELECT f.image_id, f.distance, f.rank, i.sha256, i.width, i.height, i.format,
           count(DISTINCT s.page_id) AS pages,
           coalesce(min(s.first_seen), i.first_seen) AS first_seen,
           EXISTS (SELECT 1 FROM thumbnails t WHERE t.image_id = f.image_id) AS has_thumbnail,
           i.width::bigint * i.height AS pixels
    FROM unnest(%(ids)s::bigint[], %(distances)s::int[]) WITH ORDINALITY
        AS f (image_id, distance, rank)
    JOIN images i ON i.id = f.image_id
    LEFT JOIN sightings s ON s.image_id = f.image_id
        AND (%(domain)s::text IS NULL
             OR s.page_id IN (SELECT p.id FROM pages p WHERE p.domain = %(domain)s))
    GROUP BY f.image_id, f.distance, f.rank, i.id
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


def attach_sightings(
    conn: psycopg.Connection,
    images: Sequence[HasSightings],
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
