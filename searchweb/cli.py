"""``lookalike serve``: the search site on waitress, a production WSGI server."""

from __future__ import annotations

from collections.abc import Mapping

import click
import waitress

from lookalike.wording import plural
from searchweb import create_app
from searchweb.extensions import get_store


@click.command("serve")
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option(
    "--port",
    type=click.IntRange(1, 65535),
    default=8000,
    show_default=True,
    help="Port to listen on.",
)
@click.option(
    "--workers",
    type=click.IntRange(min=1),
    default=8,
    show_default=True,
    help="Requests handled at once (waitress threads; also database connections).",
)
def serve(host: str, port: int, workers: int) -> None:
    """Run the search site and JSON API on waitress.

    The database is $DATABASE_URL, or without it the embedded PostgreSQL under $LOOKALIKE_HOME
    that every lookalike command shares; settings are LOOKALIKE_* variables.
    """
    app = create_app({"DATABASE_POOL_SIZE": workers})
    with app.app_context():
        stats = get_store().stats()  # fails now, with one line, if the database is unreachable
    click.echo(
        f"serving {plural(stats.images, 'image')} on http://{host}:{port}/ with {workers} workers",
        err=True,
    )
    waitress.serve(
        app, host=host, port=port, threads=workers, ident="lookalike", **waitress_limits(app.config)
    )


BUFFERED_PER_CONNECTION = 64 * 1024


def waitress_limits(config: Mapping[str, object]) -> dict[str, object]:
    """How many connections waitress holds, how long a silent one lives, how much body it reads.

    waitress buffers each request (spooling big bodies to a temp file) before the app sees it,
    so the body limit must be waitress's own: it answers 413 as soon as a Content-Length says
    too much, or once a chunked body passes the limit, instead of reading it all first.
    Connections are polled (select() stops at 1024 descriptors) and checked for silence twice
    per timeout, so idle sockets are closed within 1.5 × SERVER_CHANNEL_TIMEOUT. Each one may
    hold 64 KB of headers and 64 KB of body in memory (the rest of a body goes to a temp file):
    about 130 MB for 1,000 connections that all stall mid-request.
    """
    timeout = int(config["SERVER_CHANNEL_TIMEOUT"])
    return {
        "connection_limit": config["SERVER_CONNECTION_LIMIT"],
        "channel_timeout": timeout,
        "cleanup_interval": max(1, timeout // 2),
        "asyncore_use_poll": True,
        "max_request_header_size": BUFFERED_PER_CONNECTION,
        "inbuf_overflow": BUFFERED_PER_CONNECTION,
        # waitress refuses a body of exactly max_request_body_size bytes; the app allows it.
        "max_request_body_size": int(config["MAX_CONTENT_LENGTH"]) + 1,
    }
