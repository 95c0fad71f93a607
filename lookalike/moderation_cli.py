"""``lookalike flag``, ``unflag``, ``check`` and ``banks``: moderation banks from the shell.

``check`` is built for upload hooks: exit code 3 when a file matches an active entry, 0 when
every file checked is clean, 1 when nothing could be checked, 2 for usage errors. It finds
flagged pictures mirrored, turned, cropped, framed or captioned too, and says how each differs.
"""

from __future__ import annotations

import getpass
import hashlib
import json
import secrets
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

import click

from lookalike import indexer
from lookalike.config import database_url
from lookalike.features.orb import BANK_FEATURES
from lookalike.fingerprint import ImageRejected, Rejection, fingerprint
from lookalike.hashes import hash_from_hex, hash_to_hex
from lookalike.kinds import DEFAULT_KIND
from lookalike.store.banks import DEFAULT_BANK, MAX_RADIUS, BankError, BankMatch, Banks, FlagTarget
from lookalike.store.db import open_pool

EXIT_FLAGGED = 3


@contextmanager
def open_banks() -> Iterator[Banks]:
    """The banks on the configured database; a bank error becomes a one-line message."""
    pool = open_pool(database_url(), max_size=2)
    try:
        yield Banks(pool)
    except BankError as error:
        raise click.ClickException(str(error)) from None
    finally:
        pool.close()


def _current_user() -> str:
    try:
        return getpass.getuser()
    except (OSError, KeyError):  # no login name in a bare container
        return "cli"


def _parse_hashes(values: tuple[str, ...]) -> list[int]:
    try:
        return [hash_from_hex(value) for value in values]
    except ValueError as error:
        raise click.BadParameter(str(error), param_hint="--dhash") from None


bank_option = click.option(
    "--bank", default=DEFAULT_BANK, show_default=True, help="Which bank (created on first flag)."
)
F = TypeVar("F", bound=Callable[..., Any])

image_ids_option = click.option(
    "--image-id", "image_ids", type=int, multiple=True, help="A stored image's id."
)


def dhashes_option(help_text: str) -> Callable[[F], F]:
    return click.option("--dhash", "dhashes", multiple=True, metavar="HEX", help=help_text)


by_option = click.option(
    "--by", "who", default=_current_user, help="Who is acting (default: your login name)."
)


def _read_target(path: Path) -> FlagTarget:
    """Fingerprint a file with its thumbnail, so moderators see later what was flagged, and its
    local features, so checks find it however it was edited."""
    try:
        return FlagTarget.from_fingerprint(
            fingerprint(
                path.read_bytes(),
                with_thumbnail=True,
                with_features=True,
                feature_limit=BANK_FEATURES,
            )
        )
    except OSError as error:
        raise ImageRejected(Rejection.UNREADABLE, error.strerror or str(error)) from None


@click.command("flag")
@click.argument("files", nargs=-1, type=click.Path(path_type=Path))
@image_ids_option
@dhashes_option("A raw dHash (lookalike hash).")
@bank_option
@click.option("--reason", help="Why it is flagged; shown to whoever's upload matches it.")
@by_option
def flag_command(
    files: tuple[Path, ...],
    image_ids: tuple[int, ...],
    dhashes: tuple[str, ...],
    bank: str,
    reason: str | None,
    who: str,
) -> None:
    """Add FILES (or --image-id / --dhash fingerprints) to a moderation bank.

    Later uploads within the bank's radius of them are reported by `lookalike check`.
    """
    hashes = _parse_hashes(dhashes)
    if not (files or image_ids or hashes):
        raise click.UsageError("give files to flag, or --image-id N, or --dhash HEX")
    flagged = 0
    with open_banks() as banks:
        targets: list[tuple[str, FlagTarget]] = []
        for path in files:
            try:
                targets.append((str(path), _read_target(path)))
            except ImageRejected as error:
                click.echo(f"{path}: {error}", err=True)
        targets += [(f"image {i}", banks.target_from_image(i)) for i in image_ids]
        targets += [(f"dHash {hash_to_hex(h)}", FlagTarget({DEFAULT_KIND: h})) for h in hashes]
        for label, target in targets:
            result = banks.flag(target, bank=bank, reason=reason, flagged_by=who)
            flagged += 1
            state = "flagged" if result.created else "already flagged"
            click.echo(
                f"{label}: {state} in {bank} as entry {result.entry.id} "
                f"(dHash {result.entry.dhash_hex})"
            )
    if not flagged:
        sys.exit(1)


@click.command("unflag")
@click.argument("files", nargs=-1, type=click.Path(path_type=Path))
@click.option("--entry", "entry_ids", type=int, multiple=True, help="An entry id (from check).")
@image_ids_option
@dhashes_option("Entries with exactly this dHash.")
@click.option("--bank", help="Only in this bank (default: every bank).")
@by_option
def unflag_command(
    files: tuple[Path, ...],
    entry_ids: tuple[int, ...],
    image_ids: tuple[int, ...],
    dhashes: tuple[str, ...],
    bank: str | None,
    who: str,
) -> None:
    """Disable the active entries of FILES' exact dHashes (or --entry / --image-id / --dhash).

    Disabled entries stop matching but stay in the bank's history. A near copy of a flagged
    file has another dHash: find its entry with `lookalike check` and use --entry.
    """
    hashes = _parse_hashes(dhashes)
    if not (files or entry_ids or image_ids or hashes):
        raise click.UsageError("give files to unflag, or --entry ID, --image-id N, --dhash HEX")
    disabled = 0
    with open_banks() as banks:
        for path in files:
            result = indexer.fingerprint_file(path)
            if result.fingerprint is None:
                click.echo(f"{path}: {result.reason}", err=True)
            else:
                hashes.append(result.fingerprint.hashes[DEFAULT_KIND])
        hashes += [banks.target_from_image(i).hashes[DEFAULT_KIND] for i in image_ids]
        changed = [banks.disable(disabled_by=who, entry_id=e, bank=bank) for e in entry_ids]
        changed += [banks.disable(disabled_by=who, hash_value=h, bank=bank) for h in hashes]
        for entry in (entry for entries in changed for entry in entries):
            disabled += 1
            click.echo(f"disabled entry {entry.id} in {entry.bank} (dHash {entry.dhash_hex})")
    if not disabled:
        raise click.ClickException("no active entry matched: nothing disabled")


@click.command("check")
@click.argument("files", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--bank", help="Check only this bank (default: every bank).")
@click.option(
    "--max-distance",
    type=click.IntRange(0, MAX_RADIUS),
    help="Override every bank's dHash radius (bits of 64).",
)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON list, one item per file.")
def check_command(
    files: tuple[Path, ...], bank: str | None, max_distance: int | None, as_json: bool
) -> None:
    """Check FILES against the active bank entries, edited copies of them too.

    Exit code 3 when any file matches, 0 when every checked file is clean, 1 when no file
    could be checked.
    """
    results = [indexer.fingerprint_file(path, as_query=True) for path in files]
    report: list[dict[str, object]] = []
    with open_banks() as banks:
        if bank is not None and not banks.has_bank(bank):
            raise click.BadParameter(f"no bank named {bank!r}", param_hint="--bank")
        for result in results:
            fp = result.fingerprint
            if fp is None:
                click.echo(f"{result.path}: {result.reason}", err=True)
                report.append({"file": str(result.path), "error": result.reason})
                continue
            matches = banks.check(fp.hashes, query=fp.query, bank=bank, max_distance=max_distance)
            report.append(
                {
                    "file": str(result.path),
                    "flagged": bool(matches),
                    "matches": [m.detail() for m in matches],
                }
            )
            if not as_json:
                click.echo(_describe(result.path, matches))
    if as_json:
        click.echo(json.dumps(report, indent=2))
    if any(item.get("flagged") for item in report):
        sys.exit(EXIT_FLAGGED)
    if all("error" in item for item in report):
        sys.exit(1)


def _describe(path: Path, matches: list[BankMatch]) -> str:
    if not matches:
        return f"{path}: clean"
    lines = [f"{path}: FLAGGED"]
    for match in matches:
        when = match.flagged_at.strftime("%Y-%m-%d %H:%M %Z")
        reason = f" ({match.reason})" if match.reason else ""
        lines.append(
            f"  {match.bank}: entry {match.entry_id}, {_how(match)}, flagged {when}" + reason
        )
    return "\n".join(lines)


def _how(match: BankMatch) -> str:
    """How it matched: the bits, or the features that agree, and the edits seen."""
    relation = match.relation
    if relation is not None and relation.method == "features":
        how = f"{relation.inliers} features agree"
    else:
        how = f"{match.distance} bits"
    edits = relation.edits if relation is not None else []
    return ", ".join([how, *edits])


@click.command("banks")
@click.argument("name", required=False)
@click.option("--dhash-radius", type=click.IntRange(0, MAX_RADIUS), help="Set NAME's radius.")
@click.option(
    "--phash-radius", type=click.IntRange(0, 64), help="Set NAME's pHash confirmation radius."
)
def banks_command(name: str | None, dhash_radius: int | None, phash_radius: int | None) -> None:
    """List the banks; with NAME and a radius option, create or tune that bank."""
    if (dhash_radius is not None or phash_radius is not None) and name is None:
        raise click.UsageError("name the bank whose radius to set")
    with open_banks() as banks:
        if dhash_radius is not None or phash_radius is not None:
            banks.configure(name, dhash_radius=dhash_radius, phash_radius=phash_radius)
        summaries = [s for s in banks.summaries() if name is None or s.name == name]
    if name is not None and not summaries:
        raise click.ClickException(f"no bank named {name!r}")
    if not summaries:
        click.echo("no banks yet: `lookalike flag FILE --bank NAME` creates one")
    for s in summaries:
        click.echo(
            f"{s.name:<20} dHash <= {s.dhash_radius:>2}, pHash <= {s.phash_radius:>2}  "
            f"{s.active_entries:>9,} active  {s.disabled_entries:>7,} disabled"
        )


@click.command("moderator-key")
@click.argument("name")
def moderator_key_command(name: str) -> None:
    """Make a new moderator API key for NAME, and the digest the web site is configured with.

    The site stores only the SHA-256 digest (LOOKALIKE_MODERATOR_KEYS), so its configuration
    holds nothing a reader could sign in with. Give the key to NAME; it is shown only once.
    """
    key = secrets.token_urlsafe(32)
    digest = hashlib.sha256(key.encode()).hexdigest()
    click.echo(f"key for {name} (shown once): {key}")
    click.echo(f"site setting: LOOKALIKE_MODERATOR_KEYS='{json.dumps({name: digest})}'")
