"""robots.txt as RFC 9309 says: a server error or no answer means "disallow everything".

Scrapy's middleware crawls anyway when robots.txt answers 5xx or cannot be fetched; a site
that is failing is the last one to hammer. 4xx still means "no rules". Crawl-delay, which
Scrapy ignores, becomes the host's minimum delay between requests.

RFC 9309 asks crawlers to read at least 500 KiB of robots.txt; we read that much and no more:
the transfer stops there (whatever size the server announces, wherever it redirects) and the
rules in it apply, so a 50 MB robots.txt neither fills memory nor locks the crawler out. A
compressed one is inflated only up to ``DOWNLOAD_MAXSIZE``, then cut to 500 KiB.
"""

from __future__ import annotations

import logging
from typing import Any

from scrapy import Request, signals
from scrapy.crawler import Crawler
from scrapy.downloadermiddlewares.robotstxt import RobotsTxtMiddleware
from scrapy.exceptions import IgnoreRequest, StopDownload
from scrapy.http import Response
from scrapy.utils.httpobj import urlparse_cached
from scrapy.utils.misc import build_from_crawler

DISALLOW_ALL = b"User-agent: *\nDisallow: /\n"
MAX_CRAWL_DELAY_SECONDS = 60.0
ROBOTS_TXT_MAX_BYTES = 500 * 1024
_ROBOTS_TXT = "lookalike_robots_txt"  # meta key


class RobotsTxtUnavailable(IgnoreRequest):
    """robots.txt answered 5xx or could not be fetched: the whole host is off limits."""


class RobotsTxtDisallowed(IgnoreRequest):
    """robots.txt disallows the URL (Scrapy's refusal, given a type of its own to count by)."""


class StrictRobotsTxtMiddleware(RobotsTxtMiddleware):
    def __init__(self, crawler: Crawler) -> None:
        super().__init__(crawler)
        self._unavailable: dict[str, str] = {}  # netloc → why its robots.txt is unavailable
        # The parent logs an unreachable robots.txt with a traceback; the reason is enough.
        logging.getLogger(RobotsTxtMiddleware.__module__).addFilter(_without_traceback)
        self._max_inflated = crawler.settings.getint("DOWNLOAD_MAXSIZE")
        crawler.signals.connect(self._robots_txt_bytes, signal=signals.bytes_received)

    async def process_request(self, request: Request, spider: Any = None) -> None:
        if _is_robots_txt(request):
            # No cap on the announced size: the transfer stops at ROBOTS_TXT_MAX_BYTES instead.
            request.meta.update({_ROBOTS_TXT: True, "download_maxsize": 0, "robots_txt_bytes": 0})
            return
        netloc = urlparse_cached(request).netloc
        try:
            await super().process_request(request)
        except IgnoreRequest as refused:
            if netloc in self._unavailable:
                raise RobotsTxtUnavailable(
                    f"robots.txt unavailable ({self._unavailable[netloc]})"
                ) from None
            raise RobotsTxtDisallowed(str(refused)) from None
        parser = self._parsers.get(netloc)
        delay = _crawl_delay(parser, self._robotstxt_useragent or self._default_useragent)
        if delay:
            slot_key = self.crawler.engine.downloader.get_slot_key(request)
            slot = self.crawler.engine.downloader.slots.get(slot_key)
            if slot is not None and slot.delay < delay:
                slot.delay = delay
            request.meta["autothrottle_dont_adjust_delay"] = True

    def _robots_txt_bytes(self, data: bytes, request: Request, **kwargs: Any) -> None:
        """Stop a robots.txt transfer at ROBOTS_TXT_MAX_BYTES, keeping what came."""
        if not _is_robots_txt(request):
            return
        request.meta["download_maxsize"] = self._max_inflated  # what inflating it may reach
        request.meta["robots_txt_bytes"] = request.meta.get("robots_txt_bytes", 0) + len(data)
        if request.meta["robots_txt_bytes"] > ROBOTS_TXT_MAX_BYTES:
            raise StopDownload(fail=False)

    async def _parse_robots(self, response: Response, netloc: str, request: Request) -> None:
        if len(response.body) > ROBOTS_TXT_MAX_BYTES:  # its last line may be cut: drop it
            response = response.replace(
                body=response.body[:ROBOTS_TXT_MAX_BYTES].rpartition(b"\n")[0]
            )
        if response.status >= 500:
            self._unavailable[netloc] = f"http {response.status}"
            response = response.replace(body=DISALLOW_ALL)
        elif response.status >= 400:
            response = response.replace(body=b"")
        await super()._parse_robots(response, netloc, request)

    def _robots_error(self, exc: Exception, netloc: str) -> None:
        if not isinstance(exc, IgnoreRequest):
            self._stats.inc_value(f"robotstxt/exception_count/{type(exc)}")
        self._unavailable[netloc] = type(exc).__name__
        waiting = self._parsers[netloc]
        parser = build_from_crawler(self._parserimpl, self.crawler, DISALLOW_ALL)
        self._parsers[netloc] = parser
        waiting.callback(parser)  # type: ignore[union-attr]


def _is_robots_txt(request: Request) -> bool:
    """The request the parent middleware makes for a host's robots.txt, or a redirect of it."""
    if request.meta.get(_ROBOTS_TXT):  # a redirect keeps the meta, not the path
        return True
    return bool(request.meta.get("dont_obey_robotstxt")) and (
        urlparse_cached(request).path == "/robots.txt"
    )


def _without_traceback(record: logging.LogRecord) -> bool:
    record.exc_info = None
    record.exc_text = None
    return True


def _crawl_delay(parser: Any, user_agent: str | bytes) -> float | None:
    rules = getattr(parser, "rp", None)  # Protego's parser, behind Scrapy's wrapper
    if rules is None or not hasattr(rules, "crawl_delay"):
        return None
    agent = user_agent.decode() if isinstance(user_agent, bytes) else user_agent
    delay = rules.crawl_delay(agent)
    return min(float(delay), MAX_CRAWL_DELAY_SECONDS) if delay else None
