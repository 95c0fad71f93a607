"""The keyed JSON API: flag, unflag and list banks and their entries with a moderator key."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from flask import Blueprint, Response, current_app, jsonify, request
from werkzeug.exceptions import BadRequest

from lookalike.features.orb import BANK_FEATURES
from lookalike.store.banks import DEFAULT_BANK, Entry, FlagTarget
from searchweb.extensions import timed
from searchweb.moderation.auth import api_key_required
from searchweb.moderation.banks import (
    ENTRIES_PER_PAGE,
    bank_option,
    get_banks,
    json_or_form,
    short_text,
)
from searchweb.queries import (
    int_option,
    kind_option,
    query_from_hash,
    query_from_request,
    raw_hash,
)

bp = Blueprint("moderation_api", __name__)


@bp.post("/api/flag")
@api_key_required
def flag(moderator: str) -> tuple[Response, int]:
    """Flag an upload, an image URL, a dHash or a stored ``image_id`` into ``bank``."""
    values, target = _flag_target()
    bank = bank_option(values) or DEFAULT_BANK
    with timed("db"):
        result = get_banks().flag(
            target, bank=bank, reason=short_text(values, "reason"), flagged_by=moderator
        )
    return jsonify(
        {"created": result.created, "entry": entry_json(result.entry)}
    ), 201 if result.created else 200


@bp.post("/api/unflag")
@api_key_required
def unflag(moderator: str) -> Response:
    """Disable an entry (``entry_id``), or the active entries of a ``dhash`` (in ``bank``;
    ``kind`` names another kind of hash, given in the parameter named after it)."""
    values = json_or_form()
    entry_id = values.get("entry_id")
    kind = kind_option(values)
    raw = raw_hash(values, kind)
    if entry_id not in (None, ""):
        target: dict[str, Any] = {"entry_id": int_option(values, "entry_id", 0, 2**62)}
    elif isinstance(raw, str) and raw.strip():
        target = {"hash_value": query_from_hash(raw, kind).value, "kind": kind.name}
    else:
        raise BadRequest(f"give an 'entry_id', or a '{kind.name}' ({kind.hex_digits} hex digits)")
    with timed("db"):
        disabled = get_banks().disable(disabled_by=moderator, bank=bank_option(values), **target)
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
    bank = bank_option(request.args) or DEFAULT_BANK
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
    values = json_or_form()
    if values.get("image_id") not in (None, ""):
        image_id = int_option(values, "image_id", 0, 2**62)
        return values, get_banks().target_from_image(image_id)
    values, query = query_from_request(with_features=True, feature_limit=BANK_FEATURES)
    if query.fingerprint is not None:
        return values, FlagTarget.from_fingerprint(query.fingerprint)
    return values, FlagTarget({query.kind.name: query.value})
