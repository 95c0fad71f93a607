"""What a crawled HTML page points at: the images it shows and the links it offers.

Every way a page shows an image counts: ``img src``, the largest ``srcset`` candidate of an
``img`` or a ``<picture><source>``, lazy-load attributes, ``og:image``/``twitter:image`` and
links whose target is an image file. From a ``srcset`` only the largest candidate is taken:
the candidates are one picture at several sizes, dHash matches across sizes, and the largest
gives the best thumbnail, so fetching the others would only add near-duplicate rows.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from contextlib import suppress
from dataclasses import dataclass
from functools import lru_cache
from posixpath import splitext
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit

from lxml import etree
from scrapy.http import HtmlResponse
from w3lib.html import strip_html5_whitespace
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

_WORD = re.compile(r"\S+")
_DESCRIPTOR = re.compile(r"^(\d+(?:\.\d+)?)([wx])$", re.IGNORECASE)


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
    dropped_links: int = 0  # <a>/<area> elements past the cap, counted, not read
    dropped_images: int = 0  # distinct images past the cap


def normalise_url(url: str) -> str | None:
    """The one spelling of a URL used for de-duplication and storage; None if not crawlable.

    Only http(s); fragments and session-id parameters dropped; query sorted (w3lib).
    """
    url = url.strip()
    try:  # "http://[oops", "http://a:port": not URLs, wherever they are found out
        parts = urlsplit(url)
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
    except ValueError:
        return None


def is_image_url(url: str) -> bool:
    """Whether a link looks like an image file (the bytes decide later whether it is one)."""
    return splitext(urlsplit(url).path)[1].lower() in IMAGE_EXTENSIONS


def page_contents(response: HtmlResponse, max_links: int, max_images: int) -> PageContents:
    """Title, image references and page links of an HTML page, as normalised absolute URLs.

    The page is parsed as a stream and the parsed tree pruned as it goes, so memory does not
    grow with the number of elements; links and images past their caps are counted, not kept.
    """
    absolute = _url_resolver(response)
    images = _Images(absolute, max_images)
    links: dict[str, None] = {}
    dropped_links = 0
    title = canonical = None
    for element in _read_elements(response.text):
        tag, attrib = element.tag, element.attrib
        if tag == "img":
            alt = attrib.get("alt")
            for name in ("src", *LAZY_SRC_ATTRIBUTES):
                images.add(attrib.get(name), alt)
            for name in ("srcset", *LAZY_SRCSET_ATTRIBUTES):
                images.add(largest_candidate(attrib.get(name)), alt)
        elif tag == "source" and next(element.iterancestors("picture"), None) is not None:
            for name in ("srcset", *LAZY_SRCSET_ATTRIBUTES):
                images.add(largest_candidate(attrib.get(name)))
        elif tag == "meta":
            key = (attrib.get("property") or attrib.get("name") or "").lower()
            if key in META_IMAGE_KEYS:
                images.add(attrib.get("content"))
        elif tag in ("a", "area") and "href" in attrib:
            if len(links) >= max_links:
                dropped_links += 1
                continue
            url = absolute(attrib["href"])
            if url and is_image_url(url):
                images.add(url, "".join(element.itertext()))
            elif url:
                links[url] = None
        elif tag == "title" and title is None:
            title = _clean_text("".join(element.itertext()))
        elif tag == "link" and canonical is None and _is_canonical(attrib):
            canonical = absolute(attrib["href"])
    return PageContents(
        title,
        list(images.found.values()),
        list(links),
        _same_site_or_fetched(canonical, response.url),
        dropped_links,
        images.dropped,
    )


def _is_canonical(attrib: Any) -> bool:
    return "href" in attrib and "canonical" in (attrib.get("rel") or "").lower().split()


def _same_site_or_fetched(canonical: str | None, fetched_url: str) -> str:
    """The page's ``<link rel="canonical">`` when it names the same site (scheme, host and
    port), else the URL it was fetched from: ``/`` and ``/index.html`` become one page.

    Another site's canonical is ignored: a page cannot make us file it under someone else.
    """
    fetched = urlsplit(fetched_url)
    if canonical and urlsplit(canonical)[:2] == (fetched.scheme, fetched.netloc.lower()):
        return canonical
    return fetched_url


def _url_resolver(response: HtmlResponse) -> Callable[[str], str | None]:
    """Attribute value → normalised absolute URL, remembering recent answers: a page may name
    one URL 900,000 times, and normalising each took 14 s of the crawler's only thread."""

    @lru_cache(maxsize=1024)
    def absolute(raw: str) -> str | None:
        try:
            joined = response.urljoin(strip_html5_whitespace(raw))  # honours <base href>
        except ValueError:  # raw (or the base) is not a URL
            return None
        return normalise_url(joined)

    return absolute


class _Images:
    """The distinct images of a page up to a cap, each with the first alt text it had."""

    def __init__(self, absolute: Callable[[str], str | None], cap: int) -> None:
        self.found: dict[str, ImageRef] = {}
        self.dropped = 0
        self._cap = cap
        self._absolute = absolute

    def add(self, raw: str | None, alt: str | None = None) -> None:
        url = self._absolute(raw) if raw else None
        if url is None:
            return
        known = self.found.get(url)
        if known is None and len(self.found) >= self._cap:
            self.dropped += 1
        elif known is None or (alt and not known.alt_text):
            self.found[url] = ImageRef(url, _clean_text(alt))


_READ_TAGS = ("img", "source", "meta", "a", "area", "title", "link")
_FEED_CHARACTERS = 64 * 1024


def _read_elements(text: str) -> Iterator[Any]:
    """The elements of an HTML document that ``page_contents`` reads, each as its end is parsed.

    After each piece fed to the parser, everything parsed before is dropped but the path of
    still open elements (libxml2 stops reading a page nested ~2,000 deep), so the tree never
    holds the whole page. A link keeps its own text; markup inside it only from the last piece.
    ``huge_tree`` as in Scrapy's selectors: libxml2 would refuse a text or attribute over 10 MB,
    and spent ~9× its size doing so.
    """
    parser = etree.HTMLPullParser(
        events=("start", "end"), tag=("html", *_READ_TAGS), encoding="utf-8", huge_tree=True
    )
    root = None
    for chunk in _chunks(text):
        if chunk:
            parser.feed(chunk)
        else:
            with suppress(etree.LxmlError):  # an empty or hopeless document
                parser.close()
        for event, element in parser.read_events():
            if event == "end":
                yield element
            elif root is None:
                root = element.getroottree().getroot()
        if root is not None:
            _drop_all_but_open_path(root)


def _chunks(text: str) -> Iterator[bytes]:
    """The document in UTF-8 pieces to feed the parser, then ``b""`` for its end."""
    for start in range(0, len(text), _FEED_CHARACTERS):
        yield text[start : start + _FEED_CHARACTERS].encode("utf-8", "surrogatepass")
    yield b""


def _drop_all_but_open_path(root: Any) -> None:
    """Delete every element but the last child on each level: the ones still being parsed."""
    node = root
    while len(node):
        del node[:-1]
        node = node[-1]


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
    """Whitespace collapsed, cut to MAX_TEXT_LENGTH; only the words kept are ever split off
    (``str.split`` of a 10 MB alt text of short words made ~150 MB of them)."""
    if text is None:
        return None
    words: list[str] = []
    length = 0
    for word in _WORD.finditer(text):
        if length > MAX_TEXT_LENGTH:
            break
        words.append(word.group())
        length += len(words[-1]) + 1
    return " ".join(words)[:MAX_TEXT_LENGTH] or None
