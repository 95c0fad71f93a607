"""The crawl's record of truth in PostgreSQL: what to fetch, what is done, what it found.

A request becomes *done* in the same transaction that stores what it found (and the requests
it discovered), so after a crash, even ``kill -9``, the pending rows are exactly the work left.
Writing a result again is harmless: the store's upserts are idempotent and counters only move
when a row goes from pending to done.

The sightings a batch completes come from ``crawler.sightings``.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import psycopg

from crawler.items import IMAGE, PAGE, Batch, PageDone, Pending, RequestFailed
from crawler.sightings import sightings_of_new_images, sightings_of_new_pages
from lookalike.store import Store, crawls, record_sightings
from lookalike.wording import first_line

NOT_STORABLE = "not storable"
# Refusals for what a row holds (an index key past PostgreSQL's 2704-byte limit, a value it
# cannot store), not because the database is away: the same rows would be refused again.
UNSTORABLE = (psycopg.errors.ProgramLimitExceeded, psycopg.DataError)
# Two-key advisory locks live apart from the one-key lock that guards schema updates.
_LOCK_CLASS = 0x4C4B

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Resumed:
    """What a (re)started crawl has to go on with."""

    crawl_id: int
    resumed: bool
    pending: list[Pending]
    known_urls: set[str]
    pages_scheduled: int


@dataclass(frozen=True, slots=True)
class BatchResult:
    pages: int
    images: int
    new_images: int
    new_sightings: int
    errors: Counter[str]


def open_frontier(
    conn: psycopg.Connection,
    key: str,
    seeds: Sequence[str],
    settings: dict[str, object],
) -> Resumed:
    """Start the crawl with this key (seeds pending) or pick up the unfinished one."""
    with conn.transaction():
        crawl_id, resumed = crawls.open_crawl(conn, key, list(seeds), settings)
        _add_requests(conn, crawl_id, [Pending(url, PAGE, 0) for url in seeds])
        rows = conn.execute(
            "SELECT url, kind, depth, done_at IS NULL FROM crawl_requests WHERE crawl_id = %s",
            (crawl_id,),
        ).fetchall()
    pending = [Pending(url, kind, depth) for url, kind, depth, is_pending in rows if is_pending]
    pending.sort(key=lambda p: (p.kind != IMAGE, p.depth, p.url))
    return Resumed(
        crawl_id=crawl_id,
        resumed=resumed,
        pending=pending,
        known_urls={row[0] for row in rows},
        pages_scheduled=sum(1 for row in rows if row[1] == PAGE),
    )


def pending_requests(conn: psycopg.Connection, crawl_id: int) -> list[Pending]:
    rows = conn.execute(
        "SELECT url, kind, depth FROM crawl_requests WHERE crawl_id = %s AND done_at IS NULL",
        (crawl_id,),
    ).fetchall()
    return [Pending(*row) for row in rows]


def write_batch(store: Store, crawl_id: int, batch: Batch) -> BatchResult:
    """Store one batch of results and mark its requests done, all or nothing.

    A batch the database refuses for what it holds is written item by item instead, and an
    item refused on its own becomes a failed request of kind ``NOT_STORABLE``: replaying it
    would fail forever and stall the crawl.
    """
    try:
        return store.in_transaction(lambda conn: _write_batch(conn, crawl_id, batch))
    except UNSTORABLE:
        results = [_write_alone(store, crawl_id, item) for item in _items(batch)]
        return BatchResult(
            pages=sum(r.pages for r in results),
            images=sum(r.images for r in results),
            new_images=sum(r.new_images for r in results),
            new_sightings=sum(r.new_sightings for r in results),
            errors=sum((r.errors for r in results), Counter()),
        )


def _items(batch: Batch) -> list[tuple[Batch, RequestFailed]]:
    """Each result of the batch as a batch of its own, with what it becomes if refused."""
    return (
        [(Batch(pages=[p]), RequestFailed(p.request_url, NOT_STORABLE, PAGE)) for p in batch.pages]
        + [
            (Batch(images=[i]), RequestFailed(i.request_url, NOT_STORABLE, IMAGE))
            for i in batch.images
        ]
        + [(Batch(failures=[f]), f) for f in batch.failures]
    )


def _write_alone(store: Store, crawl_id: int, item: tuple[Batch, RequestFailed]) -> BatchResult:
    single, refused = item
    try:
        return store.in_transaction(lambda conn: _write_batch(conn, crawl_id, single))
    except UNSTORABLE as error:
        logger.warning("cannot store %s: %s", refused.request_url, first_line(error))
        failed = Batch(failures=[refused])
        return store.in_transaction(lambda conn: _write_batch(conn, crawl_id, failed))


def _write_batch(conn: psycopg.Connection, crawl_id: int, batch: Batch) -> BatchResult:
    """Everything of one batch, in the caller's transaction: the rows it found, its requests
    marked done and the crawl's counters commit together or not at all."""
    conn.execute("SELECT pg_advisory_xact_lock(%s, %s)", (_LOCK_CLASS, crawl_id % 2**31))
    _add_requests(conn, crawl_id, [p for page in batch.pages for p in page.discovered])
    _add_image_refs(conn, crawl_id, batch.pages)
    newly_done = _mark_done(conn, crawl_id, batch)
    sightings = sightings_of_new_images(conn, crawl_id, batch.images)
    sightings += sightings_of_new_pages(conn, crawl_id, batch)
    recorded = record_sightings(conn, sightings)
    errors = Counter(error for kind, error in newly_done if error)
    result = BatchResult(
        pages=sum(1 for kind, error in newly_done if kind == PAGE and not error),
        images=sum(1 for kind, error in newly_done if kind == IMAGE and not error),
        new_images=recorded.new_images,
        new_sightings=recorded.new_sightings,
        errors=errors,
    )
    crawls.add_counts(
        conn,
        crawl_id,
        pages=result.pages,
        images_seen=result.images,
        new_images=result.new_images,
        new_sightings=result.new_sightings,
        errors=errors,
    )
    return result


def _add_requests(conn: psycopg.Connection, crawl_id: int, requests: Iterable[Pending]) -> None:
    unique = {p.url: p for p in reversed(list(requests))}  # the first (shallowest) wins
    if not unique:
        return
    rows = sorted(unique.values(), key=lambda p: p.url)
    conn.execute(
        """
        INSERT INTO crawl_requests (crawl_id, url, kind, depth)
        SELECT %s, * FROM unnest(%s::text[], %s::text[], %s::int[])
        ON CONFLICT (crawl_id, url) DO NOTHING
        """,
        (crawl_id, [p.url for p in rows], [p.kind for p in rows], [p.depth for p in rows]),
    )


def _add_image_refs(conn: psycopg.Connection, crawl_id: int, pages: Sequence[PageDone]) -> None:
    refs = {
        (image_url, page.page_url): (page.title, alt)
        for page in pages
        for image_url, alt in page.images
    }
    if not refs:
        return
    keys = sorted(refs)
    conn.execute(
        """
        INSERT INTO crawl_image_refs (crawl_id, image_url, page_url, page_title, alt_text)
        SELECT %s, * FROM unnest(%s::text[], %s::text[], %s::text[], %s::text[])
        ON CONFLICT (crawl_id, image_url, page_url) DO UPDATE
        SET page_title = excluded.page_title, alt_text = excluded.alt_text
        """,
        (
            crawl_id,
            [k[0] for k in keys],
            [k[1] for k in keys],
            [refs[k][0] for k in keys],
            [refs[k][1] for k in keys],
        ),
    )


def _mark_done(conn: psycopg.Connection, crawl_id: int, batch: Batch) -> list[tuple[str, str]]:
    """Mark the batch's requests done; returns (kind, error) of those that were pending."""
    outcomes: dict[str, tuple[str, str | None, str | None]] = {}
    for failure in batch.failures:
        outcomes[failure.request_url] = (failure.request_kind, None, failure.kind)
    for page in batch.pages:
        outcomes[page.request_url] = (PAGE, None, None)
    for image in batch.images:
        outcomes[image.request_url] = (IMAGE, image.fingerprint.sha256, None)
    if not outcomes:
        return []
    urls = sorted(outcomes)
    return conn.execute(
        """
        INSERT INTO crawl_requests AS r (crawl_id, url, kind, done_at, sha256, error)
        SELECT %s, u.url, u.kind, now(), u.sha256, u.error
        FROM unnest(%s::text[], %s::text[], %s::text[], %s::text[]) AS u (url, kind, sha256, error)
        ON CONFLICT (crawl_id, url) DO UPDATE
        SET done_at = now(), sha256 = excluded.sha256, error = excluded.error
        WHERE r.done_at IS NULL
        RETURNING r.kind, r.error
        """,
        (
            crawl_id,
            urls,
            [outcomes[u][0] for u in urls],
            [outcomes[u][1] for u in urls],
            [outcomes[u][2] for u in urls],
        ),
    ).fetchall()
