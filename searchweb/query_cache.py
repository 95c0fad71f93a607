"""Recent queries kept in memory, so a results page (sorted, filtered, paged) can still show
the picture that was searched for, and find its edited copies, after the upload request is over.

Only the small re-encoded thumbnail and the query's description for the robust search are kept
(up to ~45 KB a query), never the uploaded bytes, and only the newest ``QUERY_CACHE_SIZE``
queries. Their URL carries the dHash, so a page whose query has been forgotten (or served by
another process) still lists every match within the radius; only the edited copies that the
description finds (mirrored, turned, cropped) need it remembered.
"""

from __future__ import annotations

import secrets
import threading
from collections import OrderedDict

from flask import Flask, current_app

from searchweb.queries import ImageQuery

_KEY = "lookalike_query_cache"


class QueryCache:
    """A thread-safe LRU of token → ImageQuery."""

    def __init__(self, size: int) -> None:
        self.size = size
        self._queries: OrderedDict[str, ImageQuery] = OrderedDict()
        self._not_yet_shown: set[str] = set()
        self._lock = threading.Lock()

    def remember(self, query: ImageQuery) -> str:
        token = secrets.token_urlsafe(12)
        with self._lock:
            self._queries[token] = query
            self._not_yet_shown.add(token)
            while len(self._queries) > self.size:
                forgotten, _ = self._queries.popitem(last=False)
                self._not_yet_shown.discard(forgotten)
        return token

    def first_showing(self, token: str | None) -> bool:
        """True once per token: for the results page its search form redirected to."""
        with self._lock:
            if token in self._not_yet_shown:
                self._not_yet_shown.discard(token)
                return True
        return False

    def recall(self, token: str | None, by_hash: ImageQuery) -> ImageQuery | None:
        """The query under ``token``, if it is still kept and has ``by_hash``'s hash."""
        if not token:
            return None
        with self._lock:
            query = self._queries.get(token)
            if query is not None:
                self._queries.move_to_end(token)
        if query is None or (query.kind, query.value) != (by_hash.kind, by_hash.value):
            return None
        return query


def init_query_cache(app: Flask) -> None:
    app.extensions[_KEY] = QueryCache(app.config["QUERY_CACHE_SIZE"])


def query_cache() -> QueryCache:
    return current_app.extensions[_KEY]
