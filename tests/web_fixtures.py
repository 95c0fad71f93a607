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


# Port 9 (discard) has no PostgreSQL: any query fails with 503, so a test using this proves
# its request was answered before the database was touched.
UNREACHABLE_DATABASE = "postgresql://nobody@127.0.0.1:9/unreachable?connect_timeout=1"


@pytest.fixture
def offline_client() -> Iterator[FlaskClient]:
    """A client of the site with no database behind it (and CSRF off)."""
    with running_app(UNREACHABLE_DATABASE, WTF_CSRF_ENABLED=False) as made:
        yield made.test_client()
