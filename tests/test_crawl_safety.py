"""The crawler's address check must hold for every connection, not only a host's first."""

from __future__ import annotations

import asyncio
from typing import ClassVar

import psycopg
import pytest
from scrapy import Request, Spider
from scrapy.resolver import dnscache
from scrapy.utils.test import get_crawler

from crawler.safety import PublicAddressMiddleware, RefusedAddress
from tests.conftest import StubHosts
from tests.crawl_site import Site, html, jpeg, run_crawl
from tests.web_support import AcceptRecorder


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
    with pytest.raises(RefusedAddress, match="refused: not a public address"):
        asyncio.run(middleware.process_request(Request("http://169.254.169.254/latest/")))
    assert "169.254.169.254" not in dnscache


def test_a_public_ipv6_literal_needs_no_pin_and_is_allowed() -> None:
    middleware = _middleware()
    asyncio.run(middleware.process_request(Request("http://[2606:4700::1111]/x.jpg")))
    assert "2606:4700::1111" not in dnscache


def test_the_check_refuses_to_run_without_the_dns_cache_it_pins_into() -> None:
    with pytest.raises(ValueError, match="DNSCACHE_ENABLED must stay on"):
        _middleware(DNSCACHE_ENABLED=False)
    with pytest.raises(ValueError, match="DNS_RESOLVER must stay"):
        _middleware(DNS_RESOLVER="scrapy.resolver.CachingHostnameResolver")


def test_a_crawl_refuses_embedded_ipv4_forms_and_hosts_it_cannot_pin(
    database_url: str, cli_env: dict[str, str], stub_hosts: StubHosts
) -> None:
    """Through the stub resolver: 6to4 and NAT64 forms of loopback are refused, and so is a
    host whose checked answer is IPv6 only — Scrapy's resolver is IPv4-only, so it would
    resolve the name again at connect time, and this one rebinds to 127.0.0.2."""
    with AcceptRecorder("127.0.0.2") as rebound:
        names = {
            "sixtofour.test": [["2002:7f00:1::"]],
            "nat64.test": [["64:ff9b::7f00:2"]],
            "v6only.test": [["2606:4700::1111"], ["127.0.0.2"]],
        }
        images = "".join(f'<img src="http://{name}:{rebound.port}/x.jpg">' for name in names)
        routes = {"/": html(images + '<img src="/ok.jpg">'), "/ok.jpg": jpeg(3)}
        with Site(routes) as served:
            result = run_crawl({**cli_env, **stub_hosts(names)}, served.url("/"))
    assert result.returncode == 0, result.stderr[-3000:]
    assert rebound.accepted == 0
    with psycopg.connect(database_url) as conn:
        (errors,) = conn.execute("SELECT errors FROM crawls").fetchone()
        (stored,) = conn.execute("SELECT count(*) FROM images").fetchone()
    assert (errors, stored) == ({"refused address": 3}, 1)


class ManySeedsSpider(Spider):
    """Two seed hosts come last, after thousands of seeds on a third: the allowed addresses
    take a while to build, as they do for a crawl of many seeds."""

    name = "many_seeds"
    seed_urls: ClassVar[list[str]] = [
        *(f"http://127.0.0.3:8000/p{n}" for n in range(5000)),
        "http://127.0.0.1:8000/",
        "http://127.0.0.2:8000/",
    ]


def test_concurrent_first_requests_see_every_seed_host_allowed() -> None:
    """A worker starting on a shared frontier takes several requests at once; each first
    request to a host is checked in a thread, and one that read the allowed addresses while
    another thread was still building them refused a seed host: a request lost unfetched."""
    crawler = get_crawler(ManySeedsSpider)
    crawler.spider = ManySeedsSpider()
    middleware = PublicAddressMiddleware.from_crawler(crawler)

    async def first_requests() -> None:
        await asyncio.gather(
            middleware.process_request(Request("http://127.0.0.2:8000/x.jpg")),
            middleware.process_request(Request("http://127.0.0.1:8000/p1")),
        )

    asyncio.run(first_requests())  # neither is refused
