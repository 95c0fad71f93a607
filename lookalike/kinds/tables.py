"""The tables a plug-in hash kind's migration creates, derived from the kind's bit length.

Built-in kinds live in columns of ``images`` and ``bank_entries``; a plug-in kind gets two
tables of its own: ``<kind>_image_hashes`` and ``<kind>_bank_hashes``, each with one generated
column and one covering b-tree index per multi-index chunk, and a row in ``hash_kinds`` that
tells the store and the SQL functions where they are. A kind's migration is then one call:

    def upgrade(conn):
        create_tables(conn, KIND)
"""

from __future__ import annotations

import psycopg
from psycopg import sql

from lookalike.kinds import HashKind, chunk_layout, chunk_shifts


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
        INSERT INTO hash_kinds (name, bits, indexed, default_radius, confirmed_by, image_table,
                                image_key, bank_table, bank_key, hash_column, chunk_prefix)
        VALUES (%s, %s, %s, %s, %s, %s, 'image_id', %s, 'entry_id', 'hash', 'chunk')
        """,
        (kind.name, kind.bits, kind.indexed, kind.default_radius, kind.confirmed_by, images, bank),
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
