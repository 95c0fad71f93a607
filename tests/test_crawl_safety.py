"""The crawler's address check must hold for every connection, not only a host's first."""

from __future__ import annotations

import asyncio
import re
from typing import ClassVar

import pytest
from scrapy import Request, Spider
from scrapy.resolver import dnscache
from scrapy.utils.test import get_crawler

from crawler.safety import PublicAddressMiddleware, RefusedAddress


class SeededSpider(Spider):
    name = "seeded"
    seed_urls: ClassVar[list[str]] = ["http://localhost:8000/"]


def _middleware(**settings: object) -> PublicAddressMiddleware:
    crawler = get_crawler(SeededSpider, settings_dict=settings)
    crawler.spider = SeededSpider()
    return PublicAddressMiddleware.from_crawler(crawler)


def test_an_evicted_host_is_pinned_again_before_its_next_request() -> None:
    """Scrapy's DNS cache is a bounded LRU; a host pushed out of it by a crawl of many hosts
    would otherwise be resolved again at connect time, and that answer was never checked."""
    middleware = _middleware()
    request = Request("http://localhost:8000/page")
    asyncio.run(middleware.process_request(request))
    pinned = dnscache["localhost"]
    assert pinned == "127.0.0.1"

    del dnscache["localhost"]  # what the LRU does after DNSCACHE_SIZE other hosts
    asyncio.run(middleware.process_request(request))
    assert dnscache["localhost"] == pinned


def test_a_refused_host_is_never_pinned() -> None:
    middleware = _middleware()
    with pytest.raises(RefusedAddress, match=re.escape("169.254.169.254")):
        asyncio.run(middleware.process_request(Request("http://169.254.169.254/latest/")))
    assert "169.254.169.254" not in dnscache


def test_the_check_refuses_to_run_without_the_dns_cache_it_pins_into() -> None:
    with pytest.raises(ValueError, match="DNSCACHE_ENABLED must stay on"):
        _middleware(DNSCACHE_ENABLED=False)
