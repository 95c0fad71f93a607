"""Moderator keys, sessions and sign-in: who may use the keyed API and the moderator pages.

The JSON API takes a key in the ``Authorization`` header on every request (``api_key_required``);
the pages take a session opened by typing the key into the login form (``login_required``).
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Callable
from functools import wraps
from typing import Any, TypeVar
from urllib.parse import urlsplit

from flask import (
    Blueprint,
    Response,
    current_app,
    redirect,
    render_template,
    request,
    session,
    url_for,
)
from werkzeug.datastructures import WWWAuthenticate
from werkzeug.exceptions import Unauthorized

from searchweb.extensions import csrf

bp = Blueprint("auth", __name__)

# A login stores the moderator's name and their key's digest in the (signed) session cookie:
# the session lasts only while that very key is configured for that name.
_SESSION_KEY = "moderator"
_SESSION_DIGEST = "moderator_key_digest"
View = TypeVar("View", bound=Callable[..., Any])


@bp.record_once
def _check_configured_keys(state: Any) -> None:
    """Refuse to start with a key that is not a SHA-256 digest: it could never match."""
    for name, digest in state.app.config.get("MODERATOR_KEYS", {}).items():
        if not (isinstance(digest, str) and len(digest) == 64 and _is_hex(digest)):
            raise ValueError(
                f"MODERATOR_KEYS[{name!r}] must be the SHA-256 hex digest of a key "
                "(64 hex digits), not the key itself"
            )


def _is_hex(text: str) -> bool:
    try:
        int(text, 16)
    except ValueError:
        return False
    return True


def key_digest(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def moderator_for_key(key: str) -> str | None:
    """The name of the moderator whose key this is, comparing digests in constant time."""
    presented = key_digest(key)
    found = None
    for name, digest in current_app.config.get("MODERATOR_KEYS", {}).items():
        if hmac.compare_digest(presented, digest.lower()):
            found = name  # no early return: every configured key costs the same
    return found


def _api_moderator() -> str | None:
    scheme, _, key = request.headers.get("Authorization", "").partition(" ")
    return moderator_for_key(key.strip()) if scheme.lower() == "bearer" and key else None


def request_has_moderator_key() -> bool:
    """Whether this request carries a valid moderator key (exempts it from search limits)."""
    return _api_moderator() is not None


def key_required(message: str) -> Unauthorized:
    """401 asking for a bearer key, saying what needed it."""
    return Unauthorized(
        message, www_authenticate=WWWAuthenticate("bearer", {"realm": "lookalike moderation"})
    )


def api_key_required(view: View) -> View:
    """JSON routes that change or list a bank: a key in the Authorization header, no cookie.

    Cookies are not accepted here, so a cross-site form cannot act as a logged-in moderator.
    """

    @wraps(view)
    def guarded(*args: Any, **kwargs: Any) -> Any:
        moderator = _api_moderator()
        if moderator is None:
            raise key_required(
                "a moderator API key is required: send 'Authorization: Bearer <key>'"
            )
        return view(moderator, *args, **kwargs)

    return csrf.exempt(guarded)  # type: ignore[return-value]


def session_moderator() -> str | None:
    """The signed-in moderator, if the key they signed in with is still theirs.

    Checked on every request, so removing or replacing a key ends the sessions it opened.
    """
    name, digest = session.get(_SESSION_KEY), session.get(_SESSION_DIGEST)
    if not isinstance(name, str) or not isinstance(digest, str):
        return None
    configured = current_app.config.get("MODERATOR_KEYS", {}).get(name)
    if configured is None or not hmac.compare_digest(digest, configured.lower()):
        return None
    return name


@bp.app_context_processor
def _signed_in_moderator() -> dict[str, str | None]:
    return {"signed_in_moderator": session_moderator()}


def login_required(view: View) -> View:
    """Moderator pages: a logged-in session, else the login form (which comes back here)."""

    @wraps(view)
    def guarded(*args: Any, **kwargs: Any) -> Any:
        moderator = session_moderator()
        if moderator is None:
            session.clear()
            return redirect(url_for("auth.login", next=request.full_path))
        return view(moderator, *args, **kwargs)

    return guarded  # type: ignore[return-value]


@bp.route("/moderation/login", methods=["GET", "POST"])
def login() -> Any:
    """Exchange a moderator key for a session; the key itself is never stored."""
    next_url = _local_path(request.values.get("next"))
    if request.method == "POST":
        key = request.form.get("key", "")
        moderator = moderator_for_key(key)
        if moderator is None:
            return render_template("moderation/login.html", next_url=next_url, failed=True), 401
        session.clear()
        session[_SESSION_KEY] = moderator
        session[_SESSION_DIGEST] = key_digest(key)
        return redirect(next_url or url_for("moderation.banks_page"), code=303)
    return render_template("moderation/login.html", next_url=next_url, failed=False)


@bp.post("/moderation/logout")
def logout() -> Response:
    session.clear()
    return redirect(url_for("pages.home"), code=303)


def _local_path(target: str | None) -> str | None:
    """Only same-site paths may be redirected to after login: no scheme, no //host, and none of
    the characters browsers drop or read as a slash (TAB, CR, LF, other controls, backslash),
    which would turn ``/%09/evil.example`` into ``//evil.example``.
    """
    if not target or any(c < " " or c in "\\\x7f" for c in target):
        return None
    parts = urlsplit(target)
    if parts.scheme or parts.netloc or not target.startswith("/") or target.startswith("//"):
        return None
    return target
