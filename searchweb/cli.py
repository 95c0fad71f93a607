"""``lookalike serve``: the search site on waitress, a production WSGI server."""

from __future__ import annotations

import click
import waitress

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
        f"serving {stats.images:,} images on http://{host}:{port}/ with {workers} workers",
        err=True,
    )
    waitress.serve(app, host=host, port=port, threads=workers, ident="lookalike")
