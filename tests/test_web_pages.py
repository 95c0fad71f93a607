"""The HTML site through Flask's test client: every page, every error page, safe rendering."""

from __future__ import annotations

import base64
import io
import re
from urllib.parse import parse_qs, urlsplit

import pytest
from flask import Flask
from flask.testing import FlaskClient

from lookalike.fingerprint import fingerprint
from tests.images import encode, photo
from tests.web_support import Corpus, ImageServer, Route, jpeg, running_app

pytest_plugins = ["tests.web_fixtures"]


def _upload(
    client: FlaskClient,
    data: bytes,
    name: str = "cat.jpg",
    *,
    follow_redirects: bool = False,
    **fields: object,
):
    return client.post(
        "/search",
        data={"image": (io.BytesIO(data), name), **fields},
        follow_redirects=follow_redirects,
    )


def _match_ids(html: str) -> list[int]:
    return [int(found) for found in re.findall(r'data-image-id="(\d+)"', html)]


def test_home_offers_upload_url_and_counts(client: FlaskClient, corpus: Corpus) -> None:
    html = client.get("/").get_data(as_text=True)
    assert 'type="file"' in html and 'name="url"' in html and 'id="drop-zone"' in html
    assert re.search(r"<strong>5</strong> images on\s+<strong>6</strong> pages", html)


def test_upload_redirects_to_results_with_the_query_as_a_reencoded_thumbnail(
    client: FlaskClient, corpus: Corpus
) -> None:
    posted = _upload(client, corpus.original)
    assert posted.status_code == 303
    target = urlsplit(posted.headers["Location"])
    args = parse_qs(target.query)
    assert target.path == "/search"
    assert args["dhash"] == [fingerprint(corpus.original).hex("dhash")]
    html = client.get(posted.headers["Location"]).get_data(as_text=True)
    assert "4 matching images" in html
    assert sorted(_match_ids(html)) == sorted(
        corpus.ids[name] for name in ("original", "small", "big", "evil")
    )
    shown = re.search(r'class="thumb query-thumb" src="data:image/webp;base64,([^"]+)"', html)
    assert shown, "the query image is shown as a data: URL"
    webp = base64.b64decode(shown.group(1))
    assert webp[:4] == b"RIFF" and webp[8:12] == b"WEBP"
    assert webp != corpus.original
    assert base64.b64encode(corpus.original)[:200].decode() not in html


def test_results_show_distance_similarity_dimensions_and_sightings(
    client: FlaskClient, corpus: Corpus
) -> None:
    html = client.get(f"/search?dhash={fingerprint(corpus.data['small']).hex('dhash')}").get_data(
        as_text=True
    )
    small = html[html.index(f'data-image-id="{corpus.ids["small"]}"') :]
    small = small[: small.index("</li>\n  \n  <li") if "</li>\n  \n  <li" in small else None]
    assert "distance 0" in small and "100% similar" in small and "320×240" in small
    assert '<a class="page-link" href="http://c.test/"' in small
    assert "first seen 2025-03-01" in small
    # no stored thumbnail: the crawled image URL stands in for it
    assert 'src="http://c.test/small.jpg"' in small
    original = html[html.index(f'data-image-id="{corpus.ids["original"]}"') :]
    assert f'src="/thumbnails/{corpus.ids["original"]}.webp"' in original
    assert "3 pages" in original and "A two" in original


@pytest.mark.parametrize(
    ("sort", "first"),
    [("best", "original"), ("newest", "big"), ("oldest", "evil"), ("biggest", "big")],
)
def test_sorting_reorders_the_results(
    client: FlaskClient, corpus: Corpus, sort: str, first: str
) -> None:
    dhash = fingerprint(corpus.original).hex("dhash")
    html = client.get(f"/search?dhash={dhash}&sort={sort}").get_data(as_text=True)
    ids = _match_ids(html)
    assert len(ids) == 4
    expected_first = min(corpus.ids["original"], corpus.ids["evil"], corpus.ids["big"])
    assert ids[0] == (expected_first if sort == "best" else corpus.ids[first])
    assert f'<option value="{sort}" selected>' in html


def test_domain_filter_and_its_menu(client: FlaskClient, corpus: Corpus) -> None:
    dhash = fingerprint(corpus.original).hex("dhash")
    html = client.get(f"/search?dhash={dhash}&domain=c.test").get_data(as_text=True)
    assert _match_ids(html) == [corpus.ids["small"]]
    assert "1 matching image seen on c.test" in html
    assert '<option value="c.test" selected>c.test (1)</option>' in html
    assert '<option value="b.test">b.test (2)</option>' in html
    assert "a.test/1" not in html


def test_pagination_walks_through_every_match_once(app: Flask, corpus: Corpus) -> None:
    app.config["RESULTS_PER_PAGE"] = 3
    client = app.test_client()
    dhash = fingerprint(corpus.original).hex("dhash")
    first = client.get(f"/search?dhash={dhash}").get_data(as_text=True)
    second_url = re.search(r'<a rel="next" href="([^"]+)"', first).group(1).replace("&amp;", "&")
    second = client.get(second_url).get_data(as_text=True)
    assert "Page 1 of 2" in first and "Page 2 of 2" in second
    assert len(_match_ids(first)) == 3 and len(_match_ids(second)) == 1
    assert set(_match_ids(first) + _match_ids(second)) == {
        corpus.ids[n] for n in ("original", "small", "big", "evil")
    }


def test_no_matches_page_says_what_was_searched_and_at_what_radius(
    client: FlaskClient, corpus: Corpus
) -> None:
    html = client.get("/search?dhash=0123456789abcdef&max_distance=6").get_data(as_text=True)
    assert 'id="no-matches"' in html and "0 matching images" in html
    text = re.sub(r"<[^>]+>", "", html)
    assert "within\n    6 bits of dHash 0123456789abcdef" in text
    assert "wider radius (10 bits)" in text


def test_compare_view_shows_both_images_and_their_distance(
    client: FlaskClient, corpus: Corpus
) -> None:
    posted = _upload(client, corpus.original)
    token = parse_qs(urlsplit(posted.headers["Location"]).query)["q"][0]
    dhash = fingerprint(corpus.original).hex("dhash")
    small = corpus.ids["small"]
    html = client.get(f"/compare/{small}?dhash={dhash}&q={token}").get_data(as_text=True)
    distance = bin(
        fingerprint(corpus.original).hashes["dhash"]
        ^ fingerprint(corpus.data["small"]).hashes["dhash"]
    )
    expected = distance.count("1")
    assert f"dHash distance <strong>{expected}</strong> of 64 bits" in html
    assert 'class="thumb query-thumb" src="data:image/webp;base64,' in html
    assert html.count('class="differs') == 0 or html.count(" differs") == 2 * expected
    assert html.count(" differs") == 2 * expected
    assert client.get(f"/compare/999999?dhash={dhash}").status_code == 404


def test_thumbnails_are_served_as_webp_and_missing_ones_are_404(
    client: FlaskClient, corpus: Corpus
) -> None:
    served = client.get(f"/thumbnails/{corpus.ids['original']}.webp")
    assert served.status_code == 200 and served.mimetype == "image/webp"
    assert served.data[8:12] == b"WEBP" and served.headers["X-Content-Type-Options"] == "nosniff"
    assert client.get(f"/thumbnails/{corpus.ids['small']}.webp").status_code == 404


def test_crawled_strings_are_escaped_and_javascript_urls_are_not_links(
    client: FlaskClient, corpus: Corpus
) -> None:
    html = client.get(f"/search?dhash={fingerprint(corpus.original).hex('dhash')}").get_data(
        as_text=True
    )
    assert "javascript:" in html  # shown, as text
    assert not re.search(r"(href|src)=\"\s*javascript:", html, re.IGNORECASE)
    assert "<script>alert" not in html and "&lt;script&gt;alert(&#39;title&#39;)" in html
    assert "<img src=x" not in html and "&#34;&gt;&lt;img src=x onerror=alert(1)&gt;" in html


def test_pages_carry_a_strict_csp_and_no_inline_script_or_style(
    client: FlaskClient, corpus: Corpus
) -> None:
    dhash = fingerprint(corpus.original).hex("dhash")
    for path in ("/", f"/search?dhash={dhash}", f"/compare/{corpus.ids['big']}?dhash={dhash}"):
        response = client.get(path)
        csp = response.headers["Content-Security-Policy"]
        assert "script-src 'self'" in csp and "unsafe-inline" not in csp
        assert "img-src 'self' data: http: https:" in csp
        html = response.get_data(as_text=True)
        assert all(' src="/static/' in tag for tag in re.findall(r"<script[^>]*>", html))
        assert not re.search(r"<[^>]*\s(on[a-z]+|style)=|<style", html, re.IGNORECASE)


def test_search_by_url_through_the_form(database_url: str, corpus: Corpus) -> None:
    with (
        ImageServer({"/copy.jpg": Route(body=corpus.data["small"])}) as server,
        running_app(
            database_url, WTF_CSRF_ENABLED=False, FETCH_ALLOWED_ADDRESSES=["127.0.0.1"]
        ) as app,
    ):
        client = app.test_client()
        posted = client.post("/search", data={"url": server.url("/copy.jpg")})
        html = client.get(posted.headers["Location"]).get_data(as_text=True)
    assert corpus.ids["small"] in _match_ids(html)
    assert 'the image at <q class="query-label">http://127.0.0.1:' in html


@pytest.mark.parametrize(
    ("data", "status", "message"),
    [
        (b"just some text", 400, "not an image"),
        (b"", 400, "empty file"),
        (b"%PDF-1.7 rest", 415, "unsupported format: PDF"),
        (b"<svg xmlns='http://www.w3.org/2000/svg'></svg>", 415, "unsupported format: SVG"),
        (jpeg(3)[:3000], 400, "truncated or corrupt image"),
    ],
)
def test_bad_uploads_get_an_error_page_with_the_reason(
    offline_client: FlaskClient, data: bytes, status: int, message: str
) -> None:
    response = _upload(offline_client, data, "bad.jpg")
    assert response.status_code == status
    assert message in response.get_data(as_text=True)
    assert "Traceback" not in response.get_data(as_text=True)


def test_size_limits_answer_413(database_url: str) -> None:
    with running_app(
        database_url, WTF_CSRF_ENABLED=False, MAX_CONTENT_LENGTH=50_000, MAX_IMAGE_PIXELS=10_000
    ) as app:
        client = app.test_client()
        big_request = _upload(client, encode(photo(4, (800, 600)), "PNG"))
        too_many_pixels = _upload(client, jpeg(5, (200, 200)))
    assert big_request.status_code == 413
    assert too_many_pixels.status_code == 413
    assert "image too large: 200×200 px" in too_many_pixels.get_data(as_text=True)


def test_forms_with_too_many_parts_or_oversized_fields_are_413(offline_client: FlaskClient) -> None:
    many_parts = offline_client.post(
        "/search",
        data={f"field{n}": "x" for n in range(40)},
        content_type="multipart/form-data",
    )
    long_field = offline_client.post("/search", data={"url": "http://a.test/" + "x" * 100_000})
    assert (many_parts.status_code, long_field.status_code) == (413, 413)


@pytest.mark.parametrize(
    ("path", "status", "message"),
    [
        ("/search?dhash=xyz", 400, "not a 64-bit hash"),
        ("/search?dhash=0123456789abcdef&sort=size", 400, "sort must be one of"),
        ("/search?dhash=0123456789abcdef&max_distance=40", 400, "between 0 and 16"),
        ("/search?dhash=0123456789abcdef&page=0", 400, "page must be between 1"),
        ("/compare/1?dhash=nothex", 400, "not a 64-bit hash"),
        ("/no/such/page", 404, "Not Found"),
    ],
)
def test_bad_parameters_get_a_clear_error_page(
    offline_client: FlaskClient, path: str, status: int, message: str
) -> None:
    response = offline_client.get(path)
    assert response.status_code == status and message in response.get_data(as_text=True)


def test_an_empty_form_and_a_wrong_method_are_explained(offline_client: FlaskClient) -> None:
    empty = offline_client.post("/search", data={})
    assert empty.status_code == 400 and "Choose an image file" in empty.get_data(as_text=True)
    wrong = offline_client.put("/search")
    assert wrong.status_code == 405 and "GET" in wrong.headers["Allow"]


def test_refused_urls_get_422(offline_client: FlaskClient) -> None:
    response = offline_client.post(
        "/search", data={"url": "http://169.254.169.254/latest/meta-data/"}
    )
    assert response.status_code == 422
    assert "refused: not a public address" in response.get_data(as_text=True)


def test_the_form_needs_its_csrf_token(database_url: str) -> None:
    with running_app(database_url) as app:
        client = app.test_client()
        forged = _upload(client, jpeg(6))
        home = client.get("/").get_data(as_text=True)
        token = re.search(r'name="csrf_token" value="([^"]+)"', home).group(1)
        genuine = _upload(client, jpeg(6), csrf_token=token)
    assert forged.status_code == 400 and "form expired" in forged.get_data(as_text=True)
    assert genuine.status_code == 303


def test_searches_are_rate_limited_per_client(database_url: str) -> None:
    with running_app(database_url, SEARCH_RATE_LIMIT="2 per minute") as app:
        client = app.test_client()
        statuses = [client.get("/search?dhash=0123456789abcdef").status_code for _ in range(3)]
        other_client = client.get(
            "/search?dhash=0123456789abcdef", environ_base={"REMOTE_ADDR": "10.1.2.3"}
        )
        home = client.get("/")
    assert statuses == [200, 200, 429]
    assert other_client.status_code == 200 and home.status_code == 200


def test_a_search_through_the_form_counts_once(database_url: str) -> None:
    config = {"SEARCH_RATE_LIMIT": "3 per minute", "WTF_CSRF_ENABLED": False}
    with running_app(database_url, **config) as app:
        client = app.test_client()
        shown = [_upload(client, jpeg(seed), follow_redirects=True) for seed in (1, 2, 3)]
        fourth = _upload(client, jpeg(4))
        results_again = client.get(shown[0].request.full_path)  # a reload counts
    assert [page.status_code for page in shown] == [200, 200, 200]
    assert fourth.status_code == 429 and results_again.status_code == 429


def test_behind_a_trusted_proxy_limits_apply_per_forwarded_client(database_url: str) -> None:
    with running_app(database_url, SEARCH_RATE_LIMIT="1 per minute", TRUSTED_PROXIES=1) as app:
        client = app.test_client()
        statuses = [
            client.get(
                "/search?dhash=0123456789abcdef", headers={"X-Forwarded-For": address}
            ).status_code
            for address in ("203.0.113.1", "203.0.113.2", "203.0.113.1")
        ]
    assert statuses == [200, 200, 429]


def test_an_unreachable_database_is_a_503_page(offline_client: FlaskClient) -> None:
    response = offline_client.get("/")
    assert response.status_code == 503
    assert "cannot connect to the database" in response.get_data(as_text=True)


def test_with_trusted_hosts_another_host_is_a_400_not_a_500(database_url: str) -> None:
    with running_app(database_url, TRUSTED_HOSTS=["search.example"], TESTING=False) as app:
        client = app.test_client()
        trusted = client.get("/", headers={"Host": "search.example"})
        page = client.get("/", headers={"Host": "evil.example"})
        api = client.post("/api/search", json={"dhash": "0" * 16}, headers={"Host": "evil.example"})
    assert trusted.status_code == 200
    assert page.status_code == 400 and "not trusted" in page.get_data(as_text=True)
    assert api.status_code == 400 and api.get_json()["error"]["status"] == 400
