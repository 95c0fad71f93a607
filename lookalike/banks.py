"""Moderation banks: flag fingerprints, disable entries, check images against the active ones.

The matching itself is the ``bank_matches`` SQL function (multi-index hashing over the
``bank_entries`` chunk indexes, each bank's radius and pHash confirmation), so the CLI, the
web site and psql users get the same answer. This module only turns requests into it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import psycopg
from psycopg import sql
from psycopg.rows import class_row
from psycopg_pool import ConnectionPool

from lookalike.fingerprint import Fingerprint
from lookalike.hashes import from_bigint, to_bigint

DEFAULT_BANK = "banned"
MAX_RADIUS = 14  # the MIH probes' reach (hash_chunk_probes); unrelated photos start near 13


class BankError(ValueError):
    """A request a bank cannot honour; ``str(error)`` is a one-line reason for a person."""


class UnknownBank(BankError):
    """No bank (or entry) by that name or id."""


@dataclass(frozen=True, slots=True)
class FlagTarget:
    """What gets flagged: a fingerprint, from a file, a stored image or a raw dHash."""

    dhash: int
    phash: int | None = None
    sha256: str | None = None
    image_id: int | None = None
    thumbnail: bytes | None = None

    @classmethod
    def from_fingerprint(cls, fp: Fingerprint) -> FlagTarget:
        return cls(fp.dhash, fp.phash, fp.sha256, thumbnail=fp.thumbnail)


@dataclass(frozen=True, slots=True)
class BankMatch:
    """An active entry an image matched. Only bank, reason and flagged_at are public."""

    entry_id: int
    bank: str
    distance: int
    reason: str | None
    flagged_at: datetime

    def public(self) -> dict[str, object]:
        """What an anonymous checker may see. No distance: with it, a few dozen checks that flip
        one bit at a time walk a query onto the entry's exact dHash.
        """
        return {"bank": self.bank, "reason": self.reason, "flagged_at": self.flagged_at.isoformat()}

    def detail(self) -> dict[str, object]:
        """Everything about the match, for moderators and the local CLI."""
        return {
            "entry_id": self.entry_id,
            "bank": self.bank,
            "distance": self.distance,
            "reason": self.reason,
            "flagged_at": self.flagged_at.isoformat(),
        }


@dataclass(frozen=True, slots=True)
class Entry:
    id: int
    bank: str
    dhash_hex: str
    phash_hex: str | None
    sha256: str | None
    image_id: int | None
    reason: str | None
    flagged_by: str
    flagged_at: datetime
    active: bool
    disabled_by: str | None
    disabled_at: datetime | None
    has_thumbnail: bool


@dataclass(frozen=True, slots=True)
class FlagResult:
    entry: Entry
    created: bool  # False: the bank already had an active entry for this fingerprint


@dataclass(frozen=True, slots=True)
class BankSummary:
    name: str
    dhash_radius: int
    phash_radius: int
    active_entries: int
    disabled_entries: int
    created_at: datetime


@dataclass(frozen=True, slots=True)
class FlaggedSighting:
    """A crawled page showing a flagged image or a near copy (a row of ``flagged_sightings``)."""

    image_id: int
    distance: int
    image_url: str
    page_url: str
    page_title: str | None
    domain: str | None
    alt_text: str | None
    first_seen: datetime
    last_seen: datetime


_ENTRY_COLUMNS = sql.SQL("""
    e.id, b.name AS bank, hash_to_hex(e.dhash) AS dhash_hex, hash_to_hex(e.phash) AS phash_hex,
    e.sha256, e.image_id, e.reason, e.flagged_by,
    e.flagged_at, e.active, e.disabled_by, e.disabled_at,
    e.thumbnail IS NOT NULL AS has_thumbnail
""")


class Banks:
    """The moderation banks in the database behind ``pool``."""

    def __init__(self, pool: ConnectionPool) -> None:
        self.pool = pool

    def check(
        self,
        dhash: int,
        phash: int | None = None,
        *,
        bank: str | None = None,
        max_distance: int | None = None,
    ) -> list[BankMatch]:
        """Active entries ``dhash`` (confirmed by ``phash`` if given) matches, closest first.

        ``bank`` None checks every bank; ``max_distance`` None uses each bank's radius.
        """
        if max_distance is not None and not 0 <= max_distance <= MAX_RADIUS:
            raise BankError(f"max_distance must be 0 to {MAX_RADIUS}, got {max_distance}")
        with self.pool.connection() as conn:
            if bank is not None:
                self._bank_id(conn, bank)
            cursor = conn.cursor(row_factory=class_row(BankMatch))
            return cursor.execute(
                """
                SELECT * FROM bank_matches(%s::bigint, %s::bigint, %s::text, %s::integer)
                ORDER BY distance, bank, entry_id
                """,
                (to_bigint(dhash), _optional_bigint(phash), bank, max_distance),
            ).fetchall()

    def has_bank(self, name: str) -> bool:
        with self.pool.connection() as conn:
            return (
                conn.execute("SELECT 1 FROM banks WHERE name = %s", (name,)).fetchone() is not None
            )

    def flag(
        self, target: FlagTarget, *, bank: str, reason: str | None, flagged_by: str
    ) -> FlagResult:
        """Add ``target`` to ``bank`` (created on first use); flagging it again is a no-op."""
        with self.pool.connection() as conn, conn.transaction():
            bank_id = self._ensure_bank(conn, bank)
            if target.image_id is None and target.sha256 is not None:
                target = _linked_to_stored_image(conn, target)
            existing = _active_entry_id(conn, bank_id, target)
            if existing is not None:  # checked first: a failed INSERT would use up an id
                return FlagResult(self._entry(conn, existing), created=False)
            row = conn.execute(
                """
                INSERT INTO bank_entries
                    (bank_id, dhash, phash, sha256, image_id, thumbnail, reason, flagged_by)
                VALUES (%s, %s, %s, %s, %s, %s, %s, %s)
                ON CONFLICT (bank_id, dhash, (coalesce(phash, 0))) WHERE active DO NOTHING
                RETURNING id
                """,
                (
                    bank_id,
                    to_bigint(target.dhash),
                    _optional_bigint(target.phash),
                    target.sha256,
                    target.image_id,
                    target.thumbnail,
                    reason,
                    flagged_by,
                ),
            ).fetchone()
            created = row is not None
            entry_id = row[0] if row else _active_entry_id(conn, bank_id, target)  # lost a race
            assert entry_id is not None
            return FlagResult(self._entry(conn, entry_id), created)

    def target_from_image(self, image_id: int) -> FlagTarget:
        """The fingerprint (and thumbnail) of an image already in the database."""
        with self.pool.connection() as conn:
            row = conn.execute(
                """
                SELECT i.dhash, i.phash, i.sha256, t.webp
                FROM images i LEFT JOIN thumbnails t ON t.image_id = i.id
                WHERE i.id = %s
                """,
                (image_id,),
            ).fetchone()
        if row is None:
            raise UnknownBank(f"no image with id {image_id} in the database")
        dhash, phash, sha256, thumbnail = row
        return FlagTarget(from_bigint(dhash), from_bigint(phash), sha256, image_id, thumbnail)

    def disable(
        self,
        *,
        disabled_by: str,
        entry_id: int | None = None,
        dhash: int | None = None,
        bank: str | None = None,
    ) -> list[Entry]:
        """Disable active entries: one by id, or those with exactly ``dhash`` (in ``bank``).

        The entries stay, inactive, with who disabled them and when.
        """
        if (entry_id is None) == (dhash is None):
            raise BankError("disable needs either an entry id or a dHash")
        with self.pool.connection() as conn, conn.transaction():
            bank_id = None if bank is None else self._bank_id(conn, bank)
            rows = conn.execute(
                """
                UPDATE bank_entries
                SET active = false, disabled_by = %s, disabled_at = now()
                WHERE active
                  AND (%s::bigint IS NULL OR id = %s::bigint)
                  AND (%s::bigint IS NULL OR dhash = %s::bigint)
                  AND (%s::bigint IS NULL OR bank_id = %s::bigint)
                RETURNING id
                """,
                (
                    disabled_by,
                    entry_id,
                    entry_id,
                    _optional_bigint(dhash),
                    _optional_bigint(dhash),
                    bank_id,
                    bank_id,
                ),
            ).fetchall()
            return [self._entry(conn, entry) for (entry,) in rows]

    def summaries(self) -> list[BankSummary]:
        """Every bank with its radii and entry counts, by name."""
        with self.pool.connection() as conn:
            return (
                conn.cursor(row_factory=class_row(BankSummary))
                .execute(
                    """
                    SELECT b.name, b.dhash_radius, b.phash_radius,
                           count(e.id) FILTER (WHERE e.active) AS active_entries,
                           count(e.id) FILTER (WHERE NOT e.active) AS disabled_entries,
                           b.created_at
                    FROM banks b LEFT JOIN bank_entries e ON e.bank_id = b.id
                    GROUP BY b.id ORDER BY b.name
                    """
                )
                .fetchall()
            )

    def configure(
        self, bank: str, *, dhash_radius: int | None = None, phash_radius: int | None = None
    ) -> BankSummary:
        """Create ``bank`` if needed and override its radii (None keeps the current one)."""
        if dhash_radius is not None and not 0 <= dhash_radius <= MAX_RADIUS:
            raise BankError(f"the dHash radius must be 0 to {MAX_RADIUS}, got {dhash_radius}")
        with self.pool.connection() as conn, conn.transaction():
            bank_id = self._ensure_bank(conn, bank)
            conn.execute(
                """
                UPDATE banks SET dhash_radius = coalesce(%s, dhash_radius),
                                 phash_radius = coalesce(%s, phash_radius)
                WHERE id = %s
                """,
                (dhash_radius, phash_radius, bank_id),
            )
        return next(summary for summary in self.summaries() if summary.name == bank)

    def entries(self, bank: str, *, limit: int = 50, offset: int = 0) -> list[Entry]:
        """A bank's entries, newest first, disabled ones included (they are its history)."""
        with self.pool.connection() as conn:
            bank_id = self._bank_id(conn, bank)
            return (
                conn.cursor(row_factory=class_row(Entry))
                .execute(
                    sql.SQL("""
                    SELECT {}
                    FROM bank_entries e JOIN banks b ON b.id = e.bank_id
                    WHERE e.bank_id = %s ORDER BY e.id DESC LIMIT %s OFFSET %s
                    """).format(_ENTRY_COLUMNS),
                    (bank_id, limit, offset),
                )
                .fetchall()
            )

    def entry(self, entry_id: int) -> Entry | None:
        with self.pool.connection() as conn:
            try:
                return self._entry(conn, entry_id)
            except UnknownBank:
                return None

    def thumbnail(self, entry_id: int) -> bytes | None:
        """The WebP kept with an entry, if it was flagged from an image."""
        with self.pool.connection() as conn:
            row = conn.execute(
                "SELECT thumbnail FROM bank_entries WHERE id = %s", (entry_id,)
            ).fetchone()
        return row[0] if row else None

    def sightings(self, entry_id: int, *, limit: int = 100) -> list[FlaggedSighting]:
        """Crawled pages where an active entry's image or a near copy appears, newest first."""
        with self.pool.connection() as conn:
            return (
                conn.cursor(row_factory=class_row(FlaggedSighting))
                .execute(
                    """
                    SELECT image_id, distance, image_url, page_url, page_title, domain,
                           alt_text, first_seen, last_seen
                    FROM flagged_sightings WHERE entry_id = %s
                    ORDER BY distance, last_seen DESC LIMIT %s
                    """,
                    (entry_id, limit),
                )
                .fetchall()
            )

    @staticmethod
    def _bank_id(conn: psycopg.Connection, bank: str) -> int:
        row = conn.execute("SELECT id FROM banks WHERE name = %s", (bank,)).fetchone()
        if row is None:
            raise UnknownBank(f"no bank named {bank!r}")
        return row[0]

    @staticmethod
    def _ensure_bank(conn: psycopg.Connection, bank: str) -> int:
        try:
            with conn.transaction():  # a savepoint: a bad name must not end the caller's
                conn.execute(
                    "INSERT INTO banks (name) VALUES (%s) ON CONFLICT (name) DO NOTHING", (bank,)
                )
        except psycopg.errors.CheckViolation:
            raise BankError(
                f"bad bank name {bank!r}: use 1-63 lowercase letters, digits, '-' or '_'"
            ) from None
        return Banks._bank_id(conn, bank)

    @staticmethod
    def _entry(conn: psycopg.Connection, entry_id: int) -> Entry:
        entry = (
            conn.cursor(row_factory=class_row(Entry))
            .execute(
                sql.SQL("""
                SELECT {}
                FROM bank_entries e JOIN banks b ON b.id = e.bank_id WHERE e.id = %s
                """).format(_ENTRY_COLUMNS),
                (entry_id,),
            )
            .fetchone()
        )
        if entry is None:
            raise UnknownBank(f"no bank entry with id {entry_id}")
        return entry


def _linked_to_stored_image(conn: psycopg.Connection, target: FlagTarget) -> FlagTarget:
    """The target with the id of the stored image of the same content, if there is one."""
    row = conn.execute("SELECT id FROM images WHERE sha256 = %s", (target.sha256,)).fetchone()
    if row is None:
        return target
    return FlagTarget(target.dhash, target.phash, target.sha256, row[0], target.thumbnail)


def _optional_bigint(value: int | None) -> int | None:
    return None if value is None else to_bigint(value)


def _active_entry_id(conn: psycopg.Connection, bank_id: int, target: FlagTarget) -> int | None:
    """The active entry of ``bank_id`` with ``target``'s fingerprint, if there is one."""
    row = conn.execute(
        """
        SELECT id FROM bank_entries
        WHERE active AND bank_id = %s AND dhash = %s AND coalesce(phash, 0) = coalesce(%s, 0)
        """,
        (bank_id, to_bigint(target.dhash), _optional_bigint(target.phash)),
    ).fetchone()
    return row[0] if row else None
