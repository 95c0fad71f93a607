"""schema.sql is the readable contract: run alone with psql it builds what the migrations build.

Compared through catalog queries (pg_dump 15 cannot dump the embedded PostgreSQL 18).
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from lookalike.store.db import apply_migrations, connect, scratch_database
from lookalike.store.migrate import Migration, Schema, shipped_schema
from tests.test_migrate import FUNCTIONS

ROOT = Path(__file__).resolve().parent.parent
BOOKKEEPING = ["schema_migrations", "schema_functions"]

# Every query lists objects of the public schema, less the migrator's own bookkeeping tables.
CATALOG = {
    "columns": """
        SELECT c.relname, a.attname, format_type(a.atttypid, a.atttypmod), a.attnotnull,
               a.attidentity, a.attgenerated, pg_get_expr(d.adbin, d.adrelid)
        FROM pg_attribute a
        JOIN pg_class c ON c.oid = a.attrelid
        LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
        WHERE c.relnamespace = 'public'::regnamespace AND a.attnum > 0 AND NOT a.attisdropped
          AND c.relkind IN ('r', 'v', 'm', 'p') AND c.relname <> ALL (%(skip)s)
        ORDER BY 1, 2""",
    "constraints": """
        SELECT conrelid::regclass::text, conname, contype, pg_get_constraintdef(oid)
        FROM pg_constraint
        WHERE connamespace = 'public'::regnamespace AND conrelid::regclass::text <> ALL (%(skip)s)
        ORDER BY 1, 2""",
    "indexes": """
        SELECT tablename, indexname, indexdef FROM pg_indexes
        WHERE schemaname = 'public' AND tablename <> ALL (%(skip)s) ORDER BY 1, 2""",
    "sequences": """
        SELECT sequencename, data_type::text, start_value, increment_by, max_value, cycle
        FROM pg_sequences
        WHERE schemaname = 'public'
          AND NOT sequencename LIKE ANY (SELECT s || '%%' FROM unnest(%(skip)s::text[]) s)
        ORDER BY 1""",
    "functions": """
        SELECT p.oid::regprocedure::text, pg_get_functiondef(p.oid) FROM pg_proc p
        WHERE p.pronamespace = 'public'::regnamespace ORDER BY 1""",
    "views": "SELECT viewname, definition FROM pg_views WHERE schemaname = 'public' ORDER BY 1",
    "triggers": """
        SELECT tgrelid::regclass::text, tgname, pg_get_triggerdef(oid) FROM pg_trigger
        WHERE NOT tgisinternal ORDER BY 1, 2""",
    "flip masks": "SELECT count(*), sum(mask::bigint), sum(weight) FROM hash_flip_masks",
}


def catalog(url: str) -> dict[str, list[tuple]]:
    with connect(url) as conn:
        return {
            part: conn.execute(query, {"skip": BOOKKEEPING}).fetchall()
            for part, query in CATALOG.items()
        }


def psql_file(url: str, path: Path) -> None:
    """What a psql reader would do: run the file, stopping at the first error."""
    subprocess.run(
        ["psql", "--dbname", url, "-q", "-v", "ON_ERROR_STOP=1", "-f", str(path)],
        check=True,
        capture_output=True,
        timeout=60,
    )


@pytest.fixture
def built_both_ways(server_url: str) -> tuple[str, str]:
    with (
        scratch_database(server_url, "lookalike_test_psql_built") as by_psql,
        scratch_database(server_url, "lookalike_test_migrated") as migrated,
    ):
        psql_file(by_psql, ROOT / "schema.sql")
        apply_migrations(migrated)
        yield by_psql, migrated


@pytest.mark.skipif(shutil.which("psql") is None, reason="needs the psql client")
def test_schema_sql_alone_builds_the_same_catalog_as_the_migrations(built_both_ways) -> None:
    by_psql, migrated = built_both_ways
    expected = catalog(by_psql)
    empty = [part for part, rows in expected.items() if not rows]
    assert empty == ["triggers"]  # the schema has none yet; every other query compares rows
    assert catalog(migrated) == expected


def test_the_comparison_sees_a_migration_that_schema_sql_lacks(built_both_ways) -> None:
    by_psql, migrated = built_both_ways
    extra = Migration(901, "0901_extra.sql", "CREATE INDEX images_width ON images (width);")
    apply_migrations(
        migrated, Schema((*shipped_schema().migrations, extra), shipped_schema().functions)
    )
    differing = [part for part, rows in catalog(migrated).items() if rows != catalog(by_psql)[part]]
    assert differing == ["indexes"]


def test_a_database_built_with_psql_is_then_migrated_in_place(built_both_ways) -> None:
    by_psql, _ = built_both_ways
    with connect(by_psql) as conn:
        conn.execute(
            "INSERT INTO images (sha256, dhash, phash, width, height, format)"
            " VALUES (repeat('a', 64), 5, 5, 1, 1, 'PNG')"
        )
    assert apply_migrations(by_psql) == [
        "applied migration 0001_initial.sql",
        "applied migration 0002_hash_kinds.sql",
        "applied migration 0003_local_features.sql",
        "applied migration 0004_framed_pictures.sql",
        f"re-created the functions and views of schema.sql ({FUNCTIONS} functions, 2 views)",
    ]
    with connect(by_psql) as conn:
        assert conn.execute("SELECT image_id FROM similar_images(4, 1)").fetchall() == [(1,)]
