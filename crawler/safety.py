"""Connect only to public addresses, plus the addresses the seed hosts themselves resolve to.

A page (or a redirect) can point anywhere, including 127.0.0.1, the local network or the
cloud metadata service at 169.254.169.254. Every request's host is resolved and checked with
``lookalike.addresses`` before connecting, and the checked address is put in Scrapy's DNS
cache so the connection goes to that address and not to a second, different answer. The cache
is a bounded LRU, so the address is put back before every request to the host: a crawl of more
hosts than the cache holds must not let an evicted host be resolved again, unchecked.

Scrapy's resolver (``CachingThreadedResolver``) answers IPv4 only, so a host name is crawled
only if a checked IPv4 address can be pinned for it: a name whose checked answer is IPv6 only
would be resolved again at connect time, and that answer was never checked. Address literals
(``http://[2606:4700::1111]/``) need no resolution and are connected to as they are.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
from urllib.parse import urlsplit

from scrapy import Request, Spider
from scrapy.crawler import Crawler
from scrapy.exceptions import IgnoreRequest
from scrapy.resolver import CachingThreadedResolver, dnscache
from scrapy.utils.httpobj import urlparse_cached
from scrapy.utils.misc import load_object

from lookalike.addresses import AddressRefused, IPAddress, check_addresses, resolve

logger = logging.getLogger(__name__)


class RefusedAddress(IgnoreRequest):
    """The request's host resolves to an address the crawler must not connect to."""


class PublicAddressMiddleware:
    def __init__(self, crawler: Crawler) -> None:
        self.crawler = crawler
        self._allowed: set[IPAddress] | None = None
        self._refusals: dict[str, str | None] = {}  # host → refusal reason (None: fine)
        self._pinned: dict[str, str] = {}  # host → the checked IPv4 address connections use

    @classmethod
    def from_crawler(cls, crawler: Crawler) -> PublicAddressMiddleware:
        if not crawler.settings.getbool("DNSCACHE_ENABLED"):
            raise ValueError(
                "DNSCACHE_ENABLED must stay on: the crawler pins each host's checked address there"
            )
        if load_object(crawler.settings["DNS_RESOLVER"]) is not CachingThreadedResolver:
            raise ValueError(
                "DNS_RESOLVER must stay scrapy.resolver.CachingThreadedResolver: the crawler pins"
                " each host's checked IPv4 address in its cache"
            )
        return cls(crawler)

    async def process_request(self, request: Request, spider: Spider | None = None) -> None:
        parts = urlparse_cached(request)
        host = parts.hostname or ""
        if host not in self._refusals:
            self._refusals[host] = await asyncio.to_thread(self._check, host, parts.port)
        reason = self._refusals[host]
        if reason is not None:
            self.crawler.stats.inc_value("lookalike/refused_address")
            logger.info("refused %s: %s", request.url, reason)
            raise RefusedAddress(reason)
        if host in self._pinned:
            dnscache[host] = self._pinned[host]

    def _check(self, host: str, port: int | None) -> str | None:
        try:
            addresses = resolve(host, port or 443)
            check_addresses(host, addresses, self._allowed_addresses())
        except AddressRefused as error:
            return str(error)
        ipv4 = [a for a in addresses if isinstance(a, ipaddress.IPv4Address)]
        if ipv4:
            self._pinned[host] = str(ipv4[0])
        elif not _is_address_literal(host):  # a literal is connected to as it is, unresolved
            return f"refused: no IPv4 address the crawler can connect to (host {host!r})"
        return None

    def _allowed_addresses(self) -> set[IPAddress]:
        """The seed hosts' addresses, published only once complete: checks run in threads, and
        one reading a half-built set would refuse a seed host."""
        if self._allowed is None:
            allowed: set[IPAddress] = set()
            for seed in getattr(self.crawler.spider, "seed_urls", []):
                parts = urlsplit(seed)
                try:
                    allowed.update(resolve(parts.hostname or "", parts.port or 443))
                except AddressRefused:
                    continue  # an unresolvable seed simply fails when fetched
            self._allowed = allowed
        return self._allowed


def _is_address_literal(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True
