"""Several crawl processes on one frontier: scrapy-redis for the queue, PostgreSQL for the truth.

Each worker runs the same command. The first one to start (no other worker holds the lease)
rebuilds the Redis state from the database and queues what is pending there; the others take
requests from the shared Redis queue. URLs are claimed in Redis, so
one found by two workers is fetched once. A worker with nothing to do stays while the crawl
still has pending requests (others are busy), and when those stop moving for
LOOKALIKE_STALLED_SECONDS it re-queues them: they belonged to a worker that died.

Politeness limits (concurrency, delay, AutoThrottle) are per worker process.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

import redis
from scrapy.crawler import Crawler
from scrapy.exceptions import DontCloseSpider
from scrapy.settings import Settings
from twisted.internet import task

from crawler.claims import RedisClaims
from crawler.frontier import Resumed
from crawler.items import Pending

logger = logging.getLogger(__name__)

POLL_SECONDS = 0.5


class SharedFrontier:
    def __init__(
        self, url: str, crawl_key: str, frontier: Resumed, max_pages: int, settings: Settings
    ) -> None:
        self.redis = redis.Redis.from_url(url)
        self.prefix = f"lookalike:{crawl_key[:16]}:{frontier.crawl_id}"
        self.stalled_seconds = settings.getfloat("LOOKALIKE_STALLED_SECONDS")
        settings.set("SCHEDULER", "scrapy_redis.scheduler.Scheduler")
        settings.set("SCHEDULER_PERSIST", True)  # a worker leaving must not empty the queue
        settings.set("SCHEDULER_QUEUE_KEY", f"{self.prefix}:requests")
        settings.set("SCHEDULER_DUPEFILTER_KEY", f"{self.prefix}:dupefilter")
        settings.set("DUPEFILTER_CLASS", "scrapy_redis.dupefilter.RFPDupeFilter")
        self.claims = RedisClaims(
            self.redis, self.prefix, frontier.known_urls, frontier.pages_scheduled, max_pages
        )
        # Live workers keep renewing a lease. Finding none means this worker is alone (a new
        # crawl, or all workers stopped): it rebuilds Redis from the database, the record of
        # truth, and queues what is pending there, exactly as a single process resumes.
        self._lease_key = f"{self.prefix}:lease"
        self._lease_seconds = settings.getint("LOOKALIKE_WORKER_LEASE_SECONDS")
        self.first_worker = self._renew_lease(first=True)
        if self.first_worker:
            self.redis.delete(f"{self.prefix}:requests")
            self.claims.reset_from_database()
        self._last_pending: tuple[int, float] | None = None
        self._poll: task.LoopingCall | None = None

    def start_polling(self, crawler: Crawler) -> None:
        """An idle engine looks at its scheduler only every 5 s; other workers fill the shared
        queue meanwhile, so look every POLL_SECONDS instead."""
        self._poll = task.LoopingCall(self._take_shared_work, crawler)
        self._poll.start(POLL_SECONDS, now=False)

    def _renew_lease(self, first: bool = False) -> bool:
        return bool(self.redis.set(self._lease_key, 1, nx=first, ex=self._lease_seconds))

    def _take_shared_work(self, crawler: Crawler) -> None:
        self._renew_lease()
        engine = crawler.engine
        if engine is None or engine.scheduler is None or engine.downloader.active:
            return
        if len(engine.scheduler):  # type: ignore[arg-type]
            request = engine.scheduler.next_request()
            if request is not None:
                engine.crawl(request)  # back into the queue, and wakes the engine up

    def keep_open(self, pending: list[Pending], requeue: Callable[[Pending], Any]) -> None:
        """Called when this worker is idle with ``pending`` requests left in the crawl."""
        if not pending:
            return
        now = time.monotonic()
        if self._last_pending is None or self._last_pending[0] != len(pending):
            self._last_pending = (len(pending), now)
        elif now - self._last_pending[1] >= self.stalled_seconds:
            lock_seconds = max(int(self.stalled_seconds), 1)  # one worker re-queues, not all
            if self.redis.set(f"{self.prefix}:requeue", 1, nx=True, ex=lock_seconds):
                logger.warning("re-queueing %d stalled requests", len(pending))
                for request in pending:
                    requeue(request)
            self._last_pending = None
        raise DontCloseSpider

    def close(self, finished: bool) -> None:
        if self._poll is not None and self._poll.running:
            self._poll.stop()
        if finished:  # the crawl is over for every worker: leave nothing behind in Redis
            keys = list(self.redis.scan_iter(f"{self.prefix}:*"))
            if keys:
                self.redis.delete(*keys)
