"""The public check: ``POST /api/check`` tells an upload pipeline whether an image is flagged.

Without a key it says only which banks match, why, since when and how the upload differs
from the flagged picture (see ``searchweb.moderation``). An image (not a raw hash) is also
checked for mirrored, turned, cropped, framed and captioned copies of flagged pictures.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from flask import Blueprint, Response, jsonify

from lookalike.store.banks import MAX_RADIUS
from searchweb.extensions import csrf, timed
from searchweb.moderation.auth import key_required, request_has_moderator_key
from searchweb.moderation.banks import bank_option, get_banks
from searchweb.queries import int_option, query_from_request

bp = Blueprint("check", __name__)


@bp.post("/api/check")
@csrf.exempt
def check() -> Response:
    """Is this image (multipart ``image``, or JSON ``url``/``dhash``) in a bank?"""
    values, query = query_from_request(as_query=True)
    fp = query.fingerprint
    hashes = fp.hashes if fp else {query.kind.name: query.value}
    bank = bank_option(values)
    keyed = request_has_moderator_key()
    max_distance = _max_distance(values)
    if max_distance is not None and not keyed:
        raise key_required(
            "max_distance needs a moderator key: checking at chosen radii tells the distance"
        )
    with timed("db"):
        matches = get_banks().check(
            hashes, query=fp.query if fp else None, bank=bank, max_distance=max_distance
        )
    if keyed:
        described = [m.detail() for m in matches]
    else:  # ordered by bank and date, not by distance, which the order would otherwise tell
        described = sorted(
            (m.public() for m in matches), key=lambda m: (m["bank"], m["flagged_at"])
        )
    return jsonify({"flagged": bool(matches), "matches": described})


def _max_distance(values: Mapping[str, Any]) -> int | None:
    """None (each bank's own radius) unless the request names one."""
    if values.get("max_distance") in (None, ""):
        return None
    return int_option(values, "max_distance", 0, MAX_RADIUS)
