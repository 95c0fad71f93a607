"""The moderator pages: banks, their entries, where an entry appears, flagging and disabling."""

from __future__ import annotations

from typing import Any

from flask import (
    Blueprint,
    Response,
    abort,
    current_app,
    flash,
    redirect,
    render_template,
    request,
    url_for,
)
from werkzeug.exceptions import NotFound

from lookalike.store.banks import DEFAULT_BANK
from searchweb.extensions import get_store, timed
from searchweb.moderation.auth import login_required
from searchweb.moderation.banks import ENTRIES_PER_PAGE, bank_option, get_banks, short_text
from searchweb.queries import int_option

bp = Blueprint("moderation", __name__)


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
    bank = bank_option(request.form) or DEFAULT_BANK
    with timed("db"):
        bank_store = get_banks()
        result = bank_store.flag(
            bank_store.target_from_image(image_id),
            bank=bank,
            reason=short_text(request.form, "reason"),
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
