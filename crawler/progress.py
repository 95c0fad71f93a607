"""Progress of a crawl: a log line every LOOKALIKE_PROGRESS_SECONDS and, on a terminal, a live
line on stderr redrawn every second (LOOKALIKE_PROGRESS_LINE, set by ``lookalike crawl``)."""

from __future__ import annotations

import logging
import sys
import time

from scrapy import signals
from scrapy.crawler import Crawler
from scrapy.exceptions import NotConfigured
from twisted.internet import task

from lookalike.wording import plural

logger = logging.getLogger(__name__)

LINE_SECONDS = 1.0
_CLEAR_LINE = "\r\033[K"


class ProgressLog:
    def __init__(self, crawler: Crawler, interval: float, live_line: bool) -> None:
        self.crawler = crawler
        self.interval = interval
        self.live_line = live_line
        self._loops: list[task.LoopingCall] = []
        self._started = time.monotonic()
        self._last = (self._started, 0, 0)

    @classmethod
    def from_crawler(cls, crawler: Crawler) -> ProgressLog:
        interval = crawler.settings.getfloat("LOOKALIKE_PROGRESS_SECONDS")
        live_line = crawler.settings.getbool("LOOKALIKE_PROGRESS_LINE")
        if interval <= 0 and not live_line:
            raise NotConfigured
        extension = cls(crawler, interval, live_line)
        crawler.signals.connect(extension.spider_opened, signal=signals.spider_opened)
        crawler.signals.connect(extension.spider_closed, signal=signals.spider_closed)
        return extension

    def spider_opened(self) -> None:
        self._started = time.monotonic()
        self._last = (self._started, 0, 0)
        if self.interval > 0:
            self._loops.append(task.LoopingCall(self.log))
            self._loops[-1].start(self.interval, now=False)
        if self.live_line:
            self._loops.append(task.LoopingCall(self.draw))
            self._loops[-1].start(LINE_SECONDS, now=True)

    def _counts(self) -> dict[str, int]:
        stats = self.crawler.stats
        scheduler = self.crawler.engine.scheduler if self.crawler.engine else None
        return {
            "pages": stats.get_value("lookalike/pages", 0),
            "images": stats.get_value("lookalike/images", 0),
            "new": stats.get_value("lookalike/new_images", 0),
            "queued": len(scheduler) if scheduler is not None else 0,  # type: ignore[arg-type]
            "errors": stats.get_value("lookalike/errors", 0)
            + stats.get_value("lookalike/rejected_images", 0),
        }

    def log(self) -> None:
        counts = self._counts()
        now = time.monotonic()
        then, pages_then, images_then = self._last
        elapsed = max(now - then, 1e-9)
        self._last = (now, counts["pages"], counts["images"])
        logger.info(
            "progress: %d pages (%.1f/s), %d images (%.1f/s), %d queued, %d errors, %d new images",
            counts["pages"],
            (counts["pages"] - pages_then) / elapsed,
            counts["images"],
            (counts["images"] - images_then) / elapsed,
            counts["queued"],
            counts["errors"],
            counts["new"],
        )

    def draw(self) -> None:
        """``12 pages, 30 images (28 new), 5 queued, 0 errors, 2.4 images/s``, over itself."""
        c = self._counts()
        rate = c["images"] / max(time.monotonic() - self._started, 1e-9)
        sys.stderr.write(
            f"{_CLEAR_LINE}{plural(c['pages'], 'page')}, {plural(c['images'], 'image')} "
            f"({c['new']} new), {c['queued']} queued, {plural(c['errors'], 'error')}, "
            f"{rate:.1f} images/s"
        )
        sys.stderr.flush()

    def spider_closed(self) -> None:
        for loop in self._loops:
            if loop.running:
                loop.stop()
        if self.live_line:
            sys.stderr.write(_CLEAR_LINE)
            sys.stderr.flush()
