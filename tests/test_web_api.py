"""The JSON API: every route and every error status, each response checked against the
OpenAPI document at /api/openapi.json."""

from __future__ import annotations

import io
import json
import os
import secrets
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from importlib import resources

import pytest
import redis
from flask.testing import FlaskClient
from openapi_spec_validator import validate as validate_openapi

from lookalike.fingerprint import ImageRejected, Rejection, fingerprint
from searchweb.errors import http_error_for
from tests.conftest import StubHosts
from tests.crawl_site import wait_for
from tests.images import encode, photo, rejected_samples
from tests.served import served_site
from tests.web_openapi import assert_matches_openapi
from tests.web_support import AcceptRecorder, Corpus, ImageServer, Route, jpeg, running_app

pytest_plugins = ["tests.web_fixtures"]

SEARCH = "/api/search"


def _search_file(client: FlaskClient, data: bytes, **fields: object):
    response = client.post(SEARCH, data={"image": (io.BytesIO(data), "q.jpg"), **fields})
    assert_matches_openapi(response, SEARCH, "post")
    return response


def _search_json(client: FlaskClient, body: object):
    response = client.post(SEARCH, json=body)
    assert_matches_openapi(response, SEARCH, "post")
    return response


def test_the_document_is_valid_openapi_and_lists_every_api_route(
    offline_client: FlaskClient,
) -> None:
    app = offline_client.application
    document = offline_client.get("/api/openapi.json").get_json()
    validate_openapi(document)
    routes = {
        rule.rule.replace("<int:image_id>", "{image_id}")
        for rule in app.url_map.iter_rules()
        if rule.rule.startswith("/api/")
    }
    assert routes == set(document["paths"])


def test_the_document_names_each_key_once() -> None:
    """A JSON reader keeps the last of two same-named keys: a second schema would hide the
    first from every validator without a word."""
    repeated = []

    def keep_repeats(pairs: list[tuple[str, object]]) -> dict[str, object]:
        keys = [key for key, _ in pairs]
        repeated.extend({key for key in keys if keys.count(key) > 1})
        return dict(pairs)

    text = resources.files("searchweb").joinpath("openapi.json").read_text(encoding="utf-8")
    json.loads(text, object_pairs_hook=keep_repeats)
    assert repeated == []


def test_search_by_upload_returns_matches_with_sightings(
    client: FlaskClient, corpus: Corpus
) -> None:
    body = _search_file(client, corpus.original).get_json()
    query = fingerprint(corpus.original)
    assert body["query"]["source"] == "upload"
    assert (body["query"]["dhash"], body["query"]["sha256"]) == (query.hex("dhash"), query.sha256)
    assert body["total"] == 4
    by_id = {m["image_id"]: m for m in body["matches"]}
    original = by_id[corpus.ids["original"]]
    assert (original["distance"], original["similarity"], original["pages"]) == (0, 100, 3)
    assert original["thumbnail_url"] == f"http://localhost/thumbnails/{corpus.ids['original']}.webp"
    assert by_id[corpus.ids["small"]]["thumbnail_url"] == "http://c.test/small.jpg"
    assert [s["page_url"] for s in original["sightings"]] == [
        "http://a.test/1",
        "http://a.test/2",
        "https://b.test/",
    ]
    assert original["sightings"][2]["first_seen"].startswith("2024-03-01")


def test_search_by_dhash_with_sort_filter_and_paging(client: FlaskClient, corpus: Corpus) -> None:
    dhash = fingerprint(corpus.original).hex("dhash")
    newest = _search_json(client, {"dhash": dhash, "sort": "newest", "limit": 2}).get_json()
    assert [m["image_id"] for m in newest["matches"]] == [corpus.ids["big"], corpus.ids["small"]]
    assert newest["total"] == 4
    rest = _search_json(client, {"dhash": dhash, "sort": "newest", "limit": 2, "offset": 2})
    assert [m["image_id"] for m in rest.get_json()["matches"]] == [
        corpus.ids["original"],
        corpus.ids["evil"],
    ]
    on_c = _search_json(client, {"dhash": dhash, "domain": "c.test"}).get_json()
    assert [m["image_id"] for m in on_c["matches"]] == [corpus.ids["small"]]
    assert on_c["query"]["domain"] == "c.test"
    tight = _search_json(client, {"dhash": dhash, "max_distance": 0}).get_json()
    assert corpus.ids["small"] not in [m["image_id"] for m in tight["matches"]]


def test_multipart_fields_work_like_json_ones(client: FlaskClient, corpus: Corpus) -> None:
    dhash = fingerprint(corpus.original).hex("dhash")
    response = client.post(SEARCH, data={"dhash": dhash, "sort": "biggest", "limit": "1"})
    assert_matches_openapi(response, SEARCH, "post")
    assert [m["image_id"] for m in response.get_json()["matches"]] == [corpus.ids["big"]]


def test_search_by_url_fetches_from_a_local_image_server(database_url: str, corpus: Corpus) -> None:
    with (
        ImageServer({"/c.jpg": Route(body=corpus.data["small"])}) as server,
        running_app(database_url, FETCH_ALLOWED_ADDRESSES=["127.0.0.1"]) as app,
    ):
        response = _search_json(app.test_client(), {"url": server.url("/c.jpg")})
    body = response.get_json()
    assert body["query"]["source"] == "url" and body["query"]["url"] == server.url("/c.jpg")
    assert corpus.ids["small"] in [m["image_id"] for m in body["matches"]]
    assert server.requests == [("/c.jpg", f"127.0.0.1:{server.port}")]


def test_image_and_stats(client: FlaskClient, corpus: Corpus) -> None:
    image = client.get(f"/api/images/{corpus.ids['evil']}")
    assert_matches_openapi(image, "/api/images/{image_id}")
    body = image.get_json()
    assert body["format"] == "PNG" and body["thumbnail_url"] is None  # javascript: is no URL
    assert body["sightings"][0]["page_url"] == "javascript:alert('page')"  # data, not a link
    missing = client.get("/api/images/999999")
    assert_matches_openapi(missing, "/api/images/{image_id}")
    assert missing.status_code == 404
    stats = client.get("/api/stats")
    assert_matches_openapi(stats, "/api/stats")
    assert (stats.get_json()["images"], stats.get_json()["pages"]) == (5, 6)


@pytest.mark.parametrize(
    ("data", "status", "message"),
    [
        (b"hello", 400, "not an image"),
        (b"%PDF-1.4", 415, "unsupported format: PDF"),
        (b"8BPS\x00\x01rest-of-a-psd", 415, "unsupported format: PSD"),
    ],
)
def test_bad_images_get_json_errors(
    offline_client: FlaskClient, data: bytes, status: int, message: str
) -> None:
    response = _search_file(offline_client, data)
    assert response.status_code == status
    assert response.get_json()["error"]["message"].startswith(message)


# The status of each kind of rejected image, as the API document promises them.
REJECTION_STATUS = {
    Rejection.EMPTY_FILE: 400,
    Rejection.NOT_AN_IMAGE: 400,
    Rejection.UNSUPPORTED_FORMAT: 415,
    Rejection.CORRUPT: 400,
    Rejection.TRUNCATED_OR_CORRUPT: 400,
    Rejection.TOO_LARGE: 413,
    Rejection.TOO_LONG: 413,
    Rejection.EMPTY_IMAGE: 400,
    Rejection.TOO_MANY_JPEG_SCANS: 400,
    Rejection.RLE_BMP_TOO_LARGE: 400,
    Rejection.TOO_MANY_PNG_CHUNKS: 400,
    Rejection.NO_SUCH_FILE: 400,
    Rejection.UNREADABLE: 400,
}


def test_every_kind_of_rejected_image_has_its_status(offline_client: FlaskClient) -> None:
    assert set(REJECTION_STATUS) == set(Rejection)  # a new kind must be given its status
    for kind, data in rejected_samples().items():
        response = _search_file(offline_client, data)
        assert response.status_code == REJECTION_STATUS[kind], kind
        assert response.get_json()["error"]["message"].split(":")[0] == kind, kind
    for kind in set(Rejection) - set(rejected_samples()):  # no upload earns these
        assert http_error_for(ImageRejected(kind)).code == REJECTION_STATUS[kind], kind


def test_too_large_requests_and_images_are_413(database_url: str) -> None:
    with running_app(database_url, MAX_CONTENT_LENGTH=50_000, MAX_IMAGE_PIXELS=10_000) as app:
        client = app.test_client()
        too_long = _search_file(client, encode(photo(4, (800, 600)), "PNG"))
        too_many_pixels = _search_file(client, jpeg(5, (200, 200)))
    assert too_long.status_code == 413 and too_many_pixels.status_code == 413
    assert "200×200" in too_many_pixels.get_json()["error"]["message"]


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({}, "give an 'image' file, a 'url' or a 'dhash'"),
        ([1, 2], "must be an object"),
        ({"dhash": "zz"}, "not a 64-bit hash"),
        ({"dhash": "0123456789abcdef", "limit": 0}, "limit must be between 1 and 100"),
        ({"dhash": "0123456789abcdef", "limit": True}, "limit must be a whole number"),
        ({"dhash": "0123456789abcdef", "max_distance": "ten"}, "max_distance must be a whole"),
        ({"dhash": "0123456789abcdef", "sort": "random"}, "sort must be one of"),
        ({"dhash": "0123456789abcdef", "sort": ["best"]}, "sort must be text"),
        ({"dhash": "0123456789abcdef", "domain": ["a.test"]}, "domain must be text"),
        ({"dhash": "0123456789abcdef", "domain": {"a": 1}}, "domain must be text"),
        ({"dhash": "0123456789abcdef", "limit": 1e400}, "limit must be a whole number"),
        ({"dhash": "0123456789abcdef", "offset": 10**30}, "offset must be between 0"),
    ],
)
def test_bad_parameters_are_400_with_the_reason(
    offline_client: FlaskClient, body: object, message: str
) -> None:
    response = _search_json(offline_client, body)
    assert response.status_code == 400 and message in response.get_json()["error"]["message"]


def test_unparseable_json_and_other_content_types(offline_client: FlaskClient) -> None:
    broken = offline_client.post(SEARCH, data="{not json", content_type="application/json")
    assert_matches_openapi(broken, SEARCH, "post")
    assert broken.status_code == 400
    text = offline_client.post(SEARCH, data="dhash=1", content_type="text/plain")
    assert_matches_openapi(text, SEARCH, "post")
    assert text.status_code == 415


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("http://127.0.0.1:9/x.jpg", "refused: not a public address (host '127.0.0.1')"),
        ("http://10.1.1.1/x.jpg", "refused: not a public address"),
        ("file:///etc/passwd", "only http and https"),
    ],
)
def test_refused_urls_are_422(offline_client: FlaskClient, url: str, message: str) -> None:
    response = _search_json(offline_client, {"url": url})
    assert response.status_code == 422 and message in response.get_json()["error"]["message"]


def test_refusals_never_tell_what_an_internal_name_resolves_to(
    offline_client: FlaskClient, stub_hosts: StubHosts
) -> None:
    stub_hosts({"db": [["10.9.8.7"]]})
    response = _search_json(offline_client, {"url": "http://db:5432/x.jpg"})
    message = response.get_json()["error"]["message"]
    assert response.status_code == 422 and message == "refused: not a public address (host 'db')"


def test_search_by_url_never_connects_to_a_refused_address(database_url: str) -> None:
    """End to end: a direct URL and a redirect to 127.0.0.2 are refused, and nothing arrives."""
    with (
        AcceptRecorder("127.0.0.2") as forbidden,
        ImageServer({"/r.jpg": Route(302, headers={"Location": forbidden.url()})}) as server,
        running_app(database_url, FETCH_ALLOWED_ADDRESSES=["127.0.0.1"]) as app,
    ):
        client = app.test_client()
        direct = _search_json(client, {"url": forbidden.url()})
        redirected = _search_json(client, {"url": server.url("/r.jpg")})
    for response in (direct, redirected):
        assert response.status_code == 422
        assert "refused: not a public address" in response.get_json()["error"]["message"]
    assert server.requests == [("/r.jpg", f"127.0.0.1:{server.port}")]
    assert forbidden.accepted == 0


def test_unexpected_failures_are_a_500_without_a_traceback(
    offline_client: FlaskClient,
) -> None:
    def broken() -> None:
        raise RuntimeError("secret internal detail")

    offline_client.application.add_url_rule("/api/broken", view_func=broken)
    response = offline_client.get("/api/broken")
    assert response.status_code == 500
    assert response.get_json()["error"]["message"].startswith("something went wrong")
    assert b"secret internal detail" not in response.data and b"Traceback" not in response.data


def test_unfetchable_urls_are_422_and_oversized_ones_413(database_url: str) -> None:
    routes = {"/gone.jpg": Route(404), "/huge.jpg": Route(body=b"x" * 5000)}
    with (
        ImageServer(routes) as server,
        running_app(
            database_url, FETCH_ALLOWED_ADDRESSES=["127.0.0.1"], FETCH_MAX_BYTES=1000
        ) as app,
    ):
        client = app.test_client()
        gone = _search_json(client, {"url": server.url("/gone.jpg")})
        huge = _search_json(client, {"url": server.url("/huge.jpg")})
    assert gone.status_code == 422 and "answered 404" in gone.get_json()["error"]["message"]
    assert huge.status_code == 413


def test_api_needs_no_csrf_token_and_sets_no_cookie(database_url: str) -> None:
    with running_app(database_url) as app:  # CSRF on, as in production
        response = app.test_client().post(SEARCH, json={"dhash": "0123456789abcdef"})
    assert response.status_code == 200 and "Set-Cookie" not in response.headers


def test_unknown_api_paths_and_methods_are_json(offline_client: FlaskClient) -> None:
    missing = offline_client.get("/api/nothing")
    assert missing.status_code == 404 and missing.get_json()["error"]["status"] == 404
    wrong = offline_client.get(SEARCH)
    assert wrong.status_code == 405 and wrong.get_json()["error"]["title"] == "Method Not Allowed"


def test_rate_limit_is_429_json_per_client(database_url: str) -> None:
    with running_app(database_url, SEARCH_RATE_LIMIT="2 per minute") as app:
        client = app.test_client()
        responses = [_search_json(client, {"dhash": "0123456789abcdef"}) for _ in range(3)]
    assert [r.status_code for r in responses] == [200, 200, 429]
    assert responses[2].get_json()["error"]["status"] == 429
    assert int(responses[2].headers["Retry-After"]) > 0
    assert "Retry-After" not in responses[0].headers  # only a refusal says when to come back


def test_rate_limits_can_be_switched_off(database_url: str) -> None:
    with running_app(
        database_url, SEARCH_RATE_LIMIT="1 per minute", RATELIMIT_ENABLED=False
    ) as app:
        client = app.test_client()
        statuses = [
            client.post(SEARCH, json={"dhash": "0123456789abcdef"}).status_code for _ in range(3)
        ]
    assert statuses == [200, 200, 200]


def test_rate_limits_are_shared_through_redis_when_configured(database_url: str) -> None:
    storage = os.environ.get("LOOKALIKE_TEST_REDIS", "redis://127.0.0.1:6379/0")
    try:
        redis.Redis.from_url(storage, socket_connect_timeout=1).ping()
    except redis.RedisError:
        pytest.skip(f"no Redis at {storage}")
    config = {
        "SEARCH_RATE_LIMIT": "3 per minute",
        "RATELIMIT_STORAGE_URI": storage,
        "RATELIMIT_KEY_PREFIX": f"lookalike-test-{secrets.token_hex(4)}",
    }
    with (
        running_app(database_url, **config) as first,
        running_app(database_url, **config) as second,
    ):
        statuses = [
            app.test_client().post(SEARCH, json={"dhash": "0123456789abcdef"}).status_code
            for app in (first, second, first, second)
        ]
    assert statuses == [200, 200, 200, 429]  # two processes' worth of apps, one budget


def _post_json(url: str, body: object) -> tuple[int, dict[str, str], dict, float]:
    """(status, headers, JSON body, seconds) of a POST to a real server."""
    request = urllib.request.Request(
        url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"}
    )
    started = time.monotonic()
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            status, headers, data = response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as error:
        status, headers, data = error.code, dict(error.headers), error.read()
    return status, headers, json.loads(data), time.monotonic() - started


def test_slow_image_servers_hold_only_a_few_threads_each_for_the_fetch_timeout(
    cli_env: dict[str, str],
) -> None:
    """Two fetches from a server dripping a byte every 0.5 s take both fetch slots; a third
    search by URL is told to come back (503, Retry-After) at once, other requests are answered,
    and the two end at their 3 s deadline."""
    settings = {
        "LOOKALIKE_FETCH_ALLOWED_ADDRESSES": '["127.0.0.1"]',
        "LOOKALIKE_FETCH_TIMEOUT_SECONDS": "3",
        "LOOKALIKE_FETCH_MAX_CONCURRENT": "2",
    }
    drip = b"HTTP/1.1 200 OK\r\nX-Slow: " + b"a" * 200
    with (
        AcceptRecorder("127.0.0.1", drip=drip) as dripping,
        served_site(cli_env, workers=4, extra_env=settings) as site,
        ThreadPoolExecutor(2) as pool,
    ):
        slow = [pool.submit(_post_json, site.url + SEARCH, {"url": dripping.url()}) for _ in "ab"]
        wait_for(lambda: dripping.accepted == 2, timeout=10)
        refused = _post_json(site.url + SEARCH, {"url": dripping.url()})
        stats = urllib.request.urlopen(site.url + "/api/stats", timeout=2)
        held = [future.result() for future in slow]
    assert refused[0] == 503 and refused[1]["Retry-After"] == "3" and refused[3] < 1
    assert "too many image URLs" in refused[2]["error"]["message"]
    assert stats.status == 200
    for status, _, body, seconds in held:
        assert status == 422 and body["error"]["message"].endswith("timed out") and seconds < 5
    assert dripping.accepted == 2


def test_the_served_site_refuses_names_resolving_to_6to4_loopback(
    cli_env: dict[str, str], stub_hosts: StubHosts
) -> None:
    """``lookalike serve`` resolves ``rebind.test`` through the stub to 2002:7f00:1:: (6to4 of
    127.0.0.1): refused without a connect, which the connection guard would have recorded."""
    names = stub_hosts({"rebind.test": [["2002:7f00:1::"]], "nat64.test": [["64:ff9b::a9fe:a9fe"]]})
    with served_site(cli_env, extra_env=names) as site:
        answers = [
            _post_json(site.url + SEARCH, {"url": f"http://{host}/x.jpg"})
            for host in ("rebind.test", "nat64.test")
        ]
    assert [(status, body["error"]["message"]) for status, _, body, _ in answers] == [
        (422, "refused: not a public address (host 'rebind.test')"),
        (422, "refused: not a public address (host 'nat64.test')"),
    ]
