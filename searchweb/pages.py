"""The pages people use: the search form, results, the compare view and thumbnails."""

from __future__ import annotations

from flask import Blueprint, Response, current_app, g, redirect, render_template, request, url_for
from werkzeug.exceptions import BadRequest, NotFound

from lookalike.features.relation import Relation
from lookalike.fingerprint import IMAGE_MEDIA_TYPES
from searchweb.extensions import get_store, timed
from searchweb.queries import (
    SORT_LABELS,
    ImageQuery,
    int_option,
    kind_option,
    parse_search_options,
    query_from_hash,
    query_from_upload,
    query_from_url,
    raw_hash,
    search_with,
    webp_data_url,
)
from searchweb.query_cache import query_cache

bp = Blueprint("pages", __name__)

THUMBNAIL_CACHE_SECONDS = 24 * 3600
MAX_PAGE = 100_000


@bp.get("/")
def home() -> str:
    with timed("db"):
        stats = get_store().stats()
    return render_template("home.html", stats=stats, image_media_types=",".join(IMAGE_MEDIA_TYPES))


@bp.post("/search")
def submit_search() -> Response:
    """Fingerprint the upload (or fetched URL), then redirect to its results page."""
    upload = request.files.get("image")
    kind = kind_option(request.form)
    if upload is not None and upload.filename:
        query = query_from_upload(upload, kind)
    elif request.form.get("url", "").strip():
        query = query_from_url(request.form["url"], kind)
    else:
        raise BadRequest("Choose an image file (or drop or paste one), or give an image URL.")
    options = parse_search_options(
        request.form, default_limit=current_app.config["RESULTS_PER_PAGE"]
    )
    token = query_cache().remember(query)
    target = url_for(
        "pages.results", **query.url_args(), q=token, max_distance=options.max_distance
    )
    return redirect(target, code=303)


@bp.get("/search")
def results() -> str:
    """Matches for the hash in the query string, sorted, filtered and paged by it; while this
    process remembers the query's picture (``q``), its edited copies too."""
    query = _recalled_query()
    per_page = current_app.config["RESULTS_PER_PAGE"]
    page_number = _page_number()
    options = parse_search_options(
        {**request.args, "limit": per_page, "offset": (page_number - 1) * per_page},
        default_limit=per_page,
    )
    found = search_with(query, options, with_domains=True)
    pages = max(1, -(-found.total // per_page))
    return render_template(
        "results.html",
        query=query,
        query_image=webp_data_url(query.thumbnail),
        options=options,
        found=found,
        page_number=page_number,
        page_count=pages,
        sort_labels=SORT_LABELS,
        results_url=_results_url,
    )


@bp.get("/compare/<int:image_id>")
def compare(image_id: int) -> str:
    """The query and one stored image side by side, with the searched hash's bits compared,
    and for a query image how the match differs from it, the shared part outlined on both."""
    query = _recalled_query()
    with timed("db"):
        stored = get_store().image(image_id, sightings=current_app.config["SIGHTINGS_PER_MATCH"])
    if stored is None:
        raise NotFound(f"there is no image {image_id}")
    relation = _relation(query, image_id)
    compared, matched_kind = _compared_hashes(query, stored.hashes, relation)
    stored_hash = stored.hashes[matched_kind]
    return render_template(
        "compare.html",
        query=query,
        query_image=webp_data_url(query.thumbnail),
        stored=stored,
        relation=relation,
        as_matched=compared != query.value,
        inside_frame=matched_kind != query.kind.name,
        distance=query.kind.distance(compared, stored_hash),
        bits=_bit_grid(query.kind.bits, compared, stored_hash),
        back_url=_results_url(),
        # where the results page listed it ("match 2 of 9"); 0 when opened from elsewhere
        rank=int_option(request.args, "rank", 0, 1_000_000),
        of=int_option(request.args, "of", 0, 1_000_000_000),
    )


@bp.get("/thumbnails/<int:image_id>.webp")
def thumbnail(image_id: int) -> Response:
    """The WebP made from the crawled image at crawl time (never anything uploaded)."""
    with timed("db"):
        webp = get_store().thumbnail(image_id)
    if webp is None:
        raise NotFound(f"no thumbnail for image {image_id}")
    response = Response(webp, mimetype="image/webp")
    response.cache_control.public = True
    response.cache_control.max_age = THUMBNAIL_CACHE_SECONDS
    return response


def _relation(query: ImageQuery, image_id: int) -> Relation | None:
    """How the stored image differs from the query image, at the results page's radius."""
    if query.description is None:
        return None
    options = parse_search_options(request.args, default_limit=1)
    with timed("db"):
        return get_store().relate(
            image_id, query.description, kind=query.kind.name, max_distance=options.max_distance
        )


def search_already_counted() -> bool:
    """Whether this is the results page a form search redirected to: the search's POST was
    counted against SEARCH_RATE_LIMIT, so one search through the form counts once.
    """
    if request.endpoint != "pages.results":
        return False
    if "search_already_counted" not in g:  # the limiter may ask more than once per request
        g.search_already_counted = query_cache().first_showing(request.args.get("q"))
    return g.search_already_counted


def _recalled_query() -> ImageQuery:
    """The hash in the URL, with its picture if this process still remembers the query."""
    kind = kind_option(request.args)
    by_hash = query_from_hash(str(raw_hash(request.args, kind) or ""), kind)
    return query_cache().recall(request.args.get("q"), by_hash) or by_hash


def _page_number() -> int:
    return int_option(request.args, "page", 1, MAX_PAGE, minimum=1)


def _results_url(**changes: object) -> str:
    """This results page's URL with some parameters changed (None removes one)."""
    kind = kind_option(request.args)
    args = {
        key: request.args.get(key)
        for key in ("kind", kind.name, "hash", "q", "max_distance", "sort", "domain", "page")
    }
    args.update(changes)
    return url_for("pages.results", **{k: v for k, v in args.items() if v not in (None, "")})


def _compared_hashes(
    query: ImageQuery, stored: dict[str, int], relation: Relation | None
) -> tuple[int, str]:
    """The query's hash that found the match and the kind of the stored hash it was near:
    that of its nearest view (mirrored, turned or trimmed) to the match's own hash or to the
    hash of what is inside the match's frame, when a hash found it, as the results page's
    distance is; else its own hash and the match's."""
    own = query.kind.name
    if relation is None or relation.method != "hash" or query.description is None:
        return query.value, own
    pairs = [
        (view.hashes[own], kind.name)
        for view in query.description.views
        for kind in view.stored_kinds(query.kind)
        if kind.name in stored
    ]
    return min(pairs, key=lambda pair: query.kind.distance(pair[0], stored[pair[1]]))


def _bit_grid(bits: int, compared: int, stored: int) -> list[list[tuple[bool, bool]]]:
    """Rows of 8 (query bit, stored bit) pairs, in the order of the hex digits."""
    query_bits, stored_bits = f"{compared:0{bits}b}", f"{stored:0{bits}b}"
    return [
        [(query_bits[i] == "1", stored_bits[i] == "1") for i in range(row, min(row + 8, bits))]
        for row in range(0, bits, 8)
    ]
