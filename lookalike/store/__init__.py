"""The PostgreSQL fingerprint store: the write path, the searches and reading images back.

:class:`Store` holds the connection pool; the work is in one module per job:
:mod:`~lookalike.store.sightings` (recording), :mod:`~lookalike.store.search` (near matches),
:mod:`~lookalike.store.images` (stored images), :mod:`~lookalike.store.kind_tables` (where each hash
kind's hashes live).
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Sequence
from typing import TypeVar

import psycopg
from psycopg_pool import ConnectionPool, PoolClosed, PoolTimeout

from lookalike import kinds
from lookalike.features.index import FeatureIndex
from lookalike.features.query import QueryDescription
from lookalike.features.relation import Relation
from lookalike.store import features, images, search
from lookalike.store.images import Stats, StoredImage
from lookalike.store.robust import find as find_robust
from lookalike.store.robust import relate_one
from lookalike.store.search import (
    DEFAULT_LIMIT,
    DEFAULT_MAX_DISTANCE,
    DEFAULT_SIGHTINGS_PER_MATCH,
    SORT_ORDERS,
    Match,
    PageSighting,
    RankedMatch,
    SearchPage,
)
from lookalike.store.sightings import RecordResult, Sighting, page_domain, record_sightings

__all__ = [
    "DEFAULT_LIMIT",
    "DEFAULT_MAX_DISTANCE",
    "SORT_ORDERS",
    "Match",
    "PageSighting",
    "RankedMatch",
    "RecordResult",
    "SearchPage",
    "Sighting",
    "Stats",
    "Store",
    "StoredImage",
    "page_domain",
    "record_sightings",
]

_DEADLOCK_RETRIES = 5
FEATURE_REFRESH_SECONDS = 2.0
_T = TypeVar("_T")


class Store:
    """The PostgreSQL fingerprint store, over a psycopg connection pool."""

    def __init__(self, pool: ConnectionPool) -> None:
        self.pool = pool
        self.features = FeatureIndex()  # derived from image_features: refresh_features()
        self._stop_refreshing = threading.Event()

    def close(self, timeout: float = 5.0) -> None:
        """Stop refreshing the feature index and close the pool, waiting up to ``timeout``
        seconds for its connections."""
        self._stop_refreshing.set()
        self.pool.close(timeout=timeout)

    def refresh_features(self) -> int:
        """Bring the in-memory feature index up to date with PostgreSQL; the images added."""
        return features.catch_up(self.pool.connection, features.IMAGE_FEATURES, self.features)

    def keep_features_fresh(self, every: float = FEATURE_REFRESH_SECONDS) -> threading.Thread:
        """Refresh the feature index now and then ``every`` seconds, in a daemon thread, until
        the store is closed: a server searches while the index is built, and sees what
        crawlers write within seconds."""

        def refresh() -> None:
            while not self._stop_refreshing.is_set():
                # the database is away: try again next time
                with contextlib.suppress(psycopg.Error, PoolTimeout, PoolClosed):
                    self.refresh_features()
                self._stop_refreshing.wait(every)

        thread = threading.Thread(target=refresh, name="feature-index", daemon=True)
        thread.start()
        return thread

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
        query: int,
        *,
        kind: str = kinds.DEFAULT_KIND,
        max_distance: int = DEFAULT_MAX_DISTANCE,
        limit: int = DEFAULT_LIMIT,
        robust: QueryDescription | None = None,
    ) -> list[Match]:
        """Images whose ``kind`` hash is within ``max_distance`` bits of ``query``, best first,
        with their sightings. With the query image's ``robust`` description (``fingerprint(…,
        as_query=True).query``), also its edited copies (:mod:`lookalike.store.robust`)."""
        searched = kinds.get(kind, searchable=True)
        with self.pool.connection() as conn:
            found = self._found(conn, searched, query, max_distance, robust)
            return search.search(conn, found, limit=limit)

    def _found(
        self,
        conn: psycopg.Connection,
        kind: kinds.HashKind,
        query: int,
        max_distance: int,
        robust: QueryDescription | None,
    ) -> list[search.Found]:
        if robust is None:
            return search.found_by_hash(conn, kind, query, max_distance=max_distance)
        return find_robust(conn, kind, robust, self.features, max_distance=max_distance)

    def search_page(
        self,
        query: int,
        *,
        kind: str = kinds.DEFAULT_KIND,
        max_distance: int = DEFAULT_MAX_DISTANCE,
        sort: str = "best",
        domain: str | None = None,
        limit: int = DEFAULT_LIMIT,
        offset: int = 0,
        sightings_per_match: int = DEFAULT_SIGHTINGS_PER_MATCH,
        with_domains: bool = False,
        robust: QueryDescription | None = None,
    ) -> SearchPage:
        """One page of matches, sorted and filtered (see :func:`search.search_page`); with
        ``robust``, edited copies too, as :meth:`search` finds them."""
        searched = kinds.get(kind, searchable=True)
        with self.pool.connection() as conn:
            found = self._found(conn, searched, query, max_distance, robust)
            return search.search_page(
                conn,
                found,
                sort=sort,
                domain=domain,
                limit=limit,
                offset=offset,
                sightings_per_match=sightings_per_match,
                with_domains=with_domains,
            )

    def relate(
        self,
        image_id: int,
        description: QueryDescription,
        *,
        kind: str = kinds.DEFAULT_KIND,
        max_distance: int = DEFAULT_MAX_DISTANCE,
    ) -> Relation | None:
        """How one stored image differs from the query whose ``description`` this is, worked
        out as :meth:`search` with ``robust`` relates the matches it finds (for a compare view
        of one of them); None when neither a view's hash nor a feature fit relates the two."""
        searched = kinds.get(kind, searchable=True)
        with self.pool.connection() as conn:
            return relate_one(conn, searched, description, image_id, max_distance=max_distance)

    def image(
        self, image_id: int, *, sightings: int = DEFAULT_SIGHTINGS_PER_MATCH
    ) -> StoredImage | None:
        """One stored image and up to ``sightings`` of its sightings; None if there is none."""
        with self.pool.connection() as conn:
            return images.stored_image(conn, image_id, sightings=sightings)

    def thumbnail(self, image_id: int) -> bytes | None:
        """The stored WebP thumbnail of an image, if one was made."""
        with self.pool.connection() as conn:
            return images.thumbnail(conn, image_id)

    def stats(self) -> Stats:
        with self.pool.connection() as conn:
            return images.stats(conn)
