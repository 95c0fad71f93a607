"""The site's settings: defaults here, overridden by ``LOOKALIKE_*`` environment variables.

``LOOKALIKE_SEARCH_RATE_LIMIT="10 per minute"`` sets ``SEARCH_RATE_LIMIT``; values that parse as
JSON become numbers, booleans or lists (``LOOKALIKE_FETCH_ALLOWED_ADDRESSES='["10.0.0.5"]'``).
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path

from lookalike.config import lookalike_home
from lookalike.fetch import DEFAULT_MAX_BYTES, DEFAULT_MAX_REDIRECTS, DEFAULT_TIMEOUT_SECONDS
from lookalike.fingerprint import DEFAULT_MAX_PIXELS
from lookalike.store import DEFAULT_MAX_DISTANCE

DEFAULTS: dict[str, object] = {
    # None: $DATABASE_URL or the embedded PostgreSQL, exactly as the `lookalike` CLI picks it.
    "DATABASE_URL": None,
    "DATABASE_POOL_SIZE": 8,
    # Seconds a request waits for a free connection, and, once the database failed, how long
    # requests get 503 (with this Retry-After) at once before one tries the database again.
    "DATABASE_POOL_TIMEOUT": 5,
    "DATABASE_RETRY_AFTER": 2,
    # Uploads: the whole request, the non-file fields, and how many parts a form may have.
    "MAX_CONTENT_LENGTH": 20 * 1024 * 1024,
    "MAX_FORM_MEMORY_SIZE": 64 * 1024,
    "MAX_FORM_PARTS": 16,
    "MAX_IMAGE_PIXELS": DEFAULT_MAX_PIXELS,
    # lookalike serve (waitress): connections held at once, idle ones included, and the seconds
    # one may stay silent before it is closed (a slow upload that keeps sending stays open).
    "SERVER_CONNECTION_LIMIT": 1000,
    "SERVER_CHANNEL_TIMEOUT": 30,
    # Memory the decodes of all threads may hold at once; a decode takes up to 6 bytes a pixel
    # plus 48 MB (334 MB at 50 MP, a few MB for a photo's JPEG; see decode_cost). Uploads
    # beyond it wait; one that needs more than all of it runs alone.
    "DECODE_MEMORY_MB": 512,
    # Search by URL: limits of the server-side fetch, how many run at once (more get 503 with
    # Retry-After), and non-public addresses it may use anyway (say, an image server on the LAN
    # you trust). Empty: public addresses only.
    "FETCH_MAX_BYTES": DEFAULT_MAX_BYTES,
    "FETCH_MAX_CONCURRENT": 2,
    "FETCH_TIMEOUT_SECONDS": DEFAULT_TIMEOUT_SECONDS,
    "FETCH_MAX_REDIRECTS": DEFAULT_MAX_REDIRECTS,
    "FETCH_ALLOWED_ADDRESSES": [],
    # Search: default and largest radius (bits of 64), page sizes.
    "DEFAULT_MAX_DISTANCE": DEFAULT_MAX_DISTANCE,
    "MAX_DISTANCE_LIMIT": 16,
    "RESULTS_PER_PAGE": 10,
    "API_MAX_LIMIT": 100,
    "SIGHTINGS_PER_MATCH": 20,
    # Queries kept in memory (thumbnail and robust description, up to ~45 KB each) so a
    # results page can show what was searched for and find its edited copies.
    "QUERY_CACHE_SIZE": 1000,
    # Per-client rate limits (Flask-Limiter); memory:// is per process, use redis://… to share.
    "RATELIMIT_STORAGE_URI": "memory://",
    "RATELIMIT_DEFAULT": "600 per minute",
    "SEARCH_RATE_LIMIT": "60 per minute",
    "RATELIMIT_HEADERS_ENABLED": True,
    # Behind a reverse proxy: how many proxies' X-Forwarded-For/-Proto/-Host to trust, so
    # rate limits apply per real client and absolute URLs use the public host. 0: none.
    "TRUSTED_PROXIES": 0,
    "SESSION_COOKIE_SAMESITE": "Lax",
    "SESSION_COOKIE_HTTPONLY": True,
    # A CSRF token stays valid as long as the session: a tab left open still submits.
    "WTF_CSRF_TIME_LIMIT": None,
}


def persistent_secret_key() -> str:
    """``$LOOKALIKE_HOME/web-secret-key``, made on first use.

    A key that survives restarts keeps sessions (and so CSRF tokens) valid across them,
    without asking every user to invent a secret before the site starts.
    """
    path: Path = lookalike_home() / "web-secret-key"
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        pass  # made earlier, or by another process starting at the same time
    else:
        with os.fdopen(descriptor, "w") as out:
            out.write(secrets.token_hex(32))
    return path.read_text().strip()
