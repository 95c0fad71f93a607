"""Moderation banks on the site: a public check for upload pipelines, keyed writes, moderator pages.

Anyone may ``POST /api/check`` and learn only whether an image matches, and for each match the
bank's name, the reason and when it was flagged: nothing about an entry it does not match, and
no distance (it would lead a stranger to the entry's exact dHash). With a moderator key the check
also tells each match's entry and distance and takes ``max_distance``. Everything else (flagging,
disabling, listing a bank, the pages) needs a moderator key: sent as ``Authorization: Bearer
KEY`` to the API, or typed once into the login form for the pages. Keys are configured as
SHA-256 digests (``MODERATOR_KEYS = {"name": "<hex digest>"}``), so the configuration holds no
usable secret; ``lookalike moderator-key NAME`` makes a key and its digest.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Callable, Mapping
from functools import wraps
from typing import Any, TypeVar
from urllib.parse import urlsplit

from flask import (
    Blueprint,
    Response,
    abort,
    current_app,
    flash,
    jsonify,
    redirect,
    render_template,
    request,
    session,
    url_for,
)
from werkzeug.datastructures import WWWAuthenticate
from werkzeug.exceptions import BadRequest, NotFound, Unauthorized

from lookalike.banks import (
    DEFAULT_BANK,
    MAX_RADIUS,
    BankError,
    Banks,
    Entry,
    FlagTarget,
    UnknownBank,
)
from searchweb.errors import render_error
from searchweb.extensions import csrf, get_store, timed
from searchweb.queries import int_option, query_from_dhash, query_from_request

bp = Blueprint("moderation", __name__)

# A login stores the moderator's name and their key's digest in the (signed) session cookie:
# the session lasts only while that very key is configured for that name.
_SESSION_KEY = "moderator"
_SESSION_DIGEST = "moderator_key_digest"
ENTRIES_PER_PAGE = 50
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
            return redirect(url_for("moderation.login", next=request.full_path))
        return view(moderator, *args, **kwargs)

    return guarded  # type: ignore[return-value]


def get_banks() -> Banks:
    """The banks on the site's own connection pool."""
    return Banks(get_store().pool)


@bp.errorhandler(BankError)
def _bank_error(error: BankError) -> Any:
    status = NotFound if isinstance(error, UnknownBank) else BadRequest
    return render_error(status(str(error)))


# --- the JSON API ---------------------------------------------------------------------------


@bp.post("/api/check")
@csrf.exempt
def check() -> Response:
    """Is this image (multipart ``image``, or JSON ``url``/``dhash``) in a bank?"""
    values, query = query_from_request()
    phash = query.fingerprint.phash if query.fingerprint else None
    bank = _bank_option(values)
    keyed = request_has_moderator_key()
    max_distance = _max_distance(values)
    if max_distance is not None and not keyed:
        raise key_required(
            "max_distance needs a moderator key: checking at chosen radii tells the distance"
        )
    with timed("db"):
        matches = get_banks().check(query.dhash, phash, bank=bank, max_distance=max_distance)
    if keyed:
        described = [m.detail() for m in matches]
    else:  # ordered by bank and date, not by distance, which the order would otherwise tell
        described = sorted(
            (m.public() for m in matches), key=lambda m: (m["bank"], m["flagged_at"])
        )
    return jsonify({"flagged": bool(matches), "matches": described})


@bp.post("/api/flag")
@api_key_required
def flag(moderator: str) -> tuple[Response, int]:
    """Flag an upload, an image URL, a dHash or a stored ``image_id`` into ``bank``."""
    values, target = _flag_target()
    bank = _bank_option(values) or DEFAULT_BANK
    with timed("db"):
        result = get_banks().flag(
            target, bank=bank, reason=_text(values, "reason"), flagged_by=moderator
        )
    return jsonify(
        {"created": result.created, "entry": entry_json(result.entry)}
    ), 201 if result.created else 200


@bp.post("/api/unflag")
@api_key_required
def unflag(moderator: str) -> Response:
    """Disable an entry (``entry_id``), or the active entries of a ``dhash`` (in ``bank``)."""
    values = _json_or_form()
    entry_id = values.get("entry_id")
    dhash = values.get("dhash")
    if entry_id not in (None, ""):
        target: dict[str, Any] = {"entry_id": int_option(values, "entry_id", 0, 2**62)}
    elif isinstance(dhash, str) and dhash.strip():
        target = {"dhash": query_from_dhash(dhash).dhash}
    else:
        raise BadRequest("give an 'entry_id', or a 'dhash' (16 hex digits)")
    with timed("db"):
        disabled = get_banks().disable(disabled_by=moderator, bank=_bank_option(values), **target)
    return jsonify({"disabled": [entry_json(entry) for entry in disabled]})


@bp.get("/api/banks")
@api_key_required
def list_banks(moderator: str) -> Response:
    with timed("db"):
        summaries = get_banks().summaries()
    return jsonify(
        {
            "banks": [
                {
                    "name": s.name,
                    "dhash_radius": s.dhash_radius,
                    "phash_radius": s.phash_radius,
                    "active_entries": s.active_entries,
                    "disabled_entries": s.disabled_entries,
                    "created_at": s.created_at.isoformat(),
                }
                for s in summaries
            ]
        }
    )


@bp.get("/api/entries")
@api_key_required
def list_entries(moderator: str) -> Response:
    """A bank's entries, newest first (``bank``, ``limit``, ``offset`` in the query string)."""
    bank = _bank_option(request.args) or DEFAULT_BANK
    limit = int_option(request.args, "limit", ENTRIES_PER_PAGE, current_app.config["API_MAX_LIMIT"])
    offset = int_option(request.args, "offset", 0, 1_000_000)
    with timed("db"):
        entries = get_banks().entries(bank, limit=limit, offset=offset)
    return jsonify({"bank": bank, "entries": [entry_json(e) for e in entries]})


def entry_json(entry: Entry) -> dict[str, object]:
    """Everything about an entry: for key holders only."""
    return {
        "id": entry.id,
        "bank": entry.bank,
        "dhash": entry.dhash_hex,
        "phash": entry.phash_hex,
        "sha256": entry.sha256,
        "image_id": entry.image_id,
        "reason": entry.reason,
        "flagged_by": entry.flagged_by,
        "flagged_at": entry.flagged_at.isoformat(),
        "active": entry.active,
        "disabled_by": entry.disabled_by,
        "disabled_at": entry.disabled_at.isoformat() if entry.disabled_at else None,
    }


def _flag_target() -> tuple[Mapping[str, Any], FlagTarget]:
    """What to flag: a stored ``image_id`` (JSON or form), else what a search would read."""
    values = _json_or_form()
    if values.get("image_id") not in (None, ""):
        image_id = int_option(values, "image_id", 0, 2**62)
        return values, get_banks().target_from_image(image_id)
    values, query = query_from_request()
    if query.fingerprint is not None:
        return values, FlagTarget.from_fingerprint(query.fingerprint)
    return values, FlagTarget(query.dhash)


def _json_or_form() -> Mapping[str, Any]:
    if request.mimetype == "application/json":
        body = request.get_json(silent=True)
        if not isinstance(body, dict):
            raise BadRequest("the JSON body must be an object")
        return body
    return request.form


def _bank_option(values: Mapping[str, Any]) -> str | None:
    bank = values.get("bank")
    if bank in (None, ""):
        return None
    if not isinstance(bank, str):
        raise BadRequest(f"bank must be a name, not {bank!r}")
    return bank.strip()


def _max_distance(values: Mapping[str, Any]) -> int | None:
    """None (each bank's own radius) unless the request names one."""
    if values.get("max_distance") in (None, ""):
        return None
    return int_option(values, "max_distance", 0, MAX_RADIUS)


def _text(values: Mapping[str, Any], name: str, limit: int = 500) -> str | None:
    value = values.get(name)
    if value in (None, ""):
        return None
    if not isinstance(value, str) or len(value) > limit:
        raise BadRequest(f"{name} must be text of at most {limit} characters")
    return value.strip() or None


# --- moderator pages ------------------------------------------------------------------------


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


@bp.get("/moderation/")
@login_required
def banks_page(moderator: str) -> str:
    with timed("db"):
        summaries = get_banks().summaries()
    return render_template("moderation/banks.html", moderator=moderator, banks=summaries)


@bp.get("/moderation/banks/<name>")
@login_required
def bank_page(moderator: str, name: str) -> str:
    page = int_option(request.args, "page", 1, 1_000_000, minimum=1)
    with timed("db"):
        entries = get_banks().entries(
            name, limit=ENTRIES_PER_PAGE + 1, offset=(page - 1) * ENTRIES_PER_PAGE
        )
    return render_template(
        "moderation/entries.html",
        moderator=moderator,
        bank=name,
        entries=entries[:ENTRIES_PER_PAGE],
        page=page,
        has_next=len(entries) > ENTRIES_PER_PAGE,
    )


@bp.get("/moderation/entries/<int:entry_id>")
@login_required
def entry_page(moderator: str, entry_id: int) -> str:
    """One entry and every crawled page where it, or a near copy, appears."""
    with timed("db"):
        found = get_banks().entry(entry_id)
        if found is None:
            raise NotFound(f"there is no bank entry {entry_id}")
        sightings = get_banks().sightings(entry_id) if found.active else []
    return render_template(
        "moderation/entry.html", moderator=moderator, entry=found, sightings=sightings
    )


@bp.get("/moderation/entries/<int:entry_id>/thumbnail.webp")
@login_required
def entry_thumbnail(moderator: str, entry_id: int) -> Response:
    with timed("db"):
        webp = get_banks().thumbnail(entry_id)
    if webp is None:
        raise NotFound(f"no thumbnail for bank entry {entry_id}")
    response = Response(webp, mimetype="image/webp")
    response.cache_control.private = True
    return response


@bp.route("/moderation/flag", methods=["GET", "POST"])
@login_required
def flag_image(moderator: str) -> Any:
    """Flag a stored image, e.g. one found by a search (the results page links here)."""
    image_id = int_option(request.values, "image_id", 0, 2**62)
    with timed("db"):
        stored = get_store().image(image_id, sightings=current_app.config["SIGHTINGS_PER_MATCH"])
    if stored is None:
        raise NotFound(f"there is no image {image_id}")
    if request.method == "GET":
        with timed("db"):
            bank_names = [s.name for s in get_banks().summaries()]
        return render_template(
            "moderation/flag.html",
            moderator=moderator,
            stored=stored,
            bank_names=bank_names or [DEFAULT_BANK],
        )
    bank = _bank_option(request.form) or DEFAULT_BANK
    with timed("db"):
        bank_store = get_banks()
        result = bank_store.flag(
            bank_store.target_from_image(image_id),
            bank=bank,
            reason=_text(request.form, "reason"),
            flagged_by=moderator,
        )
    flash("Flagged." if result.created else "Already flagged: nothing changed.")
    return redirect(url_for("moderation.entry_page", entry_id=result.entry.id), code=303)


@bp.post("/moderation/entries/<int:entry_id>/disable")
@login_required
def disable_entry(moderator: str, entry_id: int) -> Response:
    with timed("db"):
        disabled = get_banks().disable(disabled_by=moderator, entry_id=entry_id)
    if not disabled:
        abort(404, f"there is no active bank entry {entry_id}")
    flash("Disabled: the entry no longer matches, and stays in the bank's history.")
    return redirect(url_for("moderation.entry_page", entry_id=entry_id), code=303)


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
