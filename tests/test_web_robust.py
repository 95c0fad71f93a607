"""The robust search through the site: edited copies of a query image are found, each saying how
it differs from the query (the API's ``relation``, the results page's words, the compare view's
outlines), and what crawlers record while the site runs is found within seconds."""

from __future__ import annotations

import io
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from html import unescape
from urllib.parse import parse_qsl, urlsplit

import pytest
from flask import Flask
from flask.testing import FlaskClient
from PIL import Image, ImageOps

from lookalike.features.orb import QUERY_FEATURES, STORED_FEATURES, LocalFeatures
from lookalike.features.verify import MIN_INLIERS
from lookalike.fingerprint import fingerprint
from lookalike.store import Sighting, Store
from searchweb.queries import fingerprint_query
from tests.images import encode, flat_picture, scene, textured_photo
from tests.web_openapi import assert_matches_openapi

pytest_plugins = ["tests.web_fixtures"]

SEARCH = "/api/search"
INDEX_WAIT_SECONDS = 15  # the site refreshes its feature index every 2 s
ORIGINAL = textured_photo(21, (800, 600))
EDITS: dict[str, Callable[[Image.Image], Image.Image]] = {
    "mirrored": ImageOps.mirror,
    "rotated": lambda image: image.rotate(90, expand=True),  # a quarter turn counterclockwise
    "cropped": lambda image: image.crop((0, 0, round(0.7 * image.width), image.height)),
}


def _jpeg(image: Image.Image) -> bytes:
    return encode(image, "JPEG", quality=88)


def _record(store: Store, image: Image.Image, name: str) -> int:
    """Store ``image`` as a crawler would (features and thumbnail made); its id."""
    data = _jpeg(image)
    found = fingerprint(data, with_thumbnail=True, with_features=True)
    assert len(LocalFeatures.from_bytes(found.features)) == STORED_FEATURES  # textured enough
    seen = datetime(2026, 1, 1, tzinfo=UTC)
    page = f"https://{name}.test/"
    store.record([Sighting(found, f"{page}{name}.jpg", page, name, None, seen)])
    with store.pool.connection() as conn:
        (image_id,) = conn.execute(
            "SELECT id FROM images WHERE sha256 = %s", (found.sha256,)
        ).fetchone()
    return image_id


def _search(client: FlaskClient, image: Image.Image) -> dict:
    response = client.post(SEARCH, data={"image": (io.BytesIO(_jpeg(image)), "query.jpg")})
    assert_matches_openapi(response, SEARCH, "post")
    assert response.status_code == 200
    return response.get_json()


def _match(body: dict, image_id: int) -> dict | None:
    return next((m for m in body["matches"] if m["image_id"] == image_id), None)


def _wait_until_found(client: FlaskClient, query: Image.Image, image_id: int) -> float:
    """Seconds until searching for ``query`` finds ``image_id``; fails after a bounded wait."""
    started = time.monotonic()
    while _match(_search(client, query), image_id) is None:
        assert time.monotonic() - started < INDEX_WAIT_SECONDS, "never found"
        time.sleep(0.2)
    return time.monotonic() - started


@dataclass
class Indexed:
    client: FlaskClient
    ids: dict[str, int]


@pytest.fixture
def indexed(app: Flask, store: Store) -> Indexed:
    """The site over a textured photo and an unrelated one, its feature index caught up."""
    ids = {
        "original": _record(store, ORIGINAL, "original"),
        "unrelated": _record(store, textured_photo(22, (800, 600)), "unrelated"),
    }
    client = app.test_client()
    _wait_until_found(client, EDITS["cropped"](ORIGINAL), ids["original"])
    return Indexed(client, ids)


def test_an_image_recorded_while_the_site_runs_is_found_cropped_within_seconds(
    app: Flask, store: Store
) -> None:
    client = app.test_client()
    assert client.get("/api/stats").status_code == 200  # the site is up, its index built
    cropped = EDITS["cropped"](ORIGINAL)
    assert _search(client, cropped)["total"] == 0
    image_id = _record(store, ORIGINAL, "late")
    assert _wait_until_found(client, cropped, image_id) < 10


@pytest.mark.parametrize("edit", EDITS)
def test_each_edited_copy_finds_the_original_and_says_how_they_differ(
    indexed: Indexed, edit: str
) -> None:
    body = _search(indexed.client, EDITS[edit](ORIGINAL))
    assert _match(body, indexed.ids["unrelated"]) is None
    match = _match(body, indexed.ids["original"])
    assert match is not None, f"the {edit} copy did not find the original"
    relation = match["relation"]
    assert relation["mirrored"] is (edit == "mirrored")
    if edit == "rotated":  # the original is the query turned back, clockwise
        assert relation["rotation"] == pytest.approx(-90, abs=2)
        assert "rotated 90° clockwise" in relation["edits"]
    else:
        assert abs(relation["rotation"]) < 2
    if edit == "cropped":  # the original shows all of the query, and more
        assert relation["method"] == "features" and relation["inliers"] >= MIN_INLIERS
        assert relation["query_overlap_percent"] > 95
        assert relation["target_overlap_percent"] == pytest.approx(70, abs=5)
        assert "the query is 70% of it" in relation["edits"]
    else:
        assert relation["query_overlap_percent"] > 95 and relation["target_overlap_percent"] > 95
    if edit == "mirrored":
        assert relation["edits"] == ["mirrored"]


def test_unrelated_pictures_and_raw_hashes_find_no_edited_copies(indexed: Indexed) -> None:
    assert _search(indexed.client, textured_photo(23, (800, 600)))["total"] == 0
    dhash = fingerprint(_jpeg(ORIGINAL)).hex("dhash")
    response = indexed.client.post(SEARCH, json={"dhash": dhash})
    assert_matches_openapi(response, SEARCH, "post")
    matches = response.get_json()["matches"]
    assert [m["image_id"] for m in matches] == [indexed.ids["original"]]
    assert matches[0]["relation"] is None  # no picture to compare with


def _polygons(html: str) -> list[list[tuple[float, float]]]:
    return [
        [tuple(float(v) for v in point.split(",")) for point in points.split()]
        for points in re.findall(r'<polygon points="([^"]+)"', html)
    ]


def _listed(indexed: Indexed, query: Image.Image, name: str = "original") -> tuple[str, str]:
    """The ``name`` image's item on the results page of a search for ``query`` through the
    form, and the URL of its compare view."""
    results = indexed.client.post(
        "/search",
        data={"image": (io.BytesIO(_jpeg(query)), "query.jpg")},
        follow_redirects=True,
    ).get_data(as_text=True)
    item = results[results.index(f'data-image-id="{indexed.ids[name]}"') :]
    item = item[: item.index("</li>")]
    return item, unescape(re.search(r'class="compare-link" href="([^"]+)"', item).group(1))


def test_results_say_how_a_match_differs_and_compare_outlines_the_shared_part(
    indexed: Indexed,
) -> None:
    item, compare = _listed(indexed, EDITS["cropped"](ORIGINAL))
    assert '<p class="edits">the query is 70% of it</p>' in item
    html = indexed.client.get(compare).get_data(as_text=True)
    assert "local features that agree on one fit" in html
    assert 'id="bits-as-matched"' not in html  # the query's own bits: no view matched
    query_region, match_region = _polygons(html)
    # the whole query (560×600) is outlined on it; on the 800×600 original, its left 70%
    assert min(x for x, _ in query_region) < 10 and max(x for x, _ in query_region) > 550
    assert min(x for x, _ in match_region) < 10
    assert max(x for x, _ in match_region) == pytest.approx(560, abs=20)
    assert max(y for _, y in match_region) == pytest.approx(600, abs=10)
    url = urlsplit(compare)
    args = {name: value for name, value in parse_qsl(url.query) if name != "q"}
    by_hash = indexed.client.get(url.path, query_string=args)  # the query forgotten
    assert by_hash.status_code == 200 and "<polygon" not in by_hash.get_data(as_text=True)


def test_compare_relates_a_copy_found_by_a_view_of_the_query(indexed: Indexed) -> None:
    item, compare = _listed(indexed, EDITS["rotated"](ORIGINAL))
    assert '<p class="edits">rotated 90° clockwise</p>' in item
    html = indexed.client.get(compare).get_data(as_text=True)
    assert '<p class="edits">rotated 90° clockwise</p>' in html and "Found by its dHash" in html
    # the bits compared are the turned view's, the distance the results page gave
    listed = int(re.search(r'data-distance="(\d+)"', item).group(1))
    assert re.search(r"distance <strong>(\d+)</strong>", html).group(1) == str(listed)
    assert listed <= 8 and 'id="bits-as-matched"' in html
    assert sum(" differs" in cell for cell in html.split("<td")) == listed * 2  # both grids
    query_region, match_region = _polygons(html)  # each image whole: 600×800 and 800×600
    assert max(x for x, _ in query_region) == pytest.approx(600, abs=1)
    assert max(y for _, y in query_region) == pytest.approx(800, abs=1)
    assert max(x for x, _ in match_region) == pytest.approx(800, abs=1)
    assert max(y for _, y in match_region) == pytest.approx(600, abs=1)


def test_compare_outlines_the_picture_inside_a_stored_frame(indexed: Indexed, store: Store) -> None:
    """A stored framed graphic (no local features) found by the hash of what is inside its
    frame: the bits compared are those, and the outline on it is the picture, not the frame."""
    picture = flat_picture(3, (800, 600))
    framed = fingerprint(
        _jpeg(ImageOps.expand(picture, (80, 60, 80, 60), fill="white")), with_thumbnail=True
    )
    store.record([Sighting(framed, "https://framed.test/f.jpg", "https://framed.test/")])
    with store.pool.connection() as conn:
        (indexed.ids["framed"],) = conn.execute(
            "SELECT id FROM images WHERE sha256 = %s", (framed.sha256,)
        ).fetchone()
    item, compare = _listed(indexed, picture, "framed")
    assert '<p class="edits">the query is 69% of it</p>' in item
    html = indexed.client.get(compare).get_data(as_text=True)
    listed = int(re.search(r'data-distance="(\d+)"', item).group(1))
    assert re.search(r"distance <strong>(\d+)</strong>", html).group(1) == str(listed)
    assert listed <= 2 and 'id="bits-inside-frame"' in html
    _, match_region = _polygons(html)  # on the 960×720 framed image, the 800×600 inside
    assert min(x for x, _ in match_region) == pytest.approx(80, abs=2)
    assert max(y for _, y in match_region) == pytest.approx(660, abs=2)


def test_a_remembered_query_holds_its_thumbnail_and_description_in_under_45_kb(
    app: Flask,
) -> None:
    """What the query cache keeps per query (QUERY_CACHE_SIZE of them), for a busy picture."""
    with app.test_request_context():
        remembered = fingerprint_query(_jpeg(scene(24, (1600, 1200))))
    features = remembered.query.features
    arrays = [features.upright.points, features.upright.descriptors]
    arrays += [features.mirrored.points, features.mirrored.descriptors]
    assert len(features.upright) == QUERY_FEATURES  # as many as a query keeps
    assert len(remembered.thumbnail) + sum(array.nbytes for array in arrays) < 45_000
