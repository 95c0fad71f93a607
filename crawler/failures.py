"""Short names for what went wrong with a request, to count errors by kind."""

from __future__ import annotations

from scrapy.exceptions import (
    CannotResolveHostError,
    DownloadCancelledError,
    DownloadConnectionRefusedError,
    DownloadTimeoutError,
    IgnoreRequest,
    ResponseDataLossError,
)
from scrapy.spidermiddlewares.httperror import HttpError
from twisted.internet.error import ConnectionRefusedError, DNSLookupError, TimeoutError
from twisted.python.failure import Failure

from crawler.robots import RobotsTxtUnavailable
from crawler.safety import RefusedAddress

_BY_TYPE: tuple[tuple[type[BaseException] | tuple[type[BaseException], ...], str], ...] = (
    (RefusedAddress, "refused address"),
    (RobotsTxtUnavailable, "robots.txt unavailable"),
    ((DownloadTimeoutError, TimeoutError), "timeout"),
    (DownloadCancelledError, "too large"),
    ((CannotResolveHostError, DNSLookupError), "dns lookup failed"),
    ((DownloadConnectionRefusedError, ConnectionRefusedError), "connection refused"),
    (ResponseDataLossError, "truncated response"),
)


def failure_kind(failure: Failure) -> str:
    error = failure.value
    if isinstance(error, HttpError):
        return f"http {error.response.status}"
    for types, kind in _BY_TYPE:
        if isinstance(error, types):
            return kind
    if isinstance(error, IgnoreRequest):
        message = str(error)
        if "robots.txt" in message:
            return "robots.txt disallowed"
        if "redirections" in message:
            return "too many redirects"
        return "ignored"
    return type(error).__name__


def rejection_kind(reason: str) -> str:
    """``ImageRejected`` reasons without their details: "unsupported format: PDF" → its kind."""
    return reason.split(":", 1)[0]
