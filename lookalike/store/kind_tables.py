"""Where each hash kind's hashes live in the database, as its ``hash_kinds`` table says.

The program knows how to compute a kind (:mod:`lookalike.kinds`); the database knows where
its hashes are stored. Reading the table on each use keeps the two from drifting apart, and
checking it against the registered kinds turns a kind without its migration into a one-line
error instead of hashes silently not stored.

dHash and pHash live in columns of ``images`` and ``bank_entries``. Any other kind gets two
tables of its own, ``<kind>_image_hashes`` and ``<kind>_bank_hashes``, each with one generated
column and one covering b-tree index per multi-index chunk, derived from its bit length by
:func:`create_tables`; the kind's migration is that one call::

    def upgrade(conn):
        create_tables(conn, KIND)
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from itertools import groupby

import psycopg
from psycopg import sql

from lookalike import kinds
from lookalike.config import DatabaseUnavailable
from lookalike.kinds import HashKind, chunk_layout, chunk_shifts


class KindNotInDatabase(DatabaseUnavailable):
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
            SELECT name, bits, indexed, confirmed_by, searched_with, image_table, image_key,
                   bank_table, bank_key, hash_column
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
        if tuple(definition) != (kind.bits, kind.indexed, kind.confirmed_by, kind.searched_with):
            raise KindNotInDatabase(
                f"hash kind {kind.name!r} is defined differently in the database (bits, "
                f"indexed, confirmed by, searched with: {tuple(definition)}): "
                "run `lookalike migrate`"
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


def create_tables(conn: psycopg.Connection, kind: HashKind) -> None:
    """Create ``kind``'s tables and indexes and register it in ``hash_kinds``."""
    images, bank = f"{kind.name}_image_hashes", f"{kind.name}_bank_hashes"
    chunks = _chunk_columns(kind.bits)
    conn.execute(
        sql.SQL("""
        CREATE TABLE {images} (
            image_id bigint NOT NULL REFERENCES images (id) ON DELETE CASCADE,
            hash bigint NOT NULL,
            {chunks},
            PRIMARY KEY (image_id, hash)
        )""").format(images=sql.Identifier(images), chunks=chunks)
    )
    conn.execute(
        sql.SQL("""
        CREATE TABLE {bank} (
            entry_id bigint NOT NULL REFERENCES bank_entries (id) ON DELETE CASCADE,
            bank_id bigint NOT NULL REFERENCES banks (id) ON DELETE CASCADE,
            active boolean NOT NULL DEFAULT true,
            hash bigint NOT NULL,
            {chunks},
            PRIMARY KEY (entry_id, hash)
        )""").format(bank=sql.Identifier(bank), chunks=chunks)
    )
    for index in range(len(chunk_layout(kind.bits))):
        column = sql.Identifier(f"chunk{index}")
        conn.execute(
            sql.SQL("CREATE INDEX {name} ON {table} ({column}) INCLUDE (hash, image_id)").format(
                name=sql.Identifier(f"{images}_chunk{index}"),
                table=sql.Identifier(images),
                column=column,
            )
        )
        conn.execute(
            sql.SQL(
                "CREATE INDEX {name} ON {table} (bank_id, {column}) INCLUDE (hash, entry_id)"
                " WHERE active"
            ).format(
                name=sql.Identifier(f"{bank}_chunk{index}"),
                table=sql.Identifier(bank),
                column=column,
            )
        )
    conn.execute(
        """
        INSERT INTO hash_kinds (name, bits, indexed, default_radius, confirmed_by, searched_with,
                                image_table, image_key, bank_table, bank_key, hash_column,
                                chunk_prefix)
        VALUES (%s, %s, %s, %s, %s, %s, %s, 'image_id', %s, 'entry_id', 'hash', 'chunk')
        """,
        (
            kind.name,
            kind.bits,
            kind.indexed,
            kind.default_radius,
            kind.confirmed_by,
            kind.searched_with,
            images,
            bank,
        ),
    )


def _chunk_columns(bits: int) -> sql.Composed:
    columns = [
        sql.SQL(
            "{name} integer GENERATED ALWAYS AS (((hash >> {shift}) & {mask})::integer) STORED"
        ).format(
            name=sql.Identifier(f"chunk{index}"),
            shift=sql.Literal(shift),
            mask=sql.Literal((1 << width) - 1),
        )
        for index, (width, shift) in enumerate(
            zip(chunk_layout(bits), chunk_shifts(bits), strict=True)
        )
    ]
    return sql.SQL(",\n            ").join(columns)
