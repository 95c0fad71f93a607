"""`lookalike serve` answers searches while it builds its feature index from PostgreSQL.

The database holds one photo and 200,000 other images with features (tests/filler.py), so
the index takes seconds to build: long enough to search during it. The site is a real
subprocess, queried over loopback HTTP.
"""

from __future__ import annotations

import json
import time
import urllib.request
from collections.abc import Callable

from PIL import Image, ImageOps

from lookalike.fingerprint import fingerprint
from lookalike.store import Sighting, Store
from tests.filler import add_described_images
from tests.images import encode, scene
from tests.served import ServedSite, served_site, upload

FILLER_IMAGES = 200_000
PHOTO = scene(9, (640, 480))
SEARCH_SECONDS = 5.0  # one search's bound while the index is built beside it
BUILD_SECONDS = 120.0


def _fill(store: Store, database_url: str) -> None:
    found = fingerprint(encode(PHOTO, "PNG"), with_thumbnail=True, with_features=True)
    store.record([Sighting(found, "https://pics.test/photo.png", "https://pics.test/")])
    add_described_images(database_url, FILLER_IMAGES)


def _get(site: ServedSite, path: str) -> dict:
    with urllib.request.urlopen(f"{site.url}{path}", timeout=30) as response:
        return json.load(response)


def _search(site: ServedSite, image: Image.Image) -> tuple[list[dict], float]:
    """The matches of an upload to /api/search, and the seconds it took."""
    status, body, seconds = upload(site, encode(image, "PNG"), timeout=30)
    assert status == 200
    return json.loads(body)["matches"], seconds


def _methods(matches: list[dict]) -> list[str]:
    return [match["relation"]["method"] for match in matches]


def _until(done: Callable[[], bool], seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while not done():
        assert time.monotonic() < deadline, "not within the bound"
        time.sleep(0.5)


def test_the_site_searches_while_it_builds_its_feature_index(
    store: Store, database_url: str, cli_env: dict[str, str]
) -> None:
    _fill(store, database_url)
    mirrored = ImageOps.mirror(PHOTO)
    cropped = PHOTO.crop((0, 0, 448, 480))
    with served_site(cli_env, workers=4) as site:  # ready: its first /api/stats started the build
        building = _get(site, "/api/stats")
        assert building["feature_index_images"] < FILLER_IMAGES + 1 == building["images"]
        matches, seconds = _search(site, mirrored)
        assert _methods(matches) == ["hash"] and seconds < SEARCH_SECONDS
        _, seconds = _search(site, cropped)  # answered with what the index holds so far
        assert seconds < SEARCH_SECONDS
        assert _get(site, "/api/stats")["feature_index_images"] < FILLER_IMAGES + 1
        _until(
            lambda: _get(site, "/api/stats")["feature_index_images"] == FILLER_IMAGES + 1,
            BUILD_SECONDS,
        )
        matches, _ = _search(site, cropped)
        assert _methods(matches) == ["features"]
        assert site.alive()
