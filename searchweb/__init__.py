"""Lookalike's search site: upload an image or give its URL, see the pages with copies of it.

``create_app()`` is found by ``flask --app searchweb run``; ``lookalike serve`` runs the same
app on waitress. Settings: ``searchweb.settings`` (override with ``LOOKALIKE_*`` variables).
"""

from __future__ import annotations

from collections.abc import Mapping

from flask import Flask
from werkzeug.middleware.proxy_fix import ProxyFix

from searchweb import api, moderation, pages
from searchweb.errors import register_error_handlers
from searchweb.extensions import (
    add_server_timing,
    csrf,
    init_database_health,
    init_decode_budget,
    init_rate_limits,
)
from searchweb.forms import SiteRequest
from searchweb.inputs import init_input_checks
from searchweb.moderation.auth import request_has_moderator_key
from searchweb.present import register_template_helpers
from searchweb.query_cache import init_query_cache
from searchweb.security import add_security_headers
from searchweb.settings import DEFAULTS, persistent_secret_key

# Endpoints that fingerprint or search: they share the per-client SEARCH_RATE_LIMIT.
EXPENSIVE_ENDPOINTS = [
    "pages.submit_search",
    "pages.results",
    "pages.compare",
    "api.search",
    "check.check",
]


def _not_counted_again() -> bool:
    """Requests the search limit lets through: upload pipelines holding a moderator key, and
    the results page of a form search already counted when it was posted.
    """
    return request_has_moderator_key() or pages.search_already_counted()


def create_app(test_config: Mapping[str, object] | None = None) -> Flask:
    """The site, configured from DEFAULTS, then ``LOOKALIKE_*`` variables, then test_config."""
    app = Flask(__name__)
    app.request_class = SiteRequest
    init_input_checks(app)
    app.json.sort_keys = False  # keep JSON in the documented order: query, matches, total
    app.config.from_mapping(DEFAULTS)
    app.config.from_prefixed_env("LOOKALIKE")
    if test_config is not None:
        app.config.from_mapping(test_config)
    if not app.config.get("SECRET_KEY"):
        app.config["SECRET_KEY"] = persistent_secret_key()
    if proxies := app.config["TRUSTED_PROXIES"]:
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=proxies, x_proto=proxies, x_host=proxies)

    csrf.init_app(app)
    csrf.exempt(api.bp)
    app.register_blueprint(pages.bp)
    app.register_blueprint(api.bp)
    for blueprint in moderation.BLUEPRINTS:
        app.register_blueprint(blueprint)
    init_database_health(app)  # before the rate limits: see its docstring
    init_rate_limits(app, EXPENSIVE_ENDPOINTS, exempt_when=_not_counted_again)
    init_query_cache(app)
    init_decode_budget(app)
    register_error_handlers(app)
    register_template_helpers(app)
    app.after_request(add_security_headers)
    app.after_request(add_server_timing)
    return app
