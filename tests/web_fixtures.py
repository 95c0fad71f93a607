"""Fixtures for the site's tests, loaded with ``pytest_plugins = ["tests.web_fixtures"]``."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from flask import Flask
from flask.testing import FlaskClient

from lookalike.store import Store
from tests.web_support import Corpus, running_app, seed_corpus


@pytest.fixture
def app(database_url: str) -> Iterator[Flask]:
    with running_app(database_url, WTF_CSRF_ENABLED=False) as made:
        yield made


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    return app.test_client()


@pytest.fixture
def corpus(store: Store) -> Corpus:
    return seed_corpus(store)
