"""Where each hash kind's hashes live in the database, as its ``hash_kinds`` table says.

The program knows how to compute a kind (:mod:`lookalike.kinds`); the database knows where
its hashes are stored. Reading the table on each use keeps the two from drifting apart, and
checking it against the registered kinds turns a kind without its migration into a one-line
error instead of hashes silently not stored.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from itertools import groupby

import psycopg
from psycopg import sql

from lookalike import kinds
from lookalike.kinds import HashKind


class KindNotInDatabase(RuntimeError):
    """A registered hash kind whose tables the database lacks (its migration has not run)."""


@dataclass(frozen=True, slots=True)
class KindStorage:
    """One ``hash_kinds`` row: a kind and the tables and columns holding its hashes."""

    kind: HashKind
    image_table: str
    image_key: str
    bank_table: str
    bank_key: str
    hash_column: str

    @property
    def name(self) -> str:
        return self.kind.name


def storages(conn: psycopg.Connection) -> list[KindStorage]:
    """Every registered kind's storage, in registration order."""
    rows = {
        row[0]: row
        for row in conn.execute(
            """
            SELECT name, bits, indexed, confirmed_by, image_table, image_key, bank_table,
                   bank_key, hash_column
            FROM hash_kinds
            """
        ).fetchall()
    }
    found = []
    for kind in kinds.all_kinds():
        row = rows.get(kind.name)
        if row is None:
            raise KindNotInDatabase(
                f"hash kind {kind.name!r} has no tables in this database: run `lookalike migrate`"
            )
        _, *definition, image_table, image_key, bank_table, bank_key, hash_column = row
        if tuple(definition) != (kind.bits, kind.indexed, kind.confirmed_by):
            raise KindNotInDatabase(
                f"hash kind {kind.name!r} is defined differently in the database "
                f"(bits, indexed, confirmed by: {tuple(definition)}): run `lookalike migrate`"
            )
        place = (image_table, image_key, bank_table, bank_key, hash_column)
        found.append(KindStorage(kind, *place))
    return found


def by_table(places: Iterable[KindStorage], table: str) -> list[tuple[str, list[KindStorage]]]:
    """Storages grouped by ``table`` (an attribute name: image_table or bank_table)."""
    ordered = sorted(places, key=lambda place: getattr(place, table))
    return [(name, list(group)) for name, group in groupby(ordered, lambda p: getattr(p, table))]


def columns(places: Iterable[KindStorage]) -> sql.Composed:
    """The hash columns of ``places``, for a SELECT or INSERT list."""
    return sql.SQL(", ").join(sql.Identifier(place.hash_column) for place in places)
