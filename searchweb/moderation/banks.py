"""What the moderation blueprints share: the banks on the site's pool and the options they read."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from flask import current_app, request
from werkzeug.exceptions import BadRequest

from lookalike.store.banks import Banks
from searchweb.extensions import get_store

ENTRIES_PER_PAGE = 50
_BANKS_KEY = "lookalike_banks"


def get_banks() -> Banks:
    """The banks on the site's own connection pool, one for the app: its feature index is
    read from the database once, then only what was flagged since."""
    pool = get_store().pool  # first: it answers 503 while the database is down
    banks = current_app.extensions.get(_BANKS_KEY)
    if banks is None:
        banks = current_app.extensions.setdefault(_BANKS_KEY, Banks(pool))
    return banks


def json_or_form() -> Mapping[str, Any]:
    """The request's JSON object, else its form (JSON that is not an object: 400)."""
    if request.mimetype == "application/json":
        body = request.get_json(silent=True)
        if not isinstance(body, dict):
            raise BadRequest("the JSON body must be an object")
        return body
    return request.form


def bank_option(values: Mapping[str, Any]) -> str | None:
    """The ``bank`` named, or None for every bank (or the default one, as the caller says)."""
    bank = values.get("bank")
    if bank in (None, ""):
        return None
    if not isinstance(bank, str):
        raise BadRequest(f"bank must be a name, not {bank!r}")
    return bank.strip()


def short_text(values: Mapping[str, Any], name: str, limit: int = 500) -> str | None:
    """``values[name]`` stripped, None when absent or blank; 400 past ``limit`` characters."""
    value = values.get(name)
    if value in (None, ""):
        return None
    if not isinstance(value, str) or len(value) > limit:
        raise BadRequest(f"{name} must be text of at most {limit} characters")
    return value.strip() or None
