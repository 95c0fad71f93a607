"""What a crawled HTML page points at: the images it shows and the links it offers.

Every way a page shows an image counts: ``img src``, the largest ``srcset`` candidate of an
``img`` or a ``<picture><source>``, lazy-load attributes, ``og:image``/``twitter:image`` and
links whose target is an image file. From a ``srcset`` only the largest candidate is taken:
the candidates are one picture at several sizes, dHash matches across sizes, and the largest
gives the best thumbnail, so fetching the others would only add near-duplicate rows.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from posixpath import splitext
from urllib.parse import parse_qsl, urlencode, urlsplit

from scrapy.http import HtmlResponse
from scrapy.linkextractors import LinkExtractor
from w3lib.url import canonicalize_url

from lookalike.fingerprint import IMAGE_MEDIA_TYPES

IMAGE_EXTENSIONS = frozenset(
    {".jpg", ".jpeg", ".png", ".gif", ".webp", ".bmp", ".avif", ".heic", ".heif", ".tif", ".tiff"}
)
IMAGE_ACCEPT = ",".join(IMAGE_MEDIA_TYPES)  # the Accept header of image requests
LAZY_SRC_ATTRIBUTES = ("data-src", "data-original", "data-lazy-src")
LAZY_SRCSET_ATTRIBUTES = ("data-srcset",)
META_IMAGE_KEYS = ("og:image", "og:image:url", "og:image:secure_url", "twitter:image")
# Query parameters that only carry a session: without them one page would have endless URLs.
SESSION_PARAMETERS = frozenset(
    {"jsessionid", "phpsessid", "sid", "sessionid", "session_id", "aspsessionid"}
)
MAX_TEXT_LENGTH = 1000
MAX_URL_LENGTH = 2048

_DESCRIPTOR = re.compile(r"^(\d+(?:\.\d+)?)([wx])$", re.IGNORECASE)
_links = LinkExtractor(deny_extensions=(), tags=("a", "area"), attrs=("href",), unique=True)


@dataclass(frozen=True, slots=True)
class ImageRef:
    """An image URL as used on a page, with the alt text it had there."""

    url: str
    alt_text: str | None


@dataclass(frozen=True, slots=True)
class PageContents:
    title: str | None
    images: list[ImageRef]
    links: list[str]
    page_url: str  # as stored: its canonical URL on the same site, else the URL fetched


def normalise_url(url: str) -> str | None:
    """The one spelling of a URL used for de-duplication and storage; None if not crawlable.

    Only http(s); fragments and session-id parameters dropped; query sorted (w3lib).
    """
    url = url.strip()
    try:
        parts = urlsplit(url)
    except ValueError:
        return None
    if parts.scheme not in ("http", "https") or not parts.hostname or len(url) > MAX_URL_LENGTH:
        return None
    path, _, params = parts.path.partition(";")
    if params.lower().startswith("jsessionid"):
        parts = parts._replace(path=path)
    query = [
        (name, value)
        for name, value in parse_qsl(parts.query, keep_blank_values=True)
        if name.lower() not in SESSION_PARAMETERS
    ]
    return canonicalize_url(parts._replace(query=urlencode(query), fragment="").geturl())


def is_image_url(url: str) -> bool:
    """Whether a link looks like an image file (the bytes decide later whether it is one)."""
    return splitext(urlsplit(url).path)[1].lower() in IMAGE_EXTENSIONS


def page_contents(response: HtmlResponse) -> PageContents:
    """Title, image references and page links of an HTML page, as normalised absolute URLs."""
    images: dict[str, ImageRef] = {}

    def add_image(raw: str | None, alt: str | None = None) -> None:
        if not raw:
            return
        url = normalise_url(response.urljoin(raw))  # urljoin honours <base href>
        if url and (url not in images or (alt and not images[url].alt_text)):
            images[url] = ImageRef(url, _clean_text(alt))

    for img in response.css("img"):
        alt = img.attrib.get("alt")
        add_image(img.attrib.get("src"), alt)
        for name in LAZY_SRC_ATTRIBUTES:
            add_image(img.attrib.get(name), alt)
        for name in ("srcset", *LAZY_SRCSET_ATTRIBUTES):
            add_image(largest_candidate(img.attrib.get(name)), alt)
    for source in response.css("picture source"):
        for name in ("srcset", *LAZY_SRCSET_ATTRIBUTES):
            add_image(largest_candidate(source.attrib.get(name)))
    for meta in response.css("meta"):
        key = (meta.attrib.get("property") or meta.attrib.get("name") or "").lower()
        if key in META_IMAGE_KEYS:
            add_image(meta.attrib.get("content"))

    links: list[str] = []
    for link in _links.extract_links(response):
        url = normalise_url(link.url)
        if url is None:
            continue
        if is_image_url(url):
            add_image(url, link.text)
        else:
            links.append(url)
    title = _clean_text(response.css("title::text").get())
    return PageContents(
        title=title, images=list(images.values()), links=links, page_url=canonical_url(response)
    )


def canonical_url(response: HtmlResponse) -> str:
    """The page's ``<link rel="canonical">`` when it names the same site (scheme, host and
    port), else the URL it was fetched from: ``/`` and ``/index.html`` become one page.

    Another site's canonical is ignored: a page cannot make us file it under someone else.
    """
    href = next(
        (
            link.attrib.get("href")
            for link in response.css("link[rel][href]")
            if "canonical" in link.attrib["rel"].lower().split()
        ),
        None,
    )
    declared = normalise_url(response.urljoin(href)) if href else None
    fetched = urlsplit(response.url)
    if declared and urlsplit(declared)[:2] == (fetched.scheme, fetched.netloc.lower()):
        return declared
    return response.url


def largest_candidate(srcset: str | None) -> str | None:
    """The URL of the widest (``w``) or densest (``x``) candidate of a srcset."""
    if not srcset:
        return None
    best: tuple[float, str] | None = None
    for candidate in _split_srcset(srcset):
        parts = candidate.split()
        if not parts:
            continue
        size = 1.0
        if len(parts) > 1 and (match := _DESCRIPTOR.match(parts[-1])):
            size = float(match.group(1))
        if best is None or size > best[0]:
            best = (size, parts[0])
    return best[1] if best else None


def _split_srcset(srcset: str) -> list[str]:
    """Split on the commas between candidates, not those inside URLs (``a,b.jpg 2x``)."""
    return [c.strip() for c in re.split(r",\s+|,(?=\s*$)|(?<=[wx]),", srcset) if c.strip()]


def _clean_text(text: str | None) -> str | None:
    if text is None:
        return None
    collapsed = " ".join(text.split())[:MAX_TEXT_LENGTH]
    return collapsed or None
