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
from psycopg_pool import ConnectionPool
from werkzeug.exceptions import ServiceUnavailable

from lookalike.config import database_url
from lookalike.memory import MemoryBudget
from lookalike.store import Store
from lookalike.store.db import open_pool

csrf = CSRFProtect()
_STORE_KEY = "lookalike_store"
_DECODE_BUDGET_KEY = "lookalike_decode_budget"
_HEALTH_KEY = "lookalike_database_health"
_store_lock = threading.Lock()


class DatabaseHealth:
    """Remembers that the database just failed, so requests during an outage get 503 at once
    instead of each waiting for the pool; one request at a time tries again after
    ``retry_after`` seconds, and its success ends the outage.

    A failure also discards the pool: psycopg_pool would keep reconnecting with a backoff that
    grows to minutes, and waiters would sit out its timeout. The next try opens a fresh pool,
    which connects at once (or fails at once) and migrates the database, so one dropped and
    re-created empty gets its tables back.
    """

    def __init__(self, retry_after: int) -> None:
        self.retry_after = retry_after
        self._lock = threading.Lock()
        self._failing = False
        self._quiet_until = 0.0
        self._probing = False

    def unavailable(self) -> ServiceUnavailable:
        return ServiceUnavailable(
            "the database is not answering; try again shortly", retry_after=self.retry_after
        )

    def admit(self) -> None:
        """Raise 503 while the database is known to be down; else let this request use it."""
        with self._lock:
            if not self._failing:
                return
            if self._probing or time.monotonic() < self._quiet_until:
                raise self.unavailable()
            self._probing = g.database_probe = True

    def failed(self) -> None:
        with self._lock:
            self._failing = True
            self._quiet_until = time.monotonic() + self.retry_after
        g.database_failed = True
        _discard_store(g.pop("lookalike_store", None))

    def request_ended(self) -> None:
        """After a probing request: the outage is over unless the probe failed too."""
        if g.pop("database_probe", False):
            with self._lock:
                self._probing = False
                if not g.get("database_failed"):
                    self._failing = False


def database_health() -> DatabaseHealth:
    return current_app.extensions[_HEALTH_KEY]


def init_database_health(app: Flask) -> None:
    """Call before init_rate_limits: after_request functions run last-registered first, and
    Flask-Limiter raises every response's Retry-After to its own window (up to a minute),
    so an error's own Retry-After (an outage's, a full fetch queue's) is put back afterwards.
    """
    health = app.extensions[_HEALTH_KEY] = DatabaseHealth(app.config["DATABASE_RETRY_AFTER"])
    app.teardown_request(lambda _error: health.request_ended())

    @app.after_request
    def error_retry_after(response: Response) -> Response:
        if (seconds := g.get("error_retry_after")) is not None:
            response.headers["Retry-After"] = str(seconds)
        return response


def get_store() -> Store:
    """The app's store, opened on first use so the site starts even before the database.

    Opening it starts building its feature index in the background (``keep_features_fresh``):
    searches run meanwhile, and find edited copies crawlers record within seconds.
    503 at once while the database is known to be down (see DatabaseHealth).
    """
    database_health().admit()
    extensions = current_app.extensions
    store = extensions.get(_STORE_KEY)
    if store is None:
        with _store_lock:
            store = extensions.get(_STORE_KEY)
            if store is None:
                store = extensions[_STORE_KEY] = Store(_open_site_pool())
                store.keep_features_fresh()
    g.lookalike_store = store
    return store


def _discard_store(store: Store | None) -> None:
    """Close a store that failed (its pool and its feature refresher), and forget it unless a
    fresh one replaced it: requests still on it get PoolClosed (a 503) instead of waiting for a
    connection.
    """
    if store is None:
        return
    with _store_lock:
        if current_app.extensions.get(_STORE_KEY) is store:
            del current_app.extensions[_STORE_KEY]
    store.close(timeout=1)


def _open_site_pool() -> ConnectionPool:
    config = current_app.config
    return open_pool(
        config["DATABASE_URL"] or database_url(),
        max_size=config["DATABASE_POOL_SIZE"],
        timeout=config["DATABASE_POOL_TIMEOUT"],
    )


def close_store(app: Flask) -> None:
    """Close the app's connection pool, if it was opened."""
    store = app.extensions.pop(_STORE_KEY, None)
    if store is not None:
        store.close()


def init_decode_budget(app: Flask) -> None:
    """One memory budget (``DECODE_MEMORY_MB``) shared by the decodes of all the app's threads.

    Eight threads each decoding a 50 MP PNG would otherwise need 2.8 GB at once.
    """
    app.extensions[_DECODE_BUDGET_KEY] = MemoryBudget(int(app.config["DECODE_MEMORY_MB"]) << 20)


def decode_budget() -> MemoryBudget:
    return current_app.extensions[_DECODE_BUDGET_KEY]


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
