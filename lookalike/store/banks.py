"""Moderation banks: flag fingerprints, disable entries, check images against the active ones.

The hash matching is the ``bank_hash_matches`` SQL function (multi-index hashing over a
kind's bank chunk indexes, each bank's radius and the confirming kind), so the CLI, the web
site and psql users get the same answer. Every hash kind a fingerprint has is stored with its
entry; a check searches each indexed kind.

Re-uploaders mirror, turn, crop, frame or caption a banned picture to beat plain hashes, so a
check given the upload's robust description (:mod:`lookalike.features.query`) goes the two
ways the robust search does (:mod:`lookalike.store.robust`): every view of the upload
(mirrored, turned, trimmed) by the same hash rule, and the local features of entries flagged
from an image (``bank_entry_features``), retrieved from an in-memory index and confirmed by a
geometric fit. Each match says how the upload differs from the flagged picture.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Mapping
from contextlib import nullcontext
from dataclasses import dataclass, field, replace
from datetime import datetime

import psycopg
from psycopg import sql
from psycopg.rows import class_row
from psycopg_pool import ConnectionPool

from lookalike import kinds
from lookalike.features.index import CANDIDATES, FeatureIndex
from lookalike.features.query import QueryDescription
from lookalike.features.relation import Relation, relation_from_transform
from lookalike.features.verify import relate
from lookalike.features.views import View
from lookalike.fingerprint import Fingerprint
from lookalike.frames import Box
from lookalike.hashes import from_bigint, to_bigint
from lookalike.store import features, images, kind_tables, picture_frames
from lookalike.store.kind_tables import KindStorage

DEFAULT_BANK = "banned"
# The MIH probes' reach for dHash (hash_chunk_probes); unrelated photos start near 13.
MAX_RADIUS = kinds.get(kinds.DEFAULT_KIND).max_radius


class BankError(ValueError):
    """A request a bank cannot honour; ``str(error)`` is a one-line reason for a person."""


class UnknownBank(BankError):
    """No bank (or entry) by that name or id."""


@dataclass(frozen=True, slots=True)
class FlagTarget:
    """What gets flagged: a fingerprint, from a file, a stored image or a raw hash.

    ``hashes`` maps kind names to unsigned hashes; a raw hash has only its own kind.
    ``features``: the picture's stored local features (``fingerprint(…, with_features=True)``),
    which let a check find it cropped, framed or captioned; without them (a raw hash) the
    entry matches by its hashes only. ``picture_box``: where the picture sits in a plain
    frame, if it was flagged framed.
    """

    hashes: Mapping[str, int] = field(default_factory=dict)
    sha256: str | None = None
    image_id: int | None = None
    thumbnail: bytes | None = None
    features: bytes | None = None
    picture_box: Box | None = None

    @classmethod
    def from_fingerprint(cls, fp: Fingerprint) -> FlagTarget:
        return cls(
            fp.hashes,
            fp.sha256,
            thumbnail=fp.thumbnail,
            features=fp.features,
            picture_box=fp.picture_box,
        )


@dataclass(frozen=True, slots=True)
class BankMatch:
    """An active entry an image matched. Only bank, reason, flagged_at and most of the
    relation are public.

    ``distance``: bits between the entry's hash and the nearest view of the upload.
    ``relation`` (robust checks only): how the flagged picture differs from the upload, in the
    upload's pixels and the flagged picture's as its features describe it (512 px on the longer
    side: a bank keeps no full-size picture); for an entry flagged by hash only, the view that
    matched at the upload's scale.
    """

    entry_id: int
    bank: str
    distance: int
    reason: str | None
    flagged_at: datetime
    relation: Relation | None = None

    def public(self) -> dict[str, object]:
        """What an anonymous checker may see. No distance, and no inlier count: with either,
        a few dozen checks that each change a little walk an upload just past the rule.
        """
        shown: dict[str, object] = {
            "bank": self.bank,
            "reason": self.reason,
            "flagged_at": self.flagged_at.isoformat(),
        }
        if self.relation is not None:
            relation = self.relation.to_json()
            del relation["inliers"]
            shown["relation"] = relation
        return shown

    def detail(self) -> dict[str, object]:
        """Everything about the match, for moderators and the local CLI."""
        shown: dict[str, object] = {
            "entry_id": self.entry_id,
            "bank": self.bank,
            "distance": self.distance,
            "reason": self.reason,
            "flagged_at": self.flagged_at.isoformat(),
        }
        if self.relation is not None:
            shown["relation"] = self.relation.to_json()
        return shown


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
        # Derived from bank_entry_features, every entry's, disabled ones too: a check keeps
        # only the active entries of the banks it checks among what the index proposes.
        self.features = FeatureIndex()
        self._catching_up = threading.Lock()  # concurrent checks read the new rows once

    def check(
        self,
        hashes: Mapping[str, int],
        *,
        query: QueryDescription | None = None,
        kind: str | None = None,
        bank: str | None = None,
        max_distance: int | None = None,
    ) -> list[BankMatch]:
        """Active entries matching an upload: hash matches nearest first, then feature
        matches most inliers first.

        ``hashes`` (kind name → hash): each indexed kind in them (or only ``kind``) is
        searched, confirmed by its confirming kind when they have that too; an entry found by
        several kinds is listed once, by the first. With ``query``, the upload's robust
        description (``fingerprint(…, as_query=True).query``), every view of the upload is
        searched so, and entries flagged from an image are matched by their local features
        too; each match then has its ``relation``. ``bank`` None checks every bank;
        ``max_distance`` None uses each bank's radius. Feature matches have no radius:
        ``kind`` and ``max_distance`` bound the hash matches only.
        """
        searched = [kinds.get(kind, searchable=True)] if kind else _indexed_kinds_in(hashes)
        for each in searched:
            if max_distance is not None and not 0 <= max_distance <= each.max_radius:
                raise BankError(f"max_distance must be 0 to {each.max_radius}, got {max_distance}")
        with self.pool.connection() as conn:
            bank_id = None if bank is None else self._bank_id(conn, bank)
            if query is None:
                upright = View(mirrored=False, turns=0, box=None, hashes=hashes)
                found = _hash_matches(conn, searched, upright, bank, max_distance)
                return sorted((match for match, _ in found.values()), key=_nearest_first)
            by_view = self._view_matches(conn, searched, query, bank, max_distance)
            by_features = self._feature_matches(conn, query, bank_id, skip=by_view.keys())
            sizes = _sizes_of(conn, list(by_view))
            boxes = picture_frames.read(conn, picture_frames.BANK_ENTRY_FRAMES, list(by_view))
            by_hash = [
                replace(
                    match,
                    relation=_view_relation(
                        view,
                        query,
                        sizes.get(match.entry_id),
                        boxes.get(match.entry_id) if kind.searched_with else None,
                    ),
                )
                for match, view, kind in by_view.values()
            ]
        return [*sorted(by_hash, key=_nearest_first), *by_features]

    @staticmethod
    def _view_matches(
        conn: psycopg.Connection,
        searched: list[kinds.HashKind],
        query: QueryDescription,
        bank: str | None,
        max_distance: int | None,
    ) -> dict[int, tuple[BankMatch, View, kinds.HashKind]]:
        """Entry id → its nearest match over the upload's views, that view and the kind that
        found it."""
        best: dict[int, tuple[BankMatch, View, kinds.HashKind]] = {}
        for view in query.views:
            for entry_id, (match, kind) in _hash_matches(
                conn, searched, view, bank, max_distance
            ).items():
                if entry_id not in best or match.distance < best[entry_id][0].distance:
                    best[entry_id] = (match, view, kind)
        return best

    def _feature_matches(
        self,
        conn: psycopg.Connection,
        query: QueryDescription,
        bank_id: int | None,
        *,
        skip: Iterable[int],
    ) -> list[BankMatch]:
        """Entries whose stored features a geometric fit confirms, most inliers first.

        The index is brought up to date first, so an entry flagged a moment ago is caught.
        """
        with self._catching_up:
            features.catch_up(
                lambda: nullcontext(conn), features.BANK_ENTRY_FEATURES, self.features
            )
        eligible = _eligible_candidates(conn, self.features, query, bank_id, set(skip))
        stored = features.read(conn, features.BANK_ENTRY_FEATURES, eligible)
        dhash = kinds.get(kinds.DEFAULT_KIND)
        confirmed = []
        for entry_id, (match, entry_dhash) in eligible.items():
            described = stored.get(entry_id)
            if described is None:
                continue
            relation = relate(query.features, described, (described.width, described.height))
            if relation is not None:
                distance = min(
                    dhash.distance(view.hashes[dhash.name], entry_dhash) for view in query.views
                )
                confirmed.append(replace(match, distance=distance, relation=relation))
        return sorted(confirmed, key=lambda m: (-(m.relation.inliers or 0), m.bank, m.entry_id))

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
            places = kind_tables.storages(conn)
            existing = _active_entry_id(conn, bank_id, target, places)
            if existing is not None:  # checked first: a failed INSERT would use up an id
                return FlagResult(self._entry(conn, existing), created=False)
            in_row = _in_entry_row(places)
            row = conn.execute(
                sql.SQL("""
                INSERT INTO bank_entries
                    (bank_id, sha256, image_id, thumbnail, reason, flagged_by, {hash_columns})
                VALUES (%s, %s, %s, %s, %s, %s, {hashes})
                ON CONFLICT DO NOTHING
                RETURNING id
                """).format(
                    hash_columns=kind_tables.columns(in_row),
                    hashes=sql.SQL(", ").join(sql.Placeholder() for _ in in_row),
                ),
                (
                    bank_id,
                    target.sha256,
                    target.image_id,
                    target.thumbnail,
                    reason,
                    flagged_by,
                    *(_optional_bigint(target.hashes.get(place.name)) for place in in_row),
                ),
            ).fetchone()
            if row is None:  # lost a race to another moderator flagging the same fingerprint
                entry_id = _active_entry_id(conn, bank_id, target, places)
                if entry_id is None:
                    raise BankError("the bank already has an active entry for this fingerprint")
                return FlagResult(self._entry(conn, entry_id), created=False)
            _store_own_table_hashes(conn, row[0], bank_id, target, places)
            _store_features(conn, row[0], target)
            if target.picture_box is not None:
                picture_frames.store(
                    conn, picture_frames.BANK_ENTRY_FRAMES, [(row[0], target.picture_box)]
                )
            return FlagResult(self._entry(conn, row[0]), created=True)

    def target_from_image(self, image_id: int) -> FlagTarget:
        """The fingerprint (thumbnail and local features) of an image already in the database."""
        with self.pool.connection() as conn:
            stored = images.fingerprints_by_id(conn, [image_id]).get(image_id)
            if stored is None:
                raise UnknownBank(f"no image with id {image_id} in the database")
            thumbnail = images.thumbnail(conn, image_id)
            described = conn.execute(
                "SELECT features FROM image_features WHERE image_id = %s", (image_id,), binary=True
            ).fetchone()
            boxes = picture_frames.read(conn, picture_frames.IMAGE_FRAMES, [image_id])
        return FlagTarget(
            stored.hashes,
            stored.sha256,
            image_id,
            thumbnail,
            bytes(described[0]) if described else None,
            boxes.get(image_id),
        )

    def disable(
        self,
        *,
        disabled_by: str,
        entry_id: int | None = None,
        hash_value: int | None = None,
        kind: str = kinds.DEFAULT_KIND,
        bank: str | None = None,
    ) -> list[Entry]:
        """Disable active entries: one by id, or those whose ``kind`` hash is exactly
        ``hash_value`` (in ``bank``). The entries stay, inactive, with who disabled them and
        when.
        """
        if (entry_id is None) == (hash_value is None):
            raise BankError(f"disable needs either an entry id or a {kinds.get(kind).title}")
        with self.pool.connection() as conn, conn.transaction():
            bank_id = None if bank is None else self._bank_id(conn, bank)
            places = kind_tables.storages(conn)
            by_hash = next(place for place in places if place.name == kinds.get(kind).name)
            rows = conn.execute(
                sql.SQL("""
                UPDATE bank_entries
                SET active = false, disabled_by = %(who)s, disabled_at = now()
                WHERE active
                  AND (%(entry)s::bigint IS NULL OR id = %(entry)s::bigint)
                  AND (%(hash)s::bigint IS NULL
                       OR id IN (SELECT {key} FROM {table} WHERE {column} = %(hash)s::bigint))
                  AND (%(bank)s::bigint IS NULL OR bank_id = %(bank)s::bigint)
                RETURNING id
                """).format(
                    key=sql.Identifier(by_hash.bank_key),
                    table=sql.Identifier(by_hash.bank_table),
                    column=sql.Identifier(by_hash.hash_column),
                ),
                {
                    "who": disabled_by,
                    "entry": entry_id,
                    "hash": _optional_bigint(hash_value),
                    "bank": bank_id,
                },
            ).fetchall()
            disabled = [entry for (entry,) in rows]
            for place in _in_own_tables(places):
                conn.execute(
                    sql.SQL("UPDATE {table} SET active = false WHERE {key} = ANY(%s)").format(
                        table=sql.Identifier(place.bank_table), key=sql.Identifier(place.bank_key)
                    ),
                    (disabled,),
                )
            return [self._entry(conn, entry) for entry in disabled]

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


def _hash_matches(
    conn: psycopg.Connection,
    searched: list[kinds.HashKind],
    view: View,
    bank: str | None,
    max_distance: int | None,
) -> dict[int, tuple[BankMatch, kinds.HashKind]]:
    """Entry id → its match by the bank rule for the first of the ``searched`` kinds that
    finds it by the view's hashes, and that kind; or by a kind searched with it (what is
    inside a flagged picture's frame: :meth:`View.stored_kinds`) when that one is nearer,
    within :meth:`HashKind.searched_within` of a radius the caller sets."""
    found: dict[int, tuple[BankMatch, kinds.HashKind]] = {}
    cursor = conn.cursor(row_factory=class_row(BankMatch))
    hashes = view.hashes
    for each in searched:
        confirm = hashes.get(each.confirmed_by) if each.confirmed_by else None
        for stored in view.stored_kinds(each):
            radius = None if max_distance is None else stored.searched_within(max_distance)
            for match in cursor.execute(
                """
                SELECT * FROM bank_hash_matches(%s, %s::bigint, %s::bigint, %s::text, %s::integer)
                """,
                (
                    stored.name,
                    to_bigint(hashes[each.name]),
                    _optional_bigint(confirm if stored is each else None),
                    bank,
                    radius,
                ),
            ).fetchall():
                known = found.get(match.entry_id)
                if known is None or (stored is not each and match.distance < known[0].distance):
                    found[match.entry_id] = (match, stored)
    return found


def _nearest_first(match: BankMatch) -> tuple[int, str, int]:
    return match.distance, match.bank, match.entry_id


def _eligible_candidates(
    conn: psycopg.Connection,
    index: FeatureIndex,
    query: QueryDescription,
    bank_id: int | None,
    skip: set[int],
) -> dict[int, tuple[BankMatch, int]]:
    """The best-voted CANDIDATES entries worth verifying (active, in the checked bank, not
    matched by hash yet) → their match so far and their dHash, best first.

    The index also holds disabled entries and other banks', which could crowd the eligible
    ones out of a short list (a picture flagged and unflagged many times has many identical
    entries), so the list is widened until enough are eligible or the index has no more.
    """
    descriptor_sets = [query.features.upright.descriptors, query.features.mirrored.descriptors]
    limit = CANDIDATES
    while True:
        proposed = index.candidates(descriptor_sets, limit)
        ranked = [entry for entry in proposed if entry not in skip]
        rows = conn.execute(
            """
            SELECT e.id, b.name, e.reason, e.flagged_at, e.dhash
            FROM bank_entries e JOIN banks b ON b.id = e.bank_id
            WHERE e.id = ANY(%s) AND e.active AND (%s::bigint IS NULL OR e.bank_id = %s::bigint)
            """,
            (ranked, bank_id, bank_id),
        ).fetchall()
        active = {
            entry_id: (BankMatch(entry_id, name, 0, reason, flagged_at), from_bigint(dhash))
            for entry_id, name, reason, flagged_at, dhash in rows
        }
        if len(active) >= CANDIDATES or len(proposed) < limit:  # enough, or no more
            best = [entry for entry in ranked if entry in active][:CANDIDATES]
            return {entry: active[entry] for entry in best}
        limit *= 4


def _sizes_of(conn: psycopg.Connection, entry_ids: list[int]) -> dict[int, tuple[int, int]]:
    """The working size of each entry that has stored features."""
    stored = features.read(conn, features.BANK_ENTRY_FEATURES, entry_ids)
    return {entry_id: (found.width, found.height) for entry_id, found in stored.items()}


def _view_relation(
    view: View,
    query: QueryDescription,
    match_size: tuple[int, int] | None,
    match_box: Box | None,
) -> Relation:
    """The relation a matching view implies (onto the entry's framed picture, if the hash
    of what is inside its frame matched); without the entry's size, the view's own."""
    query_size = query.features.size
    size = match_size or _view_size(view, query_size, match_box)
    transform = view.transform(query_size, size, match_box)
    return relation_from_transform("hash", transform, query_size, size, mirrored=view.mirrored)


def _view_size(view: View, query_size: tuple[int, int], match_box: Box | None) -> tuple[int, int]:
    """The (width, height) of what a view shows, at the upload's scale, framed as the entry
    was (``match_box``)."""
    left, top, right, bottom = view.box_in(query_size)
    width, height = right - left, bottom - top
    if view.turns % 2:
        width, height = height, width
    if match_box is not None:
        width, height = (
            width / (match_box[2] - match_box[0]),
            height / (match_box[3] - match_box[1]),
        )
    return round(width), round(height)


def _linked_to_stored_image(conn: psycopg.Connection, target: FlagTarget) -> FlagTarget:
    """The target with the id of the stored image of the same content, if there is one."""
    row = conn.execute("SELECT id FROM images WHERE sha256 = %s", (target.sha256,)).fetchone()
    if row is None:
        return target
    return replace(target, image_id=row[0])


def _indexed_kinds_in(hashes: Mapping[str, int]) -> list[kinds.HashKind]:
    searched = [kind for kind in kinds.searchable_kinds() if kind.name in hashes]
    if not searched:
        raise BankError("nothing to check: no hash of a searchable kind")
    return searched


def _in_entry_row(places: list[KindStorage]) -> list[KindStorage]:
    """The kinds kept in bank_entries' own columns (the built-in ones)."""
    return [place for place in places if place.bank_table == "bank_entries"]


def _in_own_tables(places: list[KindStorage]) -> list[KindStorage]:
    """The plug-in kinds, each with a bank table of its own beside bank_entries."""
    return [place for place in places if place.bank_table != "bank_entries"]


def _store_own_table_hashes(
    conn: psycopg.Connection,
    entry_id: int,
    bank_id: int,
    target: FlagTarget,
    places: list[KindStorage],
) -> None:
    for place in _in_own_tables(places):
        if place.name in target.hashes:
            conn.execute(
                sql.SQL(
                    "INSERT INTO {table} ({key}, bank_id, {column}) VALUES (%s, %s, %s)"
                ).format(
                    table=sql.Identifier(place.bank_table),
                    key=sql.Identifier(place.bank_key),
                    column=sql.Identifier(place.hash_column),
                ),
                (entry_id, bank_id, to_bigint(target.hashes[place.name])),
            )


def _store_features(conn: psycopg.Connection, entry_id: int, target: FlagTarget) -> None:
    if target.features is not None:
        conn.execute(
            """
            INSERT INTO bank_entry_features (entry_id, features) VALUES (%s, %s)
            ON CONFLICT (entry_id) DO NOTHING
            """,
            (entry_id, target.features),
        )


def _optional_bigint(value: int | None) -> int | None:
    return None if value is None else to_bigint(value)


def _active_entry_id(
    conn: psycopg.Connection, bank_id: int, target: FlagTarget, places: list[KindStorage]
) -> int | None:
    """The active entry of ``bank_id`` with ``target``'s fingerprint, if there is one: the same
    hashes in bank_entries' own columns (which its unique index covers)."""
    same: list[sql.Composable] = []
    values: list[int] = []
    for place in _in_entry_row(places):
        column = sql.Identifier(place.hash_column)
        if place.name in target.hashes:
            same.append(sql.SQL("{} = %s").format(column))
            values.append(to_bigint(target.hashes[place.name]))
        else:
            same.append(sql.SQL("{} IS NULL").format(column))
    row = conn.execute(
        sql.SQL("SELECT id FROM bank_entries WHERE active AND bank_id = %s AND {}").format(
            sql.SQL(" AND ").join(same)
        ),
        (bank_id, *values),
    ).fetchone()
    return row[0] if row else None
