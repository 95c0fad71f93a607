"""Which URLs a crawl has already taken on, and how many pages it may still schedule.

One process keeps this in memory (seeded from PostgreSQL on resume). Workers sharing a
Redis frontier keep it in Redis, so a URL found by two workers is fetched once and the page
cap holds for the crawl, not per worker.
"""

from __future__ import annotations

from collections.abc import Iterable

import redis


class LocalClaims:
    def __init__(self, known: Iterable[str], pages_scheduled: int, max_pages: int) -> None:
        self._known = set(known)
        self._pages = pages_scheduled
        self._max_pages = max_pages

    def claim(self, urls: list[str]) -> list[str]:
        """The URLs nobody has claimed yet, now claimed by the caller."""
        fresh = [url for url in dict.fromkeys(urls) if url not in self._known]
        self._known.update(fresh)
        return fresh

    def take_pages(self, wanted: int) -> int:
        """How many of ``wanted`` more pages fit under the cap (they are counted)."""
        granted = (
            wanted if not self._max_pages else max(0, min(wanted, self._max_pages - self._pages))
        )
        self._pages += granted
        return granted

    def release(self, urls: list[str]) -> None:
        """Give back URLs claimed but not taken (over the page cap)."""
        self._known.difference_update(urls)


class RedisClaims:
    def __init__(
        self,
        client: redis.Redis,
        prefix: str,
        known: Iterable[str],
        pages_scheduled: int,
        max_pages: int,
    ) -> None:
        self._redis = client
        self._known_key = f"{prefix}:claimed"
        self._pages_key = f"{prefix}:pages"
        self._max_pages = max_pages
        self._known = known
        self._pages_scheduled = pages_scheduled

    def reset_from_database(self) -> None:
        """Make the claims exactly the database's rows: what a lone (re)starting worker sees.

        Claims of workers that died before writing them would otherwise hide those URLs.
        """
        pipe = self._redis.pipeline()
        pipe.delete(self._known_key)
        pipe.set(self._pages_key, self._pages_scheduled)
        for chunk in _chunks(list(self._known), 10_000):
            pipe.sadd(self._known_key, *chunk)
        pipe.execute()

    def claim(self, urls: list[str]) -> list[str]:
        unique = list(dict.fromkeys(urls))
        if not unique:
            return []
        pipe = self._redis.pipeline(transaction=False)
        for url in unique:
            pipe.sadd(self._known_key, url)
        return [url for url, added in zip(unique, pipe.execute(), strict=True) if added]

    def take_pages(self, wanted: int) -> int:
        if not self._max_pages or not wanted:
            return wanted
        total = self._redis.incrby(self._pages_key, wanted)
        over = min(wanted, max(0, total - self._max_pages))
        if over:
            self._redis.decrby(self._pages_key, over)
        return wanted - over

    def release(self, urls: list[str]) -> None:
        if urls:
            self._redis.srem(self._known_key, *urls)


def _chunks(items: list[str], size: int) -> Iterable[list[str]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]
