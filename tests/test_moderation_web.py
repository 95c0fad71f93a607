"""The moderation blueprints via Flask's test client: check, keyed writes, pages, concurrency."""

from __future__ import annotations

import hashlib
import io
import random
import re
from collections.abc import Iterator

import pytest
from flask import Flask
from flask.testing import FlaskClient
from PIL import ImageOps

from benchmarks.moderation import disguises
from lookalike.features.orb import BANK_FEATURES, DESCRIPTOR_BYTES
from lookalike.features.verify import MIN_INLIERS
from lookalike.fingerprint import fingerprint
from lookalike.hashes import hash_to_hex
from lookalike.store.db import connect
from tests.concurrency import check_while_flagging
from tests.images import encode, photo, textured_photo
from tests.test_banks import BANNED
from tests.web_openapi import assert_matches_openapi
from tests.web_support import Corpus, ImageServer, Route, running_app

pytest_plugins = ["tests.web_fixtures"]

KEY = "amy-secret-key-0123456789"
OTHER_KEY = "bob-secret-key-9876543210"
KEYS = {
    "amy": hashlib.sha256(KEY.encode()).hexdigest(),
    "bob": hashlib.sha256(OTHER_KEY.encode()).hexdigest(),
}
AMY = {"Authorization": f"Bearer {KEY}"}
ORIGINAL = photo(41)
COPIES = {
    "resized": encode(ORIGINAL.resize((320, 240)), "JPEG"),
    "JPEG quality 30": encode(ORIGINAL, "JPEG", quality=30),
    "grayscale": encode(ORIGINAL.convert("L"), "PNG"),
    "1-px border": encode(ImageOps.expand(ORIGINAL, border=1, fill="black"), "PNG"),
}


@pytest.fixture
def moderated(database_url: str) -> Iterator[Flask]:
    with running_app(database_url, WTF_CSRF_ENABLED=False, MODERATOR_KEYS=KEYS) as made:
        yield made


@pytest.fixture
def web(moderated: Flask) -> FlaskClient:
    return moderated.test_client()


def _post(client: FlaskClient, path: str, *, headers=None, image: bytes | None = None, **body):
    if image is not None:
        body = {"image": (io.BytesIO(image), "upload.jpg"), **body}
        response = client.post(path, data=body, headers=headers)
    else:
        response = client.post(path, json=body, headers=headers)
    assert_matches_openapi(response, path, "post")
    return response


def _flag(client: FlaskClient, image: bytes, **fields: object) -> dict:
    response = _post(client, "/api/flag", headers=AMY, image=image, **fields)
    assert response.status_code == 201, response.get_json()
    return response.get_json()["entry"]


def test_check_finds_flagged_copies_and_tells_strangers_only_bank_reason_time(
    web: FlaskClient,
) -> None:
    entry = _flag(web, encode(ORIGINAL), bank="banned", reason="spam")
    assert (entry["bank"], entry["reason"], entry["flagged_by"]) == ("banned", "spam", "amy")

    for name, data in COPIES.items():
        body = _post(web, "/api/check", image=data).get_json()
        assert body["flagged"] is True, name
        (match,) = body["matches"]
        assert set(match) == {"bank", "reason", "flagged_at", "relation"}
        assert (match["bank"], match["reason"], match["flagged_at"]) == (
            "banned",
            "spam",
            entry["flagged_at"],
        )
    for seed in (42, 43, 44):
        clean = _post(web, "/api/check", image=encode(photo(seed)))
        assert clean.get_json() == {"flagged": False, "matches": []}


def test_check_catches_disguised_reuploads_of_a_flagged_upload_until_it_is_unflagged(
    web: FlaskClient,
) -> None:
    entry = _flag(web, encode(BANNED, "PNG"), reason="banned")
    # a flagged picture keeps more features than a crawled one
    assert _stored_feature_bytes(web) == [5 + BANK_FEATURES * (4 + DESCRIPTOR_BYTES)]
    made = disguises()
    for name, make in made.items():
        body = _post(web, "/api/check", image=make(BANNED)).get_json()
        assert body["flagged"] is True, name
        (match,) = body["matches"]
        assert "inliers" not in match["relation"] and "distance" not in match, name
    cropped = made["crop centre 60%"](BANNED)
    (keyed,) = _post(web, "/api/check", headers=AMY, image=cropped).get_json()["matches"]
    assert keyed["entry_id"] == entry["id"]
    assert (keyed["relation"]["method"], keyed["relation"]["inliers"] >= MIN_INLIERS) == (
        "features",
        True,
    )
    unrelated = _post(web, "/api/check", image=encode(textured_photo(81), "PNG")).get_json()
    assert unrelated == {"flagged": False, "matches": []}

    _post(web, "/api/unflag", headers=AMY, entry_id=entry["id"])
    for name, make in made.items():
        assert _post(web, "/api/check", image=make(BANNED)).get_json()["flagged"] is False, name


def test_check_by_dhash_with_bank_and_radius_options(web: FlaskClient) -> None:
    base = 0x0F0F_F0F0_1234_ABCD
    _post(web, "/api/flag", headers=AMY, dhash=hash_to_hex(base), bank="copyright")
    near = hash_to_hex(base ^ 0b1111)  # 4 bits away

    keyed = _post(web, "/api/check", headers=AMY, dhash=near).get_json()["matches"][0]
    assert (keyed["distance"], keyed["bank"]) == (4, "copyright") and keyed["entry_id"] > 0
    narrow = _post(web, "/api/check", headers=AMY, dhash=near, max_distance=3)
    assert narrow.get_json()["flagged"] is False
    assert _post(web, "/api/check", dhash=near, bank="copyright").get_json()["flagged"] is True

    unknown = _post(web, "/api/check", dhash=near, bank="nope")
    assert (unknown.status_code, unknown.get_json()["error"]["message"]) == (
        404,
        "no bank named 'nope'",
    )
    assert _post(web, "/api/check", headers=AMY, dhash=near, max_distance=15).status_code == 400
    assert _post(web, "/api/check", dhash="xyz").status_code == 400
    assert _post(web, "/api/check").status_code == 400
    assert web.post("/api/check", data="x", content_type="text/plain").status_code == 415


def test_every_write_and_every_listing_needs_a_valid_key(web: FlaskClient) -> None:
    _flag(web, encode(ORIGINAL), bank="banned")
    attempts = [
        ("post", "/api/flag", {"json": {"dhash": "00ff00ff00ff00ff"}}),
        ("post", "/api/unflag", {"json": {"entry_id": 1}}),
        ("get", "/api/banks", {}),
        ("get", "/api/entries", {"query_string": {"bank": "banned"}}),
    ]
    wrong_keys = [
        {},
        {"Authorization": "Bearer not-a-key"},
        {"Authorization": f"Bearer {KEYS['amy']}"},  # the stored digest is not a key
        {"Authorization": f"Basic {KEY}"},
    ]
    with web.session_transaction() as session:  # a logged-in page session is not enough
        session["moderator"] = "amy"
    for method, path, options in attempts:
        for headers in wrong_keys:
            response = getattr(web, method)(path, headers=headers, **options)
            assert response.status_code == 401, (path, headers)
            assert response.headers["WWW-Authenticate"].lower().startswith("bearer")
            assert_matches_openapi(response, path, method)
    listed = web.get("/api/entries", headers=AMY, query_string={"bank": "banned"}).get_json()
    assert [(e["active"], e["dhash"]) for e in listed["entries"]] == [
        (True, fingerprint(encode(ORIGINAL)).hex("dhash"))
    ]
    banks = web.get("/api/banks", headers={"Authorization": f"Bearer {OTHER_KEY}"})
    assert [b["name"] for b in banks.get_json()["banks"]] == ["banned"]


def test_unflag_by_api_disables_and_keeps_history(web: FlaskClient) -> None:
    entry = _flag(web, encode(ORIGINAL), reason="mistake")
    copy = COPIES["JPEG quality 30"]
    assert _post(web, "/api/check", image=copy).get_json()["flagged"] is True

    body = _post(web, "/api/unflag", headers=AMY, entry_id=entry["id"]).get_json()

    (disabled,) = body["disabled"]
    assert (disabled["id"], disabled["active"], disabled["disabled_by"]) == (
        entry["id"],
        False,
        "amy",
    )
    assert _post(web, "/api/check", image=copy).get_json()["flagged"] is False
    assert _post(web, "/api/unflag", headers=AMY, entry_id=entry["id"]).get_json() == {
        "disabled": []
    }
    again = _post(web, "/api/unflag", headers=AMY, dhash="zz")
    assert again.status_code == 400


def test_flag_by_url_and_by_stored_image_id(database_url: str, corpus: Corpus) -> None:
    with (
        ImageServer({"/ban.jpg": Route(body=encode(ORIGINAL))}) as server,
        running_app(
            database_url,
            MODERATOR_KEYS=KEYS,
            FETCH_ALLOWED_ADDRESSES=["127.0.0.1"],
        ) as app,
    ):
        client = app.test_client()
        by_url = _post(client, "/api/flag", headers=AMY, url=server.url("/ban.jpg"))
        assert by_url.status_code == 201
        by_id = _post(client, "/api/flag", headers=AMY, image_id=corpus.ids["small"], bank="b")
        assert by_id.get_json()["entry"]["image_id"] == corpus.ids["small"]
        twice = _post(client, "/api/flag", headers=AMY, image_id=corpus.ids["small"], bank="b")
        assert (twice.status_code, twice.get_json()["created"]) == (200, False)
        missing = _post(client, "/api/flag", headers=AMY, image_id=999_999)
        assert missing.status_code == 404
        bad_bank = _post(client, "/api/flag", headers=AMY, dhash="00ff00ff00ff00ff", bank="A B")
        assert bad_bank.status_code == 400
        assert _post(client, "/api/check", image=corpus.original).get_json()["flagged"] is True


def test_configured_keys_must_be_digests(database_url: str) -> None:
    with (
        pytest.raises(ValueError, match="SHA-256 hex digest"),
        running_app(database_url, MODERATOR_KEYS={"amy": KEY}),
    ):
        pass


def test_concurrent_checks_while_others_flag(moderated: Flask) -> None:
    rng = random.Random(5)
    flagged_first = [rng.getrandbits(64) for _ in range(10)]
    flagged_later = [rng.getrandbits(64) for _ in range(30)]
    setup = moderated.test_client()
    for value in flagged_first:
        setup.post("/api/flag", json={"dhash": hash_to_hex(value)}, headers=AMY)
    failures: list[object] = []

    def check_once() -> None:
        client = moderated.test_client()
        for value in flagged_first:
            response = client.post("/api/check", json={"dhash": hash_to_hex(value ^ 1)})
            if response.status_code != 200 or not response.get_json()["flagged"]:
                failures.append((response.status_code, response.get_data(as_text=True)))

    def flag(values: list[int]) -> None:
        client = moderated.test_client()
        for value in values:
            response = client.post("/api/flag", json={"dhash": hash_to_hex(value)}, headers=AMY)
            if response.status_code != 201:
                failures.append((response.status_code, response.get_data(as_text=True)))

    failures += check_while_flagging(check_once, flag, flagged_later)
    assert failures == []
    for value in flagged_later:
        body = setup.post("/api/check", json={"dhash": hash_to_hex(value)}).get_json()
        assert body["flagged"] is True


def test_check_shares_the_search_rate_limit(database_url: str) -> None:
    with running_app(database_url, SEARCH_RATE_LIMIT="2 per minute") as app:
        client = app.test_client()
        statuses = [
            client.post("/api/check", json={"dhash": "00ff00ff00ff00ff"}).status_code
            for _ in range(3)
        ]
    assert statuses == [200, 200, 429]


def test_an_upload_pipeline_with_a_moderator_key_is_not_rate_limited(database_url: str) -> None:
    with running_app(database_url, SEARCH_RATE_LIMIT="2 per minute", MODERATOR_KEYS=KEYS) as app:
        client = app.test_client()
        keyed = [
            client.post(
                "/api/check",
                json={"dhash": "00ff00ff00ff00ff"},
                headers={"Authorization": f"Bearer {KEY}"},
            ).status_code
            for _ in range(4)
        ]
        wrong_key = [
            client.post(
                "/api/check",
                json={"dhash": "00ff00ff00ff00ff"},
                headers={"Authorization": "Bearer not-a-key"},
            ).status_code
            for _ in range(3)
        ]
    assert keyed == [200, 200, 200, 200]
    assert wrong_key == [200, 200, 429]  # an invalid key is just an anonymous client


# --- pages ----------------------------------------------------------------------------------


def _login(client: FlaskClient, key: str = KEY, next_path: str | None = None):
    return client.post("/moderation/login", data={"key": key, "next": next_path or ""})


def test_pages_need_a_login_with_a_moderator_key(web: FlaskClient) -> None:
    for path in ("/moderation/", "/moderation/banks/banned", "/moderation/entries/1"):
        response = web.get(path)
        assert response.status_code == 302
        assert response.headers["Location"].startswith("/moderation/login?next=")
    assert web.get("/moderation/flag?image_id=1").status_code == 302
    assert web.get("/moderation/entries/1/thumbnail.webp").status_code == 302
    assert web.post("/moderation/entries/1/disable").status_code == 302

    refused = _login(web, "wrong")
    assert refused.status_code == 401
    assert "not a moderator key" in refused.get_data(as_text=True)
    assert web.get("/moderation/").status_code == 302

    signed_in = _login(web, next_path="//evil.example/")  # only local paths are followed
    assert (signed_in.status_code, signed_in.headers["Location"]) == (303, "/moderation/")
    assert "Signed in as <strong>amy</strong>" in web.get("/moderation/").get_data(as_text=True)
    web.post("/moderation/logout")
    assert web.get("/moderation/").status_code == 302


def test_moderator_sees_banks_entries_thumbnails_and_where_copies_appear(
    web: FlaskClient, corpus: Corpus
) -> None:
    entry = _flag(web, corpus.original, bank="banned", reason="<b>spam</b>")
    _login(web)

    banks = web.get("/moderation/").get_data(as_text=True)
    assert 'href="/moderation/banks/banned"' in banks

    listing = web.get("/moderation/banks/banned").get_data(as_text=True)
    assert f'data-entry-id="{entry["id"]}"' in listing
    assert "&lt;b&gt;spam&lt;/b&gt;" in listing and "<b>spam" not in listing
    thumbnail_path = f"/moderation/entries/{entry['id']}/thumbnail.webp"
    assert thumbnail_path in listing
    thumbnail = web.get(thumbnail_path)
    assert (thumbnail.status_code, thumbnail.mimetype) == (200, "image/webp")

    page = web.get(f"/moderation/entries/{entry['id']}").get_data(as_text=True)
    shown = {int(i) for i in re.findall(r'data-image-id="(\d+)"', page)}
    # the original, its resized copies and the PNG copy: not the unrelated photo
    assert shown == {corpus.ids[n] for n in ("original", "small", "big", "evil")}
    assert 'href="javascript:' not in page
    assert "http://c.test/" in page

    assert web.get("/moderation/banks/nope").status_code == 404
    assert web.get("/moderation/entries/999999").status_code == 404


def test_flag_from_a_search_result_then_disable_it(web: FlaskClient, corpus: Corpus) -> None:
    _login(web)
    image_id = corpus.ids["big"]
    form = web.get(f"/moderation/flag?image_id={image_id}").get_data(as_text=True)
    assert 'id="flag-form"' in form and "https://b.test/big" in form

    flagged = web.post(
        f"/moderation/flag?image_id={image_id}", data={"bank": "copyright", "reason": "dmca"}
    )
    assert flagged.status_code == 303
    entry_path = flagged.headers["Location"]
    entry_page = web.get(entry_path).get_data(as_text=True)
    assert "Flagged." in entry_page and f"stored image {image_id}" in entry_page
    assert (
        _post(web, "/api/check", image=corpus.data["small"]).get_json()["matches"][0]["reason"]
        == "dmca"
    )

    disabled = web.post(entry_path + "/disable")
    assert disabled.status_code == 303
    assert "disabled by amy" in web.get(entry_path).get_data(as_text=True)
    assert _post(web, "/api/check", image=corpus.data["small"]).get_json()["flagged"] is False
    assert web.post(entry_path + "/disable").status_code == 404
    assert web.get("/moderation/flag?image_id=999999").status_code == 404


def test_moderator_forms_need_the_csrf_token(database_url: str) -> None:
    with running_app(database_url, MODERATOR_KEYS=KEYS) as app:  # CSRF on, as in production
        client = app.test_client()
        assert client.post("/moderation/login", data={"key": KEY}).status_code == 400
        with client.session_transaction() as session:
            session["moderator"] = "amy"
        assert client.post("/moderation/entries/1/disable").status_code == 400
        # the JSON API takes no cookies, so it needs no token
        check = client.post("/api/check", json={"dhash": "00ff00ff00ff00ff"})
        assert check.status_code == 200


def test_search_results_offer_a_flag_link_to_moderators_only(
    web: FlaskClient, corpus: Corpus
) -> None:
    results = f"/search?dhash={fingerprint(corpus.original).hex('dhash')}"
    assert "flag-link" not in web.get(results).get_data(as_text=True)
    _login(web)
    html = web.get(results).get_data(as_text=True)
    linked = {int(i) for i in re.findall(r"/moderation/flag\?image_id=(\d+)", html)}
    assert corpus.ids["original"] in linked and corpus.ids["other"] not in linked


@pytest.mark.parametrize(
    "next_path",
    [
        "/\t/evil.example",  # what next=/%09/evil.example decodes to: browsers drop the TAB
        "/\r\n/evil.example",
        "/\n\\evil.example",
        "/\\evil.example",
        "//evil.example/",
        "https://evil.example/",
    ],
)
def test_sign_in_never_redirects_off_the_site(web: FlaskClient, next_path: str) -> None:
    form = web.get("/moderation/login", query_string={"next": next_path})
    signed_in = _login(web, next_path=next_path)
    assert form.status_code == 200
    assert (signed_in.status_code, signed_in.headers["Location"]) == (303, "/moderation/")


def test_sign_in_goes_back_to_a_local_page(web: FlaskClient) -> None:
    signed_in = _login(web, next_path="/moderation/banks/banned?page=2")
    assert signed_in.headers["Location"] == "/moderation/banks/banned?page=2"


@pytest.mark.parametrize("change", ["removed", "replaced"])
def test_a_removed_or_replaced_key_ends_the_sessions_it_opened(
    moderated: Flask, web: FlaskClient, corpus: Corpus, change: str
) -> None:
    _login(web)
    results = f"/search?dhash={fingerprint(corpus.original).hex('dhash')}"
    assert web.get("/moderation/").status_code == 200
    assert "flag-link" in web.get(results).get_data(as_text=True)
    keys = dict(KEYS)
    if change == "removed":
        del keys["amy"]
    else:
        keys["amy"] = hashlib.sha256(b"amy-new-key").hexdigest()
    moderated.config["MODERATOR_KEYS"] = keys  # as after a restart with the new setting
    assert web.get("/moderation/").status_code == 302
    assert "flag-link" not in web.get(results).get_data(as_text=True)


def test_a_stranger_learns_nothing_about_an_entry_it_does_not_match(web: FlaskClient) -> None:
    """Answers to anonymous checks depend only on whether the query is within the radius, so
    neither near misses nor hits give away how far the entry is (or which bits differ)."""
    base = 0x5A5A_F0F0_1234_ABCD
    _post(web, "/api/flag", headers=AMY, dhash=hash_to_hex(base), bank="banned", reason="r")
    _post(web, "/api/flag", headers=AMY, dhash=hash_to_hex(base ^ (0b11 << 62)), bank="banned")
    answers = {
        bits: _post(web, "/api/check", dhash=hash_to_hex(base ^ ((1 << bits) - 1))).get_json()
        for bits in (0, 1, 5, 8, 9, 10, 12, 20, 40, 64)
    }
    hits = [answers[bits] for bits in (0, 1, 5)]
    assert hits[0]["flagged"] is True and len(hits[0]["matches"]) == 2
    assert hits == [hits[0]] * 3  # the same answer however close
    misses = [answers[bits] for bits in (10, 12, 20, 40, 64)]
    assert misses == [{"flagged": False, "matches": []}] * 5
    probing = _post(web, "/api/check", dhash=hash_to_hex(base), max_distance=2)
    assert probing.status_code == 401


def _stored_feature_bytes(web: FlaskClient) -> list[int]:
    with connect(web.application.config["DATABASE_URL"]) as conn:
        rows = conn.execute("SELECT length(features) FROM bank_entry_features").fetchall()
    return [length for (length,) in rows]
