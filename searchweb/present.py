"""How stored matches are shown: similarity, safe links, thumbnail URLs, JSON shapes.

Crawled strings are untrusted. Jinja escapes them, but escaping does not stop
``href="javascript:…"``, so only http and https URLs ever become links or image sources.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from urllib.parse import urlsplit

from flask import Flask, url_for

from lookalike import kinds
from lookalike.kinds import HashKind
from lookalike.store import Match, RankedMatch, StoredImage


def is_web_url(url: object) -> bool:
    """True for absolute http(s) URLs with a host: the only URLs rendered as links."""
    if not isinstance(url, str):
        return False
    try:
        parts = urlsplit(url.strip())
    except ValueError:
        return False
    return parts.scheme.lower() in ("http", "https") and bool(parts.hostname)


def similarity(distance: int, bits: int) -> int:
    """Distance in bits → percentage of the hash's bits (64 for dHash) that agree."""
    return round(100 * (bits - distance) / bits)


def thumbnail_url(image: Match | StoredImage, *, external: bool = False) -> str | None:
    """Our stored thumbnail, else the first web image URL it was seen at, else None."""
    if getattr(image, "has_thumbnail", False):
        return url_for("pages.thumbnail", image_id=image.image_id, _external=external)
    return next((s.image_url for s in image.sightings if is_web_url(s.image_url)), None)


def distinct_pages(image: Match | StoredImage) -> int:
    if isinstance(image, RankedMatch):
        return image.pages
    return len({s.page_url for s in image.sightings})


def match_json(match: RankedMatch, kind: HashKind) -> dict[str, object]:
    return {
        "image_id": match.image_id,
        "distance": match.distance,
        "similarity": similarity(match.distance, kind.bits),
        "sha256": match.sha256,
        "width": match.width,
        "height": match.height,
        "format": match.format,
        "pages": match.pages,
        "first_seen": _iso(match.first_seen),
        "thumbnail_url": thumbnail_url(match, external=True),
        "relation": match.relation.to_json() if match.relation else None,
        "sightings": [s.to_json() for s in match.sightings],
    }


def image_json(image: StoredImage) -> dict[str, object]:
    return {
        "image_id": image.image_id,
        "sha256": image.sha256,
        **{name: kinds.get(name).to_hex(value) for name, value in image.hashes.items()},
        "width": image.width,
        "height": image.height,
        "format": image.format,
        "first_seen": _iso(image.first_seen),
        "thumbnail_url": thumbnail_url(image, external=True),
        "sightings": [s.to_json() for s in image.sightings],
    }


def svg_points(polygon: Sequence[tuple[float, float]]) -> str:
    """A polygon as an SVG ``points`` attribute: ``"0.0,0.0 448.0,0.0 …"``."""
    return " ".join(f"{x:.1f},{y:.1f}" for x, y in polygon)


def register_template_helpers(app: Flask) -> None:
    app.jinja_env.tests["web_url"] = is_web_url
    app.jinja_env.filters["similarity"] = similarity
    app.jinja_env.filters["svg_points"] = svg_points
    app.jinja_env.filters["day"] = lambda moment: moment.strftime("%Y-%m-%d") if moment else ""
    app.jinja_env.globals.update(thumbnail_url=thumbnail_url, distinct_pages=distinct_pages)


def _iso(moment: datetime | None) -> str | None:
    return moment.isoformat() if moment else None
