"""Hostile parameters: NUL bytes, lone surrogates, deep JSON and huge numbers end in a 400 that
names the parameter, on every route that takes text, before the database sees them."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator

import pytest
from flask import Flask
from flask.testing import FlaskClient

from tests.web_support import running_app

KEY = "hostile-test-key"
MODERATOR = {"Authorization": f"Bearer {KEY}"}
DHASH = "0123456789abcdef"
NUL = "\\u0000"
SURROGATE = "\\ud800"


@pytest.fixture
def site(database_url: str) -> Iterator[Flask]:
    keys = {"amy": hashlib.sha256(KEY.encode()).hexdigest()}
    with running_app(database_url, WTF_CSRF_ENABLED=False, MODERATOR_KEYS=keys) as made:
        yield made


@pytest.fixture
def web(site: Flask) -> FlaskClient:
    client = site.test_client()
    with client.session_transaction() as session:  # signed in, for the moderator pages
        session["moderator"] = "amy"
        session["moderator_key_digest"] = hashlib.sha256(KEY.encode()).hexdigest()
    return client


def _json(path: str, text: str, *, headers: dict[str, str] | None = None) -> dict[str, object]:
    return {
        "method": "POST",
        "path": path,
        "data": text,
        "content_type": "application/json",
        "headers": headers or {},
    }


CASES = {
    "page domain NUL": {"path": f"/search?dhash={DHASH}&domain=a%00b"},
    "page sort NUL": {"path": f"/search?dhash={DHASH}&sort=best%00"},
    "API domain NUL": _json("/api/search", f'{{"dhash": "{DHASH}", "domain": "a{NUL}b"}}'),
    "API domain surrogate": _json(
        "/api/search", f'{{"dhash": "{DHASH}", "domain": "{SURROGATE}"}}'
    ),
    "API key surrogate": _json("/api/search", f'{{"dhash": "{DHASH}", "{SURROGATE}": 1}}'),
    "API form domain NUL": {
        "method": "POST",
        "path": "/api/search",
        "data": {"dhash": DHASH, "domain": "a\x00"},
    },
    "check bank NUL": _json("/api/check", f'{{"dhash": "{DHASH}", "bank": "b{NUL}"}}'),
    "check bank surrogate": _json("/api/check", f'{{"dhash": "{DHASH}", "bank": "{SURROGATE}"}}'),
    "flag reason NUL": _json(
        "/api/flag", f'{{"dhash": "{DHASH}", "reason": "r{NUL}"}}', headers=MODERATOR
    ),
    "flag reason nested surrogate": _json(
        "/api/flag", f'{{"dhash": "{DHASH}", "reason": ["{SURROGATE}"]}}', headers=MODERATOR
    ),
    "entries bank NUL": {"path": "/api/entries?bank=a%00", "headers": MODERATOR},
    "bank page NUL": {"path": "/moderation/banks/a%00b"},
    "moderator flag reason NUL": {
        "method": "POST",
        "path": "/moderation/flag?image_id=1",
        "data": {"reason": "r\x00"},
    },
    # Deeper than Python's recursion limit, smaller than the 64 KB cap on JSON bodies.
    "deep JSON search": _json("/api/search", "[" * 50_000),
    "deep JSON check": _json("/api/check", '{"a":' * 10_000),
    "huge page": {"path": f"/search?dhash={DHASH}&page={'9' * 5000}"},
    "page past the last": {"path": f"/search?dhash={DHASH}&page={10**30}"},
    "superscript page": {"path": f"/search?dhash={DHASH}&page=%C2%B2"},
}


@pytest.mark.parametrize("case", CASES.values(), ids=CASES.keys())
def test_hostile_parameters_are_400_naming_the_problem(
    web: FlaskClient, case: dict[str, object]
) -> None:
    options = dict(case)
    response = web.open(options.pop("path"), method=options.pop("method", "GET"), **options)
    assert response.status_code == 400, response.get_data(as_text=True)[:300]


def test_the_message_names_the_parameter_and_the_problem(web: FlaskClient) -> None:
    nul = web.open(**_json("/api/search", f'{{"dhash": "{DHASH}", "domain": "a{NUL}"}}'))
    deep = web.open(**_json("/api/search", "[" * 50_000))
    assert nul.get_json()["error"]["message"] == "domain contains a NUL character"
    assert "must be an object" in deep.get_json()["error"]["message"]
