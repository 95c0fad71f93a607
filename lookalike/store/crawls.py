"""The ``crawls`` table: one row per crawl, its settings, counters and outcome.

The crawler writes it; ``lookalike stats`` and psql users read it. A crawl is identified by a
key made from its seeds and scope, so running the same command again finds the crawl that did
not finish (killed, or the database went away) and resumes it instead of starting over.
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime

import psycopg
from psycopg import sql
from psycopg.rows import class_row
from psycopg.types.json import Jsonb

from lookalike.wording import plural

_SELECT_SUMMARIES = sql.SQL(
    "SELECT id, seeds, started_at, finished_at, outcome, pages, images_seen, new_images, "
    "new_sightings, errors FROM crawls "
)


@dataclass(frozen=True, slots=True)
class CrawlSummary:
    id: int
    seeds: list[str]
    started_at: datetime
    finished_at: datetime | None
    outcome: str | None
    pages: int
    images_seen: int
    new_images: int
    new_sightings: int
    errors: dict[str, int]

    def one_line(self) -> str:
        """``crawl 3 finished: 120 pages, 480 images (450 new), …; errors: timeout: 2``."""
        errors = ", ".join(f"{kind}: {n}" for kind, n in sorted(self.errors.items())) or "none"
        return (
            f"crawl {self.id} {self.outcome or 'unfinished'}: {plural(self.pages, 'page')}, "
            f"{plural(self.images_seen, 'image')} ({self.new_images} new), "
            f"{plural(self.new_sightings, 'new sighting')}; errors: {errors}"
        )


def crawl_key(seeds: Iterable[str], scope: Mapping[str, object]) -> str:
    """Same seeds and scope → same key, whatever the order they were given in."""
    canonical = json.dumps({"seeds": sorted(set(seeds)), **scope}, sort_keys=True, default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()


def open_crawl(
    conn: psycopg.Connection, key: str, seeds: list[str], settings: Mapping[str, object]
) -> tuple[int, bool]:
    """(crawl id, resumed): the unfinished crawl with this key, or a new one."""
    row = conn.execute(
        """
        INSERT INTO crawls (key, seeds, settings) VALUES (%s, %s, %s)
        ON CONFLICT (key) WHERE finished_at IS NULL DO NOTHING
        RETURNING id
        """,
        (key, seeds, Jsonb(dict(settings))),
    ).fetchone()
    if row:
        return row[0], False
    existing = conn.execute(
        "SELECT id FROM crawls WHERE key = %s AND finished_at IS NULL", (key,)
    ).fetchone()
    assert existing is not None  # the conflicting row cannot vanish inside this transaction
    return existing[0], True


def add_counts(
    conn: psycopg.Connection,
    crawl_id: int,
    *,
    pages: int = 0,
    images_seen: int = 0,
    new_images: int = 0,
    new_sightings: int = 0,
    errors: Counter[str] | None = None,
) -> None:
    """Add to a crawl's counters; ``errors`` is merged kind by kind."""
    conn.execute(
        """
        UPDATE crawls SET
            pages = pages + %s, images_seen = images_seen + %s,
            new_images = new_images + %s, new_sightings = new_sightings + %s,
            errors = (
                SELECT coalesce(jsonb_object_agg(kind, total), '{}')
                FROM (
                    SELECT kind, sum(n::bigint) AS total
                    FROM (SELECT * FROM jsonb_each_text(errors)
                          UNION ALL SELECT * FROM jsonb_each_text(%s)) AS e (kind, n)
                    GROUP BY kind
                ) AS merged
            )
        WHERE id = %s
        """,
        (pages, images_seen, new_images, new_sightings, Jsonb(dict(errors or {})), crawl_id),
    )


def finish_crawl(conn: psycopg.Connection, crawl_id: int, outcome: str) -> None:
    conn.execute(
        "UPDATE crawls SET finished_at = now(), outcome = %s WHERE id = %s AND finished_at IS NULL",
        (outcome, crawl_id),
    )


def get_crawl(conn: psycopg.Connection, crawl_id: int) -> CrawlSummary | None:
    return (
        conn.cursor(row_factory=class_row(CrawlSummary))
        .execute(_SELECT_SUMMARIES + sql.SQL("WHERE id = %s"), (crawl_id,))
        .fetchone()
    )


def recent_crawls(conn: psycopg.Connection, limit: int = 5) -> list[CrawlSummary]:
    """The latest crawls, newest first."""
    return (
        conn.cursor(row_factory=class_row(CrawlSummary))
        .execute(_SELECT_SUMMARIES + sql.SQL("ORDER BY id DESC LIMIT %s"), (limit,))
        .fetchall()
    )
