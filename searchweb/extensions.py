"""What every part of the site shares: CSRF protection, the store, rate limits, timings.

Blueprints import from here (``get_store``, ``csrf``, ``timed``) rather than from the app
factory, so a new blueprint needs nothing but this module and ``searchweb.queries``.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager

from flask import Flask, Response, current_app, g
from flask_limiter import Limiter
from flask_limiter.util import get_remote_address
from flask_wtf.csrf import CSRFProtect

from lookalike.config import database_url
from lookalike.db import open_pool
from lookalike.store import Store

csrf = CSRFProtect()
_STORE_KEY = "lookalike_store"
_store_lock = threading.Lock()


def get_store() -> Store:
    """The app's store, opened on first use so the site starts even before the database."""
    extensions = current_app.extensions
    store = extensions.get(_STORE_KEY)
    if store is None:
        with _store_lock:
            store = extensions.get(_STORE_KEY)
            if store is None:
                url = current_app.config["DATABASE_URL"] or database_url()
                pool = open_pool(url, max_size=current_app.config["DATABASE_POOL_SIZE"])
                store = extensions[_STORE_KEY] = Store(pool)
    return store


def close_store(app: Flask) -> None:
    """Close the app's connection pool, if it was opened."""
    store = app.extensions.pop(_STORE_KEY, None)
    if store is not None:
        store.close()


def init_rate_limits(
    app: Flask, expensive_endpoints: Iterable[str], exempt_when: Callable[[], bool] | None = None
) -> Limiter:
    """Per-client limits: ``RATELIMIT_DEFAULT`` on every route, ``SEARCH_RATE_LIMIT`` shared by
    the endpoints that fingerprint or search, except for requests ``exempt_when`` lets through
    (an upload pipeline holding a moderator key). One Limiter per app: it keeps its counters.
    """
    app.after_request(_retry_after_only_on_refusals)  # registered first, so it runs last
    limiter = Limiter(get_remote_address, app=app)
    # The decorators below hold the limiter weakly; keep it alive even when limits are off.
    app.extensions["lookalike_limiter"] = limiter
    searches = limiter.shared_limit(
        lambda: app.config["SEARCH_RATE_LIMIT"], scope="search", exempt_when=exempt_when
    )
    for endpoint in expensive_endpoints:
        app.view_functions[endpoint] = searches(app.view_functions[endpoint])
    return limiter


@contextmanager
def timed(name: str) -> Iterator[None]:
    """Add the time spent in the block to this request's ``Server-Timing`` entry ``name``."""
    started = time.perf_counter()
    try:
        yield
    finally:
        timings = g.setdefault("server_timings", {})
        timings[name] = timings.get(name, 0.0) + (time.perf_counter() - started) * 1000


def add_server_timing(response: Response) -> Response:
    """``Server-Timing: fingerprint;dur=2.1, db;dur=3.4`` for benchmarks and browser devtools."""
    timings = g.get("server_timings")
    if timings:
        response.headers["Server-Timing"] = ", ".join(
            f"{name};dur={ms:.2f}" for name, ms in timings.items()
        )
    return response


def _retry_after_only_on_refusals(response: Response) -> Response:
    """Flask-Limiter adds ``Retry-After`` to every response; it only means something on a 429
    (rate limited) or a 503 (database away), so other responses drop it."""
    if response.status_code not in (429, 503):
        response.headers.pop("Retry-After", None)
    return response
