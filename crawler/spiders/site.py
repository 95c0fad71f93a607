"""The ``site`` spider: crawl seed sites, fetch every image their pages show.

Arguments (``-a``; ``lookalike crawl`` passes them): ``start_urls`` (comma or space separated),
``seeds_file``, ``depth``, ``max_pages``, ``allow_domains`` (comma separated; default: the seed
hosts). Images are fetched from any host (CDNs); links are followed only within the domains.

Requests are claimed once (``crawler.claims``) and written to the frontier in PostgreSQL with
the page that found them, so they carry ``dont_filter``: Scrapy's own duplicate filter would
drop a redirect to a URL seen before and leave its request unanswered forever.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import scrapy
from scrapy import signals
from scrapy.crawler import Crawler
from scrapy.http import HtmlResponse, Response
from scrapy.settings import SETTINGS_PRIORITIES
from twisted.python.failure import Failure

from crawler.claims import LocalClaims, RedisClaims
from crawler.extract import IMAGE_ACCEPT, PageContents, normalise_url, page_contents
from crawler.failures import failure_kind
from crawler.frontier import open_frontier
from crawler.frontier import pending_requests as frontier_pending
from crawler.items import IMAGE, PAGE, PageDone, Pending, RequestFailed
from crawler.pipelines import DATABASE_ERRORS, ImageFetched
from crawler.workers import SharedFrontier
from lookalike.config import database_url
from lookalike.store import Store, crawls
from lookalike.store.db import open_pool, with_statement_timeout

logger = logging.getLogger(__name__)

IMAGE_PRIORITY = 10  # finish a page's images before wandering further: bounded frontier


class SiteSpider(scrapy.Spider):
    name = "site"

    def __init__(
        self,
        start_urls: str = "",
        seeds_file: str | None = None,
        depth: str | int | None = None,
        max_pages: str | int | None = None,
        allow_domains: str = "",
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        raw = start_urls.replace(",", " ").split()
        if seeds_file:
            raw += Path(seeds_file).read_text(encoding="utf-8").split()
        seeds = [normalise_url(url) for url in raw]
        if not raw or None in seeds:
            bad = [u for u, s in zip(raw, seeds, strict=True) if s is None]
            raise ValueError(f"need http(s) seed URLs; not usable: {' '.join(bad) or '(none)'}")
        self.seed_urls: list[str] = list(dict.fromkeys(s for s in seeds if s))
        self._depth_arg = depth
        self._max_pages_arg = max_pages
        domains = [d.strip().lower().lstrip(".") for d in allow_domains.split(",") if d.strip()]
        self.allow_domains = domains or sorted(
            {urlsplit(url).hostname or "" for url in self.seed_urls}
        )

    @classmethod
    def from_crawler(cls, crawler: Crawler, *args: Any, **kwargs: Any) -> SiteSpider:
        spider: SiteSpider = super().from_crawler(crawler, *args, **kwargs)
        spider._open_crawl(crawler)
        crawler.signals.connect(spider._on_idle, signal=signals.spider_idle)
        if spider.shared:
            crawler.signals.connect(spider._start_polling, signal=signals.spider_opened)
        return spider

    def _open_crawl(self, crawler: Crawler) -> None:
        """Open (or resume) the crawl in PostgreSQL; with Redis, point scrapy-redis at it."""
        settings = crawler.settings
        if settings.getpriority("USER_AGENT") <= SETTINGS_PRIORITIES["project"]:
            contact = settings.get("LOOKALIKE_CONTACT_URL")
            agent = settings.get("LOOKALIKE_USER_AGENT").format(contact=contact)
            settings.set("USER_AGENT", agent, priority="project")
        self.max_depth = int(
            self._depth_arg if self._depth_arg is not None else settings.getint("LOOKALIKE_DEPTH")
        )
        self.max_pages = int(
            self._max_pages_arg
            if self._max_pages_arg is not None
            else settings.getint("LOOKALIKE_MAX_PAGES")
        )
        scope = {
            "allow_domains": self.allow_domains,
            "depth": self.max_depth,
            "max_pages": self.max_pages,
        }
        timeout = settings.getfloat("LOOKALIKE_DB_STATEMENT_SECONDS")
        self.store = Store(open_pool(with_statement_timeout(database_url(), timeout), max_size=4))
        key = crawls.crawl_key(self.seed_urls, scope)
        recorded = scope | {  # what the crawls table keeps about how this crawl was run
            "user_agent": settings.get("USER_AGENT"),
            "robots_txt": settings.getbool("ROBOTSTXT_OBEY"),
            "autothrottle": settings.getbool("AUTOTHROTTLE_ENABLED"),
            "download_delay": settings.getfloat("DOWNLOAD_DELAY"),
            "concurrent_requests_per_domain": settings.getint("CONCURRENT_REQUESTS_PER_DOMAIN"),
            "shared_frontier": bool(settings.get("REDIS_URL")),
        }
        with self.store.pool.connection() as conn:
            frontier = open_frontier(conn, key, self.seed_urls, recorded)
        self.crawl_id = frontier.crawl_id
        self.resumed = frontier.resumed
        self._start_pending = frontier.pending
        redis_url = settings.get("REDIS_URL")
        self.shared = (
            SharedFrontier(redis_url, key, frontier, self.max_pages, settings)
            if redis_url
            else None
        )
        if self.shared:
            self.claims: LocalClaims | RedisClaims = self.shared.claims
            if not self.shared.first_worker:  # the first one queued what was pending
                self._start_pending = []
        else:
            self.claims = LocalClaims(frontier.known_urls, frontier.pages_scheduled, self.max_pages)
        logger.info(
            "%s crawl %d: %d requests pending, seeds %s",
            "resuming" if self.resumed else "starting",
            self.crawl_id,
            len(frontier.pending),
            " ".join(self.seed_urls),
        )

    async def start(self) -> AsyncIterator[scrapy.Request]:
        for pending in self._start_pending:
            yield self._request(pending)

    def _request(
        self, pending: Pending, referrer: tuple[str, str | None, str | None] | None = None
    ) -> scrapy.Request:
        meta: dict[str, Any] = {"frontier_url": pending.url, "depth": pending.depth}
        if pending.kind == IMAGE:
            meta["download_maxsize"] = self.settings.getint("LOOKALIKE_MAX_IMAGE_BYTES")
            meta["referrer"] = referrer
            return scrapy.Request(
                pending.url,
                callback=self.parse_image,
                errback=self.image_failed,
                meta=meta,
                priority=IMAGE_PRIORITY,
                dont_filter=True,
                headers={"Accept": IMAGE_ACCEPT},
            )
        meta["download_maxsize"] = self.settings.getint("LOOKALIKE_MAX_PAGE_BYTES")
        return scrapy.Request(
            pending.url, callback=self.parse, errback=self.page_failed, meta=meta, dont_filter=True
        )

    def parse(self, response: Response, **kwargs: Any) -> Iterator[Any]:
        """An HTML page: record the image URLs it uses, fetch them, follow in-scope links."""
        frontier_url = response.meta["frontier_url"]
        if not isinstance(response, HtmlResponse):
            self.crawler.stats.inc_value("lookalike/errors")
            yield RequestFailed(frontier_url, "not html", PAGE)
            return
        self.crawler.stats.inc_value("lookalike/pages")
        depth = response.meta["depth"]
        contents = page_contents(
            response,
            max_links=self.settings.getint("LOOKALIKE_MAX_LINKS_PER_PAGE"),
            max_images=self.settings.getint("LOOKALIKE_MAX_IMAGES_PER_PAGE"),
        )
        self._count_dropped(contents)
        alts = {image.url: image.alt_text for image in contents.images}
        # Every URL goes into the frontier rows, whoever claimed it: a worker that claimed one
        # and died before writing it leaves only this page to bring it back.
        discovered = [Pending(url, IMAGE, depth) for url in alts]
        fresh = set(self.claims.claim(list(alts)))
        if depth < self.max_depth:
            followed, claimed = self._links_to_follow(contents.links)
            discovered += [Pending(url, PAGE, depth + 1) for url in followed]
            fresh.update(claimed)
        yield PageDone(
            request_url=frontier_url,
            page_url=contents.page_url,
            title=contents.title,
            images=list(alts.items()),
            discovered=discovered,
            seen_at=datetime.now(UTC),
        )
        for pending in discovered:
            if pending.url in fresh:
                referrer = (contents.page_url, contents.title, alts.get(pending.url))
                yield self._request(pending, referrer)

    def _count_dropped(self, contents: PageContents) -> None:
        for what, dropped in (
            ("links", contents.dropped_links),
            ("images", contents.dropped_images),
        ):
            if dropped:
                self.crawler.stats.inc_value(f"lookalike/dropped_{what}", dropped)

    def _links_to_follow(self, links: list[str]) -> tuple[list[str], list[str]]:
        """(in-scope links within the page cap, those of them this worker claimed first)."""
        in_scope = [url for url in dict.fromkeys(links) if self._in_scope(url)]
        claimed = self.claims.claim(in_scope)
        granted = self.claims.take_pages(len(claimed))
        over_cap = set(claimed[granted:])
        self.claims.release(sorted(over_cap))
        return [url for url in in_scope if url not in over_cap], claimed[:granted]

    def parse_image(self, response: Response) -> Iterator[ImageFetched]:
        """Bytes that should be an image: the pipeline decides, from the bytes alone."""
        self.crawler.stats.inc_value("lookalike/images")
        yield ImageFetched(
            request_url=response.meta["frontier_url"],
            body=response.body,
            seen_at=datetime.now(UTC),
            referrer=response.meta.get("referrer"),
        )

    def page_failed(self, failure: Failure) -> Iterator[RequestFailed]:
        yield self._failed(failure, PAGE)

    def image_failed(self, failure: Failure) -> Iterator[RequestFailed]:
        yield self._failed(failure, IMAGE)

    def _failed(self, failure: Failure, kind: str) -> RequestFailed:
        request = failure.request  # type: ignore[attr-defined]
        error = failure_kind(failure)
        self.crawler.stats.inc_value("lookalike/errors")
        self.crawler.stats.inc_value(f"lookalike/errors/{error}")
        logger.debug("%s %s failed: %s", kind, request.url, error)
        return RequestFailed(request.meta["frontier_url"], error, kind)

    def _in_scope(self, url: str) -> bool:
        host = urlsplit(url).hostname or ""
        return any(host == d or host.endswith("." + d) for d in self.allow_domains)

    def _start_polling(self) -> None:
        assert self.shared is not None
        self.shared.start_polling(self.crawler)

    def _on_idle(self) -> None:
        """With Redis: stay while other workers still have work; take over a dead one's."""
        if not self.shared:
            return
        self.writer.wait_until_written(timeout=5.0)  # our own results count as pending until then
        with self.store.pool.connection() as conn:
            pending = frontier_pending(conn, self.crawl_id)
        self.shared.keep_open(pending, lambda p: self.crawler.engine.crawl(self._request(p)))

    def _dropped_summary(self) -> str:
        """``; 999000 links over the per-page cap not read`` (and images), or nothing."""
        stats = self.crawler.stats
        dropped = [
            f"{count} {what} over the per-page cap"
            for what in ("links", "images")
            if (count := stats.get_value(f"lookalike/dropped_{what}", 0))
        ]
        return f"; {' and '.join(dropped)} not read" if dropped else ""

    def closed(self, reason: str) -> None:
        """Finish the crawl in the database when the work ran out (not on a stop or kill).

        Requests still pending (results the writer could not store before giving up) keep the
        crawl unfinished, so that the same command resumes it instead of starting anew.
        """
        try:
            with self.store.pool.connection() as conn:
                left = len(frontier_pending(conn, self.crawl_id))
                finished = reason == "finished" and not left
                if finished:
                    crawls.finish_crawl(conn, self.crawl_id, "finished")
                summary = crawls.get_crawl(conn, self.crawl_id)
        except DATABASE_ERRORS as error:
            logger.error("could not record the end of crawl %d: %s", self.crawl_id, error)
            self.store.close()
            return
        if self.shared:
            self.shared.close(finished=finished)
        if summary:
            logger.info(
                "crawl %d %s: %d pages, %d images (%d new), %d new sightings, errors %s%s%s",
                self.crawl_id,
                "finished" if finished else f"stopped ({reason})",
                summary.pages,
                summary.images_seen,
                summary.new_images,
                summary.new_sightings,
                summary.errors or "none",
                f"; {left} requests left for a resume" if left else "",
                self._dropped_summary(),
            )
        self.store.close()
