"""A progress line every LOOKALIKE_PROGRESS_SECONDS: pages/s, images/s, queue size, errors."""

from __future__ import annotations

import logging
import time

from scrapy import signals
from scrapy.crawler import Crawler
from scrapy.exceptions import NotConfigured
from twisted.internet import task

logger = logging.getLogger(__name__)


class ProgressLog:
    def __init__(self, crawler: Crawler, interval: float) -> None:
        self.crawler = crawler
        self.interval = interval
        self._loop: task.LoopingCall | None = None
        self._last = (time.monotonic(), 0, 0)

    @classmethod
    def from_crawler(cls, crawler: Crawler) -> ProgressLog:
        interval = crawler.settings.getfloat("LOOKALIKE_PROGRESS_SECONDS")
        if interval <= 0:
            raise NotConfigured
        extension = cls(crawler, interval)
        crawler.signals.connect(extension.spider_opened, signal=signals.spider_opened)
        crawler.signals.connect(extension.spider_closed, signal=signals.spider_closed)
        return extension

    def spider_opened(self) -> None:
        self._loop = task.LoopingCall(self.log)
        self._loop.start(self.interval, now=False)

    def log(self) -> None:
        stats = self.crawler.stats
        pages = stats.get_value("lookalike/pages", 0)
        images = stats.get_value("lookalike/images", 0)
        now = time.monotonic()
        then, pages_then, images_then = self._last
        elapsed = max(now - then, 1e-9)
        self._last = (now, pages, images)
        scheduler = self.crawler.engine.scheduler if self.crawler.engine else None
        logger.info(
            "progress: %d pages (%.1f/s), %d images (%.1f/s), %d queued, %d errors, %d new images",
            pages,
            (pages - pages_then) / elapsed,
            images,
            (images - images_then) / elapsed,
            len(scheduler) if scheduler is not None else 0,  # type: ignore[arg-type]
            stats.get_value("lookalike/errors", 0)
            + stats.get_value("lookalike/rejected_images", 0),
            stats.get_value("lookalike/new_images", 0),
        )

    def spider_closed(self) -> None:
        if self._loop is not None and self._loop.running:
            self._loop.stop()
