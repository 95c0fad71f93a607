"""Every failure becomes a clear answer with the right status, never a traceback.

Paths under ``/api/`` get JSON ``{"error": {"status": 413, "title": …, "message": …}}``;
everything else gets the error page. Core exceptions (a rejected image, a refused URL, no
database, an unknown bank) map to statuses here once, so every blueprint can simply let them
propagate.
"""

from __future__ import annotations

import logging

import psycopg
from flask import Flask, Response, g, jsonify, render_template, request
from flask_wtf.csrf import CSRFError
from werkzeug.exceptions import (
    BadRequest,
    HTTPException,
    InternalServerError,
    NotFound,
    RequestEntityTooLarge,
    SecurityError,
    ServiceUnavailable,
    UnprocessableEntity,
    UnsupportedMediaType,
)

from lookalike.config import DatabaseUnavailable
from lookalike.fetch import FetchError, ResponseTooLarge
from lookalike.fingerprint import ImageRejected, Rejection
from lookalike.store.banks import BankError, UnknownBank
from searchweb.extensions import database_health

log = logging.getLogger(__name__)

# What queries raise when the database was dropped and re-created empty under the site.
MISSING_SCHEMA = (psycopg.errors.UndefinedTable, psycopg.errors.UndefinedFunction)

# The status of a rejected image, by kind; every other kind is the sender's fault: 400.
REJECTION_STATUS: dict[Rejection, type[HTTPException]] = {
    Rejection.TOO_LARGE: RequestEntityTooLarge,
    Rejection.TOO_LONG: RequestEntityTooLarge,
    Rejection.UNSUPPORTED_FORMAT: UnsupportedMediaType,
}


def http_error_for(error: Exception) -> HTTPException:
    """The HTTP error a core exception stands for (500 for anything unexpected)."""
    if isinstance(error, HTTPException):
        return error
    reason = str(error)
    if isinstance(error, ImageRejected):
        return REJECTION_STATUS.get(error.kind, BadRequest)(reason)
    if isinstance(error, BankError):
        return (NotFound if isinstance(error, UnknownBank) else BadRequest)(reason)
    if isinstance(error, ResponseTooLarge):
        return RequestEntityTooLarge(reason)
    if isinstance(error, FetchError):
        return UnprocessableEntity(reason)
    if isinstance(error, DatabaseUnavailable):
        return ServiceUnavailable(reason, retry_after=database_health().retry_after)
    if isinstance(error, psycopg.OperationalError):
        return database_health().unavailable()
    if isinstance(error, MISSING_SCHEMA):
        return ServiceUnavailable(
            "the database lost its tables; they are being created again",
            retry_after=database_health().retry_after,
        )
    return InternalServerError("something went wrong on our side; it has been logged")


def _note_database_failure(error: Exception) -> None:
    """An outage, or tables gone: the next requests fail fast, then a fresh pool recovers."""
    if isinstance(error, (DatabaseUnavailable, *MISSING_SCHEMA)) or _connection_lost(error):
        database_health().failed()


def _connection_lost(error: Exception) -> bool:
    """A failure of the server or the connection, not of one query (a lock or statement
    timeout, a cancelled query): no SQLSTATE (the client saw the connection fail or the pool
    time out), a connection exception (08), an operator intervention such as a shutdown (57P),
    or the database gone (3D000).
    """
    if not isinstance(error, psycopg.OperationalError):
        return False
    return error.sqlstate is None or error.sqlstate.startswith(("08", "57P", "3D"))


def wants_json() -> bool:
    return request.path.startswith("/api/")


def render_error(error: Exception) -> tuple[Response | str, int, dict[str, str]]:
    _note_database_failure(error)
    http_error = http_error_for(error)
    if http_error.code == 500 and error is not http_error:
        log.exception("unexpected error on %s %s", request.method, request.path)
    status = http_error.code or 500
    message = http_error.description or http_error.name
    if isinstance(error, CSRFError):
        message = "The form expired or was sent from another site. Reload the page and try again."
    if wants_json():
        body = {"error": {"status": status, "title": http_error.name, "message": message}}
        response = jsonify(body)
    elif isinstance(http_error, SecurityError):
        # A Host outside TRUSTED_HOSTS: Flask built no URL adapter, so no page can link anywhere.
        response = Response(f"{status} {http_error.name}: {message}\n", mimetype="text/plain")
    else:
        response = render_template(
            "error.html", status=status, title=http_error.name, message=message
        )
    # Keep what the error itself says about the request, e.g. Allow on a 405.
    headers = {k: v for k, v in http_error.get_headers() if k.lower() != "content-type"}
    g.error_retry_after = headers.get("Retry-After")  # see init_database_health
    return response, status, headers


def register_error_handlers(app: Flask) -> None:
    for kind in (HTTPException, ImageRejected, FetchError, DatabaseUnavailable, Exception):
        app.register_error_handler(kind, render_error)
