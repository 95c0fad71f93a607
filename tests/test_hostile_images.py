"""Hostile images at every entry point, and what they cost a real `lookalike serve`.

Each file is small on the wire; what it declares is not. The site must answer a documented
status quickly, keep each decode within the bound the fingerprint path states (6 bytes a pixel
plus 48 MB; nothing for a file refused on its header), keep all decodes together within
``DECODE_MEMORY_MB``, and give the memory back afterwards.
"""

from __future__ import annotations

import io
from concurrent.futures import ThreadPoolExecutor
from functools import cache

import pytest
from flask.testing import FlaskClient
from PIL import Image

from tests.images import CORRUPT_PNGS, declared_png, encode, photo
from tests.served import ServedSite, served_site, upload
from tests.web_support import ImageServer, Route, running_app

TOO_LONG = {
    "50000000x1 gray": declared_png(50_000_000, 1),
    "2x25000000 gray": declared_png(2, 25_000_000),
    "1x2000000 gray": declared_png(1, 2_000_000),
}
HOSTILE = {**TOO_LONG, **CORRUPT_PNGS}
STATUS = {name: 413 if name in TOO_LONG else 400 for name in HOSTILE}
RGBA_49_MP = declared_png(7000, 7000, colour_type=6)
DECODE_BOUND_MB = 7000 * 7000 * 6 / 2**20 + 48  # the fingerprint path's own bound: 328 MB


@cache
def progressive_49_mp_jpeg() -> bytes:
    """Drafted to a small size, but libjpeg keeps all 49 M × 3 coefficients until the last scan."""
    gradient = Image.linear_gradient("L").resize((7000, 7000)).convert("RGB")
    return encode(gradient, "JPEG", progressive=True, subsampling=0)


def webp_25_mp() -> bytes:
    """36 bytes; Pillow's WebP decoder holds 16 bytes a pixel: 429 MB reserved, 369 MB used."""
    return encode(Image.new("RGB", (5000, 5000), "red"), "WEBP", lossless=True, method=0)


# What each upload is, and the bound its decode reserves from the 512 MB budget (MB).
BIG_UPLOADS = {
    "49 MP RGBA PNG": (lambda: RGBA_49_MP, DECODE_BOUND_MB),
    "49 MP progressive JPEG": (progressive_49_mp_jpeg, DECODE_BOUND_MB),
    "25 MP WebP": (webp_25_mp, 5000 * 5000 * 16 / 2**20 + 48),
}


def _post_image(client: FlaskClient, path: str, data: bytes):
    return client.post(path, data={"image": (io.BytesIO(data), "hostile.png")})


@pytest.mark.parametrize("name", HOSTILE)
def test_every_entry_point_answers_a_documented_status(database_url: str, name: str) -> None:
    data = HOSTILE[name]
    with (
        ImageServer({"/hostile.png": Route(body=data)}) as images,
        running_app(
            database_url, WTF_CSRF_ENABLED=False, FETCH_ALLOWED_ADDRESSES=["127.0.0.1"]
        ) as app,
    ):
        client = app.test_client()
        answers = {
            "api search": _post_image(client, "/api/search", data),
            "api check": _post_image(client, "/api/check", data),
            "form": _post_image(client, "/search", data),
            "search by URL": client.post("/api/search", json={"url": images.url("/hostile.png")}),
        }
    for entry_point, response in answers.items():
        assert response.status_code == STATUS[name], entry_point
        text = response.get_data(as_text=True)
        assert ("image too long" if name in TOO_LONG else "truncated or corrupt image") in text


@pytest.fixture
def site(cli_env: dict[str, str]):
    """A served site that has searched on each of its 8 threads once: libraries, database
    connections and per-thread buffers are in its baseline, not in what a test measures."""
    with served_site(cli_env, workers=8) as served:
        small = encode(photo(1), "PNG")
        with ThreadPoolExecutor(8) as clients:
            assert {
                status for status, _, _ in clients.map(upload, [served] * 16, [small] * 16)
            } == {200}
        yield served


def test_tiny_hostile_files_raise_the_peak_by_less_than_100_mb(site: ServedSite) -> None:
    for name, data in HOSTILE.items():
        site.reset_peak()
        before = site.rss_mb
        status, _, seconds = upload(site, data)
        assert (status, name) == (STATUS[name], name)
        assert seconds < 10, name
        assert site.peak_rss_mb - before < 100, name
    assert site.alive()


def test_a_49_mp_rgba_png_stays_within_the_decode_bound_and_memory_comes_back(
    site: ServedSite,
) -> None:
    baseline = site.rss_mb
    site.reset_peak()
    status, _, seconds = upload(site, RGBA_49_MP)
    assert status == 200
    assert seconds < 30
    assert site.peak_rss_mb - baseline < DECODE_BOUND_MB + 30  # + the request and its upload
    assert site.rss_mb - baseline < 50


@pytest.mark.parametrize("name", BIG_UPLOADS)
def test_eight_concurrent_big_uploads_share_the_decode_budget(site: ServedSite, name) -> None:
    build, bound_mb = BIG_UPLOADS[name]
    data = build()
    baseline = site.rss_mb
    site.reset_peak()
    with ThreadPoolExecutor(8) as clients:
        answers = list(clients.map(upload, [site] * 8, [data] * 8))
    assert [status for status, _, _ in answers] == [200] * 8
    assert max(seconds for _, _, seconds in answers) < 60
    # Each decode reserves over half of the 512 MB budget, so they run one at a time.
    assert site.peak_rss_mb - baseline < bound_mb + 60
    assert site.rss_mb - baseline < 50
