"""Short names for what went wrong with a request, to count errors by kind."""

from __future__ import annotations

from urllib.parse import urljoin, urlsplit

from scrapy.exceptions import (
    CannotResolveHostError,
    DownloadCancelledError,
    DownloadConnectionRefusedError,
    DownloadTimeoutError,
    IgnoreRequest,
    ResponseDataLossError,
)
from scrapy.http import Response
from scrapy.spidermiddlewares.httperror import HttpError
from scrapy.utils._compression import _DecompressionMaxSizeExceeded
from twisted.internet.error import ConnectionRefusedError, DNSLookupError, TimeoutError
from twisted.python.failure import Failure

from crawler.download import HeadersTooLarge
from crawler.robots import RobotsTxtDisallowed, RobotsTxtUnavailable
from crawler.safety import RefusedAddress

_BY_TYPE: tuple[tuple[type[BaseException] | tuple[type[BaseException], ...], str], ...] = (
    (RefusedAddress, "refused address"),
    (RobotsTxtUnavailable, "robots.txt unavailable"),
    (RobotsTxtDisallowed, "robots.txt disallowed"),
    ((DownloadTimeoutError, TimeoutError), "timeout"),
    (DownloadCancelledError, "too large"),
    ((CannotResolveHostError, DNSLookupError), "dns lookup failed"),
    ((DownloadConnectionRefusedError, ConnectionRefusedError), "connection refused"),
    (ResponseDataLossError, "truncated response"),
    (HeadersTooLarge, "headers too large"),
)


def failure_kind(failure: Failure) -> str:
    error = failure.value
    if isinstance(error, HttpError):
        return _http_kind(error.response)
    for types, kind in _BY_TYPE:
        if isinstance(error, types):
            return kind
    if isinstance(error, IgnoreRequest):
        if isinstance(error.__cause__, _DecompressionMaxSizeExceeded):
            return "decompression bomb"  # the cap on the body, reached while inflating it
        if "redirections" in str(error):  # Scrapy's redirect middlewares give it no type
            return "too many redirects"
        return "ignored"
    return type(error).__name__


def _http_kind(response: Response) -> str:
    """``http 404``; a redirect that Scrapy left unfollowed for its scheme says so."""
    location = response.headers.get("Location")
    if 300 <= response.status < 400 and location:
        scheme = urlsplit(urljoin(response.url, location.decode("latin-1"))).scheme
        if scheme not in ("http", "https"):
            return f"redirect refused: {scheme or 'no'} scheme"
    return f"http {response.status}"
