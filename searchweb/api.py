"""The JSON API: search, one image, statistics and the OpenAPI document describing them.

Exempt from CSRF: it takes no cookies, so a cross-site form cannot act as anyone.
"""

from __future__ import annotations

import json
from functools import cache
from importlib import resources

from flask import Blueprint, Response, current_app, jsonify
from werkzeug.exceptions import NotFound

from searchweb.extensions import get_store, timed
from searchweb.present import image_json, match_json
from searchweb.queries import parse_search_options, query_from_request, search_with

bp = Blueprint("api", __name__, url_prefix="/api")


@bp.post("/search")
def search() -> Response:
    """Multipart ``image`` (or ``url``/``dhash`` fields), or JSON ``{"url"}``/``{"dhash"}``."""
    values, query = query_from_request()
    options = parse_search_options(values, default_limit=current_app.config["RESULTS_PER_PAGE"])
    found = search_with(query, options)
    return jsonify(
        {
            "query": query.describe()
            | {
                "max_distance": options.max_distance,
                "sort": options.sort,
                "domain": options.domain,
                "limit": options.limit,
                "offset": options.offset,
            },
            "matches": [match_json(match, query.kind) for match in found.matches],
            "total": found.total,
        }
    )


@bp.get("/images/<int:image_id>")
def image(image_id: int) -> Response:
    with timed("db"):
        stored = get_store().image(image_id, sightings=current_app.config["SIGHTINGS_PER_MATCH"])
    if stored is None:
        raise NotFound(f"there is no image {image_id}")
    return jsonify(image_json(stored))


@bp.get("/stats")
def stats() -> Response:
    store = get_store()
    with timed("db"):
        counted = store.stats()
    return jsonify(
        {
            "images": counted.images,
            "pages": counted.pages,
            "sightings": counted.sightings,
            "database_bytes": counted.database_bytes,
            "feature_index_images": len(store.features),
        }
    )


@bp.get("/openapi.json")
def openapi() -> Response:
    return jsonify(openapi_document())


@cache
def openapi_document() -> dict[str, object]:
    """The API's OpenAPI 3.1 description, shipped beside this module."""
    text = resources.files("searchweb").joinpath("openapi.json").read_text(encoding="utf-8")
    return json.loads(text)
