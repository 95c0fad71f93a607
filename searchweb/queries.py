"""Turning a request into a search: the query image (upload, URL or hash) and the options.

Shared by the pages, the JSON API and any other blueprint (moderation checks read images
the same way): import ``query_from_upload``/``query_from_url``/``query_from_hash`` and
``parse_search_options`` instead of reading request data by hand. Bad input raises a
werkzeug HTTP error or a core exception that ``searchweb.errors`` maps to its status.

A search is by one kind of hash: ``kind`` (default dHash) picks it, and a raw hash is given
in the parameter named after its kind (``dhash=HEX``). A query by image is also searched for
its edited copies (mirrored, turned, cropped: :mod:`lookalike.store.robust`); a raw hash has no
picture to describe, so it finds only copies within its radius.
"""

from __future__ import annotations

import base64
import ipaddress
import math
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass

from flask import current_app, request
from werkzeug.datastructures import FileStorage
from werkzeug.exceptions import BadRequest, ServiceUnavailable, UnsupportedMediaType

from lookalike import kinds
from lookalike.features.query import QueryDescription
from lookalike.fetch import fetch
from lookalike.fingerprint import Fingerprint, fingerprint
from lookalike.kinds import HashKind, UnknownKind
from lookalike.store import SORT_ORDERS, SearchPage
from searchweb.extensions import decode_budget, get_store, timed

SORT_LABELS = {
    "best": "Best match",
    "pages": "Most pages",
    "newest": "Newest",
    "oldest": "Oldest",
    "biggest": "Biggest image",
}
assert SORT_LABELS.keys() == SORT_ORDERS.keys()


@dataclass(frozen=True, slots=True)
class ImageQuery:
    """What is being searched for, and how to describe it back to the person asking."""

    kind: HashKind  # what is searched by
    value: int  # the query's hash of that kind
    source: str  # "upload", "url", or the kind's name for a raw hash
    label: str  # a file name, a URL or the hash itself: shown escaped, never linked
    fingerprint: Fingerprint | None = None

    @property
    def hash_hex(self) -> str:
        return self.kind.to_hex(self.value)

    def url_args(self) -> dict[str, str]:
        """The query string that finds this query again: ``dhash=HEX`` (and ``kind=``
        when it is not the default kind)."""
        args = {self.kind.name: self.hash_hex}
        return args if self.kind.name == kinds.DEFAULT_KIND else {"kind": self.kind.name} | args

    @property
    def description(self) -> QueryDescription | None:
        """What the robust search needs from the query image; None for a raw hash."""
        return self.fingerprint.query if self.fingerprint else None

    @property
    def thumbnail(self) -> bytes | None:
        """A small WebP re-encoded from the decoded pixels; never the uploaded bytes."""
        return self.fingerprint.thumbnail if self.fingerprint else None

    def describe(self) -> dict[str, object]:
        """The query as the JSON API reports it."""
        described: dict[str, object] = {
            "source": self.source,
            "kind": self.kind.name,
            "hash": self.hash_hex,
        }
        if self.kind.name == kinds.DEFAULT_KIND:  # as clients of earlier releases read it
            described[kinds.DEFAULT_KIND] = self.hash_hex
        if self.fingerprint:
            fp = self.fingerprint
            described |= {
                "sha256": fp.sha256,
                "width": fp.width,
                "height": fp.height,
                "format": fp.format,
            }
        if self.source == "url":
            described["url"] = self.label
        return described


@dataclass(frozen=True, slots=True)
class SearchOptions:
    max_distance: int
    sort: str
    domain: str | None
    limit: int
    offset: int


def webp_data_url(webp: bytes | None) -> str | None:
    """A ``data:`` URL for a thumbnail, so a query image needs no route that serves uploads."""
    if not webp:
        return None
    return "data:image/webp;base64," + base64.b64encode(webp).decode("ascii")


def fingerprint_query(data: bytes, **wanted: bool | int) -> Fingerprint:
    """The core fingerprint, with a thumbnail to show the query and its description for the
    robust search, under the site's pixel limit and inside its decode memory budget (the time
    spent waiting for it counts as fingerprint). ``wanted``: what else it should carry, as
    :func:`fingerprint` takes it (``with_features`` and ``feature_limit``, for a picture to keep).
    """
    with timed("fingerprint"):
        return fingerprint(
            data,
            max_pixels=current_app.config["MAX_IMAGE_PIXELS"],
            with_thumbnail=True,
            budget=decode_budget(),
            **{"as_query": True, **wanted},
        )


def query_from_upload(
    upload: FileStorage | None, kind: HashKind, **wanted: bool | int
) -> ImageQuery:
    """An uploaded file (size already capped by ``MAX_CONTENT_LENGTH``)."""
    if upload is None:
        raise BadRequest("no image file was sent")
    data = upload.read()
    name = (upload.filename or "").strip() or "pasted image"
    found = fingerprint_query(data, **wanted)
    return ImageQuery(kind, found.hashes[kind.name], "upload", name, found)


def query_from_url(url: str, kind: HashKind, **wanted: bool | int) -> ImageQuery:
    """Fetch the image server-side, checking every resolved address and redirect first."""
    url = url.strip()
    if not url:
        raise BadRequest("no image URL was given")
    config = current_app.config
    with fetch_slot(), timed("fetch"):
        fetched = fetch(
            url,
            max_bytes=config["FETCH_MAX_BYTES"],
            timeout=config["FETCH_TIMEOUT_SECONDS"],
            max_redirects=config["FETCH_MAX_REDIRECTS"],
            allowed=[ipaddress.ip_address(a) for a in config["FETCH_ALLOWED_ADDRESSES"]],
        )
    found = fingerprint_query(fetched.content, **wanted)
    return ImageQuery(kind, found.hashes[kind.name], "url", url, found)


@contextmanager
def fetch_slot() -> Iterator[None]:
    """One of ``FETCH_MAX_CONCURRENT`` slots for a URL fetch, or 503 with Retry-After at once.

    A fetch may hold its worker thread for the whole fetch timeout; without a bound, a few
    slow servers would hold every thread and the site would stop answering anyone.
    """
    config = current_app.config
    slots = current_app.extensions.setdefault(
        "lookalike_fetch_slots", threading.BoundedSemaphore(config["FETCH_MAX_CONCURRENT"])
    )
    if not slots.acquire(blocking=False):
        raise ServiceUnavailable(
            "too many image URLs are being fetched right now; try again shortly",
            retry_after=math.ceil(config["FETCH_TIMEOUT_SECONDS"]),
        )
    try:
        yield
    finally:
        slots.release()


def query_from_hash(text: str, kind: HashKind) -> ImageQuery:
    try:
        value = kind.from_hex(text)
    except ValueError as error:
        raise BadRequest(str(error)) from None
    return ImageQuery(kind, value, kind.name, kind.to_hex(value))


def kind_option(values: Mapping[str, object]) -> HashKind:
    """The kind of hash to search by: ``kind``, dHash when absent; 400 for an unknown one."""
    try:
        return kinds.get(text_option(values, "kind") or kinds.DEFAULT_KIND, searchable=True)
    except UnknownKind as error:
        raise BadRequest(str(error)) from None


def raw_hash(values: Mapping[str, object], kind: HashKind) -> object:
    """The raw hash a request gives: in the parameter named after its kind, or in ``hash``."""
    return values.get(kind.name) or values.get("hash")


def query_from_request(**wanted: bool | int) -> tuple[dict[str, object], ImageQuery]:
    """(option values, query) from a JSON-API style request: a multipart or urlencoded form
    with an ``image`` file or ``url``/``dhash`` fields, or a JSON object with ``url``/``dhash``
    (``kind`` picks another kind of hash, whose raw form is then named after it). ``wanted``:
    what else an image's fingerprint should carry (see :func:`fingerprint_query`).
    """
    if request.mimetype in ("multipart/form-data", "application/x-www-form-urlencoded"):
        values: dict[str, object] = dict(request.form.items())
        if "image" in request.files:
            image = request.files["image"]
            return values, query_from_upload(image, kind_option(values), **wanted)
    elif request.mimetype == "application/json":
        body = request.get_json(silent=True)
        if not isinstance(body, dict):
            raise BadRequest('the JSON body must be an object such as {"url": "https://…"}')
        values = body
    else:
        raise UnsupportedMediaType(
            "send multipart/form-data with an 'image' file, or JSON with 'url' or 'dhash'"
        )
    kind = kind_option(values)
    url, raw = values.get("url"), raw_hash(values, kind)
    if isinstance(url, str) and url.strip():
        return values, query_from_url(url, kind, **wanted)
    if isinstance(raw, str) and raw.strip():
        return values, query_from_hash(raw, kind)
    raise BadRequest(
        f"give an 'image' file, a 'url' or a '{kind.name}' ({kind.hex_digits} hex digits)"
    )


def parse_search_options(values: Mapping[str, object], *, default_limit: int) -> SearchOptions:
    """``max_distance``, ``sort``, ``domain``, ``limit`` and ``offset`` from form, query or JSON."""
    config = current_app.config
    sort = text_option(values, "sort") or "best"
    if sort not in SORT_ORDERS:
        raise BadRequest(f"sort must be one of {', '.join(SORT_ORDERS)}, not {sort!r}")
    domain = (text_option(values, "domain") or "").lower() or None
    return SearchOptions(
        max_distance=int_option(
            values, "max_distance", config["DEFAULT_MAX_DISTANCE"], config["MAX_DISTANCE_LIMIT"]
        ),
        sort=sort,
        domain=domain,
        limit=int_option(values, "limit", default_limit, config["API_MAX_LIMIT"], minimum=1),
        offset=int_option(values, "offset", 0, 1_000_000),
    )


def search_with(
    query: ImageQuery, options: SearchOptions, *, with_domains: bool = False
) -> SearchPage:
    """One page of matches for these options; its time is the request's database time."""
    with timed("db"):
        return get_store().search_page(
            query.value,
            kind=query.kind.name,
            max_distance=options.max_distance,
            sort=options.sort,
            domain=options.domain,
            limit=options.limit,
            offset=options.offset,
            sightings_per_match=current_app.config["SIGHTINGS_PER_MATCH"],
            with_domains=with_domains,
            robust=query.description,
        )


def text_option(values: Mapping[str, object], name: str) -> str | None:
    """``values[name]`` stripped, None when absent or blank; 400 if JSON sent a non-string."""
    raw = values.get(name)
    if raw is None:
        return None
    if not isinstance(raw, str):
        raise BadRequest(f"{name} must be text, not {raw!r}")
    return raw.strip() or None


def int_option(
    values: Mapping[str, object], name: str, default: int, maximum: int, *, minimum: int = 0
) -> int:
    """``values[name]`` as a whole number in [minimum, maximum]; 400 with the reason if not."""
    raw = values.get(name)
    if raw is None or raw == "":
        return default
    if isinstance(raw, bool):
        raise BadRequest(f"{name} must be a whole number, not {raw!r}")
    try:
        value = int(str(raw).strip())
    except ValueError:
        raise BadRequest(f"{name} must be a whole number, not {raw!r}") from None
    if not minimum <= value <= maximum:
        raise BadRequest(f"{name} must be between {minimum} and {maximum}, got {value}")
    return value
