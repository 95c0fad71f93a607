"""What a crawl passes along: requests, fetched pages and images, failures, and batches of them.

The spider yields these and the pipeline gathers them into a ``Batch``, which
``crawler.frontier`` writes in one transaction and ``crawler.sightings`` joins into sightings.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime

from lookalike.fingerprint import Fingerprint

PAGE = "page"
IMAGE = "image"


@dataclass(frozen=True, slots=True)
class Pending:
    url: str
    kind: str
    depth: int


@dataclass(frozen=True, slots=True)
class PageDone:
    """A fetched HTML page, the image URLs it uses and the requests it adds to the frontier."""

    request_url: str
    page_url: str
    title: str | None
    images: Sequence[tuple[str, str | None]]  # (image URL, alt text)
    discovered: Sequence[Pending]
    seen_at: datetime


@dataclass(frozen=True, slots=True)
class ImageDone:
    """A fetched image, with the page that asked for it (other pages come from the refs)."""

    request_url: str
    fingerprint: Fingerprint
    seen_at: datetime
    referrer: tuple[str, str | None, str | None] | None = None  # (page URL, title, alt text)


@dataclass(frozen=True, slots=True)
class RequestFailed:
    request_url: str
    kind: str  # what went wrong, e.g. "timeout", "http 404", "not an image"
    request_kind: str = PAGE


@dataclass(slots=True)
class Batch:
    pages: list[PageDone] = field(default_factory=list)
    images: list[ImageDone] = field(default_factory=list)
    failures: list[RequestFailed] = field(default_factory=list)
