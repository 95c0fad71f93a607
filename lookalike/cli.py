"""The ``lookalike`` command: a thin shell over the core, the crawler and the web site.

The crawler and the site add their commands (``crawl``, ``serve``…) through the
``lookalike.commands`` entry-point group, so this module imports neither Scrapy nor Flask.
Exit codes: 0 success, 1 nothing could be done, 2 usage error; user errors never show a
traceback.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

import click
import psycopg
from tqdm import tqdm

from lookalike import indexer, kinds
from lookalike.config import DatabaseUnavailable, database_url, embedded_pgdata
from lookalike.fingerprint import ImageRejected, Rejection
from lookalike.plugins import PluginGroup
from lookalike.store import DEFAULT_LIMIT, DEFAULT_MAX_DISTANCE, Store, crawls, migrate
from lookalike.store.db import apply_migrations, connect, describe_server, open_pool
from lookalike.wording import first_line, plural

BENCH_EXTRA_HINT = " (pip install 'lookalike[bench]')"


class LookalikeGroup(PluginGroup):
    """Adds plug-in commands and turns expected failures into one-line errors."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except (DatabaseUnavailable, ImageRejected) as error:
            raise click.ClickException(str(error)) from None
        except psycopg.OperationalError as error:
            reason = first_line(error, "connection lost")
            raise click.ClickException(f"database error: {reason}") from None


@click.group(
    cls=LookalikeGroup,
    plugin_group="lookalike.commands",
    lazy_commands={
        "bench": "benchmarks.bench:bench",
        # the moderation commands load the banks only when one of them runs
        "flag": "lookalike.moderation_cli:flag_command",
        "unflag": "lookalike.moderation_cli:unflag_command",
        "check": "lookalike.moderation_cli:check_command",
        "banks": "lookalike.moderation_cli:banks_command",
        "moderator-key": "lookalike.moderation_cli:moderator_key_command",
    },
    missing_hint=BENCH_EXTRA_HINT,
    context_settings={"help_option_names": ["-h", "--help"]},
)
@click.version_option(package_name="lookalike")
def cli() -> None:
    """Reverse image search: fingerprint images, find pages with near-identical copies.

    The database is $DATABASE_URL, or an embedded PostgreSQL under $LOOKALIKE_HOME.
    """


@contextmanager
def open_store(max_connections: int = 2) -> Iterator[Store]:
    """The store on the configured database, schema applied."""
    with Store(open_pool(database_url(), max_size=max_connections)) as store:
        yield store


@cli.command("migrate")
@click.option(
    "--status", is_flag=True, help="List each migration and the functions' state; change nothing."
)
def migrate_command(status: bool) -> None:
    """Apply pending schema migrations and changed functions and views, one line each."""
    url = database_url()
    if status:
        with connect(url) as conn:
            click.echo("\n".join(migrate.status(conn, describe_server(url))))
        return
    if not apply_migrations(url, on_step=click.echo):
        click.echo(f"{_where(url)} is up to date")


@cli.command("init-db")
def init_db() -> None:
    """Create or update the schema: the same as `lookalike migrate` (safe to repeat)."""
    url = database_url()
    apply_migrations(url, on_step=click.echo)
    click.echo(f"schema applied to {_where(url)}")


def _where(url: str) -> str:
    pgdata = embedded_pgdata()
    return f"the embedded PostgreSQL in {pgdata}" if pgdata else describe_server(url)


@cli.command("db-url")
def db_url_command() -> None:
    """Print the URL of the database in use ($DATABASE_URL or the embedded server's)."""
    click.echo(database_url())


@cli.command(
    "psql",
    context_settings={"ignore_unknown_options": True, "help_option_names": []},
)
@click.argument("psql_args", nargs=-1, type=click.UNPROCESSED)
def psql_command(psql_args: tuple[str, ...]) -> None:
    """Open psql on the database in use, passing PSQL_ARGS through, such as -c "SELECT 1".

    PSQL_ARGS go to psql as they are (`lookalike psql --help` is psql's own help).
    """
    psql = shutil.which("psql")
    if psql is None:
        raise click.ClickException("psql not found: install the PostgreSQL client")
    url = database_url()
    apply_migrations(url)  # so similar_images() and friends exist on a database never used yet
    os.execv(psql, ["psql", "--dbname", url, *psql_args])  # noqa: S606 (psql replaces us)


@cli.command("hash")
@click.argument("files", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="Print one JSON list.")
def hash_command(files: tuple[Path, ...], as_json: bool) -> None:
    """Print the fingerprint of each FILE: each kind's hash (dHash, pHash), width×height, file."""
    results = [indexer.fingerprint_file(path) for path in files]
    for result in results:
        if result.reason:
            click.echo(f"{result.path}: {result.reason}", err=True)
    hashed = [r for r in results if r.fingerprint]
    if as_json:
        click.echo(json.dumps([{"file": str(r.path), **r.fingerprint.to_dict()} for r in hashed]))
    else:
        for r in hashed:
            fp = r.fingerprint
            # columns every image has: --json adds the hash of what is inside a frame
            hashes = "  ".join(
                fp.hex(name) for name in fp.hashes if kinds.get(name).searched_with is None
            )
            click.echo(f"{hashes}  {fp.width}×{fp.height}  {r.path}")
    if not hashed:
        sys.exit(1)


@cli.command("index")
@click.argument("paths", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--workers", type=click.IntRange(min=1), help="Processes (default: every core).")
@click.option(
    "--no-thumbnails",
    is_flag=True,
    help="Skip the small WebP the site shows for each image (indexing runs 3–4× faster).",
)
def index_command(paths: tuple[Path, ...], workers: int | None, no_thumbnails: bool) -> None:
    """Fingerprint every image under PATHS (recursively) and record it.

    Each file is recorded as a sighting with its file:// URL on its folder's page. Files that
    are not images are listed with the reason and the rest goes on.
    """
    files, missing = indexer.find_files(paths)
    for result in missing:
        click.echo(f"{result.path}: {result.reason}", err=True)
    with (
        indexer.fingerprinting(files, workers, with_thumbnails=not no_thumbnails) as results,
        open_store() as store,
    ):
        progress = tqdm(total=len(files), unit="img", disable=None, file=sys.stderr)
        with progress:

            def report(result: indexer.FileResult) -> None:
                progress.update()
                if result.reason:
                    progress.write(f"{result.path}: {result.reason}", file=sys.stderr)

            summary = indexer.index_files(store, results, on_result=report)
    summary.rejected.update({Rejection.NO_SUCH_FILE: len(missing)} if missing else {})
    rejected = sum(summary.rejected.values())
    reasons = ", ".join(f"{kind}: {n}" for kind, n in summary.rejected.most_common())
    click.echo(
        f"indexed {plural(summary.indexed, 'file')} ({plural(summary.new_images, 'new image')}, "
        f"{plural(summary.duplicates, 'duplicate')}, {summary.already_known} already known); "
        f"rejected {rejected}" + (f" ({reasons})" if reasons else "")
    )
    if summary.indexed == 0:
        sys.exit(1)


@cli.command("search")
@click.argument("image", type=click.Path(path_type=Path))
@click.option(
    "--max-distance",
    type=click.IntRange(0, 64),
    default=DEFAULT_MAX_DISTANCE,
    show_default=True,
    help="Largest distance (differing bits) that counts as a match.",
)
@click.option(
    "--kind",
    type=click.Choice([kind.name for kind in kinds.searchable_kinds()]),
    default=kinds.DEFAULT_KIND,
    show_default=True,
    help="Which kind of hash to search by.",
)
@click.option(
    "--limit",
    type=click.IntRange(min=1),
    default=DEFAULT_LIMIT,
    show_default=True,
    help="Most matching images to list.",
)
@click.option(
    "--hash-only",
    is_flag=True,
    help="Only copies near in the hash itself: no mirrored, turned, cropped or framed ones.",
)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON list of matches.")
def search_command(
    image: Path, max_distance: int, kind: str, limit: int, hash_only: bool, as_json: bool
) -> None:
    """List stored images that show IMAGE, edited or not, best match first."""
    result = indexer.fingerprint_file(image, as_query=not hash_only)
    if result.fingerprint is None:
        raise click.ClickException(f"{image}: {result.reason}")
    query = result.fingerprint.hashes[kind]
    with open_store() as store:
        if not hash_only:
            store.refresh_features()
        matches = store.search(
            query,
            kind=kind,
            max_distance=max_distance,
            limit=limit,
            robust=result.fingerprint.query,
        )
    if as_json:
        click.echo(json.dumps([match.to_json() for match in matches], indent=2))
        return
    if not matches:
        click.echo(f"no matches within {max_distance} bits of {result.fingerprint.hex(kind)}")
        return
    click.echo(f"{'bits':>4}  {'size':>11}  image  on page")
    for match in matches:
        size = f"{match.width}×{match.height}"
        edits = match.relation.edits if match.relation else []
        for sighting in match.sightings or [None]:
            where = (
                f"{as_typed(sighting.image_url)}  on {as_typed(sighting.page_url)}"
                if sighting
                else "(no sightings)"
            )
            click.echo(f"{match.distance:>4}  {size:>11}  {where}")
        if edits:
            click.echo(f"{'':>4}  {'':>11}  ({', '.join(edits)})")


def as_typed(url: str) -> str:
    """A ``file://`` URL as a path (relative to the working folder when inside it); others as is."""
    parts = urlsplit(url)
    if parts.scheme != "file":
        return url
    path = Path(unquote(parts.path))
    shown = str(path.relative_to(Path.cwd())) if path.is_relative_to(Path.cwd()) else str(path)
    return shown + "/" if url.endswith("/") and shown != "/" else shown


@cli.command("stats")
def stats_command() -> None:
    """Counts of images, pages and sightings, the database size and the latest crawls."""
    with open_store() as store:
        stats = store.stats()
        with store.pool.connection() as conn:
            recent = crawls.recent_crawls(conn, limit=5)
    click.echo(f"images     {stats.images:>12,}")
    click.echo(f"pages      {stats.pages:>12,}")
    click.echo(f"sightings  {stats.sightings:>12,}")
    click.echo(f"database   {_human_bytes(stats.database_bytes):>12}")
    if recent:
        click.echo("recent crawls:")
        for crawl in recent:
            click.echo(f"  {crawl.started_at:%Y-%m-%d %H:%M}  {crawl.one_line()}")


def _human_bytes(count: float) -> str:
    for unit in ("B", "kB", "MB", "GB"):
        if count < 1024:
            return f"{count:.0f} {unit}" if unit == "B" else f"{count:.1f} {unit}"
        count /= 1024
    return f"{count:.1f} TB"


def main(argv: list[str] | None = None) -> None:
    """Console-script entry point."""
    cli.main(args=argv, prog_name="lookalike")
