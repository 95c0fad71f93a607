"""Fingerprint fetched images and write results to PostgreSQL in batches, off the reactor.

One insert per item costs a fifth of the crawl's speed, and a slow or restarting database must
not stall downloads that are already under way, so items go into a queue that a writer thread
drains in batches (``crawler.frontier.write_batch``: one transaction each). Image bytes are
fingerprinted by worker processes as they arrive (``crawler.hashing``), so decoding never
blocks the reactor.
When the database is away the writer retries the same batch until it is back, while the
queue's limits slow the crawl down (back-pressure) instead of growing memory; after
``LOOKALIKE_DB_RETRY_SECONDS`` it closes the crawl (at once, for a write that fails for any
other reason), which stays resumable because nothing unwritten was marked done.
"""

from __future__ import annotations

import asyncio
import logging
import os
import queue
import threading
import time
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import psycopg
from psycopg_pool import PoolTimeout
from scrapy.crawler import Crawler
from scrapy.utils.defer import deferred_from_coro

from crawler.frontier import write_batch
from crawler.hashing import Fingerprinters, Job
from crawler.items import IMAGE, Batch, ImageDone, PageDone, RequestFailed
from lookalike.config import DatabaseUnavailable
from lookalike.wording import first_line

logger = logging.getLogger(__name__)

DATABASE_ERRORS = (psycopg.OperationalError, PoolTimeout, DatabaseUnavailable)
_STOP = object()


@dataclass(frozen=True, slots=True)
class ImageFetched:
    """Bytes fetched for an image URL; whether they are an image is decided here."""

    request_url: str
    body: bytes
    seen_at: datetime
    referrer: tuple[str, str | None, str | None] | None = None


class BatchWriterPipeline:
    def __init__(self, crawler: Crawler) -> None:
        settings = crawler.settings
        self.crawler = crawler
        self.stats = crawler.stats
        self.batch_size = settings.getint("LOOKALIKE_BATCH_SIZE")
        self.flush_seconds = settings.getfloat("LOOKALIKE_FLUSH_SECONDS")
        self.max_items = settings.getint("LOOKALIKE_MAX_BUFFERED_ITEMS")
        self.max_bytes = settings.getint("LOOKALIKE_MAX_BUFFERED_BYTES")
        self.retry_seconds = settings.getfloat("LOOKALIKE_DB_RETRY_SECONDS")
        self.max_pixels = settings.getint("LOOKALIKE_MAX_PIXELS")
        self.thumbnails = settings.getbool("LOOKALIKE_THUMBNAILS")
        self._queue: queue.Queue[Any] = queue.Queue()
        self._buffered_bytes = 0
        self._unwritten = 0  # items handed to the writer and not yet committed
        self._counting = threading.Lock()  # both threads update the two counts above
        self._gave_up = False
        self._thread: threading.Thread | None = None
        self._hashers = Fingerprinters(
            settings.getint("LOOKALIKE_FINGERPRINT_WORKERS") or os.cpu_count() or 2
        )

    @classmethod
    def from_crawler(cls, crawler: Crawler) -> BatchWriterPipeline:
        return cls(crawler)

    def open_spider(self, spider: Any = None) -> None:
        spider = self.crawler.spider
        self.store, self.crawl_id = spider.store, spider.crawl_id
        spider.writer = self
        self._thread = threading.Thread(target=self._run, name="lookalike-writer", daemon=True)
        self._thread.start()

    async def process_item(self, item: Any, spider: Any = None) -> Any:
        if self._gave_up:
            return item  # not written, so it stays pending in the frontier for a resume
        size = len(item.body) if isinstance(item, ImageFetched) else 0
        while self._queue.qsize() >= self.max_items or (
            self._buffered_bytes and self._buffered_bytes + size > self.max_bytes
        ):
            await asyncio.sleep(0.05)  # back-pressure: the writer is behind (or the DB away)
        with self._counting:
            self._buffered_bytes += size
            self._unwritten += 1
        if isinstance(item, ImageFetched):  # decode now, in parallel; the writer keeps order
            hashed = self._hashers.submit(item.body, self.max_pixels, self.thumbnails)
            self._queue.put(((item, hashed), size))
        else:
            self._queue.put((item, size))
        return item

    def wait_until_written(self, timeout: float) -> None:
        """Block until every item so far is in the database, or ``timeout`` passes."""
        deadline = time.monotonic() + timeout
        while self._unwritten and time.monotonic() < deadline:
            time.sleep(0.01)

    async def close_spider(self, spider: Any = None) -> None:
        self._queue.put(_STOP)
        # Polled, not joined in a helper thread: Python joins its helper threads at exit, so a
        # writer stuck in a hung database would keep even a forced stop (Ctrl-C twice) alive.
        while self._thread is not None and self._thread.is_alive():
            await asyncio.sleep(0.05)
        self._hashers.shutdown()

    # --- writer thread --------------------------------------------------------------------

    def _run(self) -> None:
        stopping = False
        while not stopping:
            items, stopping = self._take_batch()
            if items and not self._gave_up:
                self._write(self._to_batch(items))
            with self._counting:
                self._unwritten -= len(items)

    def _take_batch(self) -> tuple[list[Any], bool]:
        """Up to batch_size items, waiting at most flush_seconds after the first one."""
        items: list[Any] = []
        deadline: float | None = None
        while len(items) < self.batch_size:
            timeout = None if deadline is None else max(0.0, deadline - time.monotonic())
            try:
                entry = self._queue.get(timeout=timeout)
            except queue.Empty:
                break
            if entry is _STOP:
                return items, True
            item, size = entry
            with self._counting:
                self._buffered_bytes -= size
            items.append(item)
            deadline = deadline or time.monotonic() + self.flush_seconds
        return items, False

    def _to_batch(self, entries: list[Any]) -> Batch:
        batch = Batch()
        for entry in entries:
            if isinstance(entry, PageDone):
                batch.pages.append(entry)
            elif isinstance(entry, RequestFailed):
                batch.failures.append(entry)
            else:
                image, hashed = entry
                result = self._hash_result(image, hashed)
                if isinstance(result, ImageDone):
                    batch.images.append(result)
                else:
                    batch.failures.append(result)
        return batch

    def _hash_result(self, image: ImageFetched, hashed: Job) -> ImageDone | RequestFailed:
        """What the bytes turned out to be; "is this an image" is decided from them alone."""
        try:
            result = self._hashers.result(hashed)
        except Exception:  # a decoder crash on one hostile file must not stop the writer
            logger.exception("could not fingerprint %s", image.request_url)
            result = "fingerprint failed"
        if isinstance(result, str):  # the kind of rejection, or of a failure to fingerprint
            self.stats.inc_value("lookalike/rejected_images")  # only this thread counts these
            self.stats.inc_value(f"lookalike/rejected_images/{result}")
            return RequestFailed(image.request_url, result, IMAGE)
        return ImageDone(image.request_url, result, image.seen_at, image.referrer)

    def _write(self, batch: Batch) -> None:
        """Write the batch, waiting out a database outage (the same batch is replayed)."""
        outage_started: float | None = None
        while True:
            try:
                result = write_batch(self.store, self.crawl_id, batch)
            except DATABASE_ERRORS as error:
                now = time.monotonic()
                if outage_started is None:
                    outage_started = now
                    self.stats.inc_value("lookalike/database_outages")
                    logger.warning("database unavailable, retrying: %s", first_line(error))
                if now - outage_started > self.retry_seconds:
                    self._give_up(
                        f"database unavailable for {self.retry_seconds:.0f} s",
                        "database unavailable",
                    )
                    return
                time.sleep(min(5.0, 0.2 * 2 ** min(6, int(now - outage_started))))
                continue
            except Exception as error:  # neither an outage nor the rows' fault: replaying is futile
                self._give_up(f"could not write a batch ({first_line(error)})", "write failed")
                return
            break
        if outage_started is not None:
            outage = time.monotonic() - outage_started
            self.stats.inc_value("lookalike/database_outage_seconds", round(outage, 1))
            logger.warning("database back after %.1f s; nothing was lost", outage)
        self.stats.inc_value("lookalike/new_images", result.new_images)
        self.stats.inc_value("lookalike/new_sightings", result.new_sightings)

    def _give_up(self, why: str, reason: str) -> None:
        """Stop the crawl, resumable: nothing from here on is written, so nothing is done."""
        self._gave_up = True
        logger.error("%s: stopping; run the same command again to resume", why)
        from twisted.internet import reactor  # the one Scrapy installed, not a default one

        engine = self.crawler.engine
        reactor.callFromThread(  # type: ignore[attr-defined]
            lambda: deferred_from_coro(engine.close_spider_async(reason=reason))
        )
