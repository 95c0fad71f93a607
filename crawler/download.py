"""Scrapy's HTTP/1.1 download handler with a cap on the size of a response's head.

Twisted keeps every header line it receives and Scrapy only caps the body, so a server that
sends headers without end grew the crawler by gigabytes until the download timeout. The status
line and headers together may take ``LOOKALIKE_MAX_HEADER_BYTES`` (Chromium allows 256 KiB),
counting the interim ``1xx`` heads Twisted skips; past that, or past Twisted's 16 KiB for one
line, the download fails at once as ``HeadersTooLarge``, which is not retried.
"""

from __future__ import annotations

from functools import partial
from typing import Any

from scrapy import Request
from scrapy.core.downloader.handlers.http11 import (
    HTTP11DownloadHandler,
    _LenientHTTP11ClientFactory,
    _LenientHTTP11ClientProtocol,
    _LenientHTTPClientParser,
)
from scrapy.crawler import Crawler
from scrapy.exceptions import DownloadFailedError
from scrapy.http import Response
from twisted.web._newclient import ResponseFailed


class HeadersTooLarge(Exception):
    """The response's status line and headers went past the crawler's cap."""


class _CappedHeadersParser(_LenientHTTPClientParser):
    max_header_bytes = 0
    _header_bytes = 0

    def lineReceived(self, line: bytes) -> None:
        self._header_bytes += len(line) + 1
        if self._header_bytes > self.max_header_bytes:
            raise HeadersTooLarge(f"response headers over {self.max_header_bytes} bytes")
        super().lineReceived(line)

    def lineLengthExceeded(self, line: bytes) -> None:
        raise HeadersTooLarge(f"a response header line over {self.MAX_LENGTH} bytes")


class _CappedHeadersProtocol(_LenientHTTP11ClientProtocol):
    def __init__(self, quiescent_callback: Any, max_header_bytes: int) -> None:
        super().__init__(quiescent_callback)
        self._max_header_bytes = max_header_bytes

    def request(self, request: Any) -> Any:
        response = super().request(request)
        # Scrapy swaps the parser's class the same way; ours adds no state but the cap.
        assert self._parser is not None
        self._parser.__class__ = _CappedHeadersParser
        self._parser.max_header_bytes = self._max_header_bytes
        return response


class _CappedHeadersFactory(_LenientHTTP11ClientFactory):
    def __init__(self, quiescent_callback: Any, metadata: Any, max_header_bytes: int) -> None:
        super().__init__(quiescent_callback, metadata)
        self._max_header_bytes = max_header_bytes

    def buildProtocol(self, addr: Any) -> _CappedHeadersProtocol:
        return _CappedHeadersProtocol(self._quiescentCallback, self._max_header_bytes)


class CappedHeadersDownloadHandler(HTTP11DownloadHandler):
    def __init__(self, crawler: Crawler) -> None:
        super().__init__(crawler)
        self._pool._factory = partial(  # type: ignore[assignment]
            _CappedHeadersFactory,
            max_header_bytes=crawler.settings.getint("LOOKALIKE_MAX_HEADER_BYTES"),
        )

    async def download_request(self, request: Request) -> Response:
        try:
            return await super().download_request(request)
        except DownloadFailedError as error:
            too_large = _headers_too_large(error)
            if too_large is None:
                raise
            raise too_large from None


def _headers_too_large(error: DownloadFailedError) -> HeadersTooLarge | None:
    """The ``HeadersTooLarge`` that Twisted wrapped in ``ResponseFailed``, if that failed."""
    cause = error.__cause__
    reasons = cause.reasons if isinstance(cause, ResponseFailed) else []
    for reason in reasons:
        if isinstance(reason.value, HeadersTooLarge):
            return reason.value
    return None
