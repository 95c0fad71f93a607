"""Where a framed picture sits in its image: ``image_frames`` and ``bank_entry_frames``.

Kept beside a framed image's ``framed_dhash`` (:mod:`lookalike.kinds.framed_dhash`), so a
match found by that hash is outlined on the part of the image that is the query's picture.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import psycopg
from psycopg import sql

from lookalike.frames import Box


@dataclass(frozen=True, slots=True)
class FrameTable:
    table: str
    key: str  # the column holding the image or bank entry id


IMAGE_FRAMES = FrameTable("image_frames", "image_id")
BANK_ENTRY_FRAMES = FrameTable("bank_entry_frames", "entry_id")


def store(conn: psycopg.Connection, where: FrameTable, boxes: Iterable[tuple[int, Box]]) -> None:
    """Each (id, box) into ``where``, unless the id already has one."""
    rows = sorted(boxes)
    if not rows:
        return
    conn.execute(
        sql.SQL("""
        INSERT INTO {table} ({key}, box_left, box_top, box_right, box_bottom)
        SELECT * FROM unnest(%s::bigint[], %s::real[], %s::real[], %s::real[], %s::real[])
        ON CONFLICT ({key}) DO NOTHING
        """).format(table=sql.Identifier(where.table), key=sql.Identifier(where.key)),
        [list(column) for column in zip(*((key, *box) for key, box in rows), strict=True)],
    )


def read(conn: psycopg.Connection, where: FrameTable, ids: list[int]) -> dict[int, Box]:
    """The box of each of ``ids`` that has one."""
    rows = conn.execute(
        sql.SQL("""
        SELECT {key}, box_left, box_top, box_right, box_bottom FROM {table}
        WHERE {key} = ANY(%s)
        """).format(table=sql.Identifier(where.table), key=sql.Identifier(where.key)),
        (ids,),
    ).fetchall()
    return {row[0]: (row[1], row[2], row[3], row[4]) for row in rows}
