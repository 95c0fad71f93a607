"""Numbered migrations and re-created functions, run against other migrations and functions text.

Each test builds a ``Schema`` (the shipped one plus a migration, or with a function changed)
and migrates a real database that already has rows, as an upgrade would.
"""

from __future__ import annotations

import dataclasses
import re
import secrets
import threading
from collections.abc import Iterator

import psycopg
import pytest
from psycopg import conninfo, sql

from lookalike import kinds
from lookalike.store.db import apply_migrations, connect, describe_server, scratch_database
from lookalike.store.migrate import (
    Migration,
    MigrationError,
    Schema,
    bring_up_to_date,
    functions_part,
    read_state,
    shipped_schema,
)
from tests.test_cli import run

SHIPPED = shipped_schema()
# Those schema.sql writes out, plus each searchable kind's own (hash_kind_create_functions):
# probes of images and of bank entries, chunk densities, bank matches.
PER_KIND = 4
WRITTEN_OUT = re.findall(r"^CREATE OR REPLACE FUNCTION \w+\(", SHIPPED.functions, re.M)
FUNCTIONS = len(WRITTEN_OUT) + PER_KIND * len(kinds.indexed_kinds())
# similar_images(text, …) returning bigint distances: a return type CREATE OR REPLACE refuses.
OLD_TEXT_SEARCH = """CREATE OR REPLACE FUNCTION similar_images(query text, max_distance integer)
RETURNS TABLE (image_id bigint, distance integer)
LANGUAGE sql STABLE STRICT PARALLEL SAFE
AS $$ SELECT * FROM similar_images(hash_from_hex(query), max_distance) $$;"""
NEW_TEXT_SEARCH = """CREATE OR REPLACE FUNCTION similar_images(query text, max_distance integer)
RETURNS TABLE (image_id bigint, distance bigint)
LANGUAGE sql STABLE STRICT PARALLEL SAFE
AS $$ SELECT image_id, distance::bigint
      FROM similar_images(hash_from_hex(query), max_distance) $$;"""


def with_migration(name: str, text: str, schema: Schema = SHIPPED) -> Schema:
    version = int(name[:4])
    return dataclasses.replace(
        schema, migrations=(*schema.migrations, Migration(version, name, text))
    )


def with_functions(old: str, new: str) -> Schema:
    assert old in SHIPPED.functions
    return dataclasses.replace(SHIPPED, functions=SHIPPED.functions.replace(old, new))


@pytest.fixture
def filled(database_url: str) -> str:
    """A migrated database with three images, one sighting and a flagged entry."""
    with connect(database_url) as conn:
        conn.execute(
            "INSERT INTO images (sha256, dhash, phash, width, height, format)"
            " SELECT lpad(to_hex(n), 64, '0'), n, n, 10, 10, 'PNG' FROM generate_series(1, 3) n"
        )
        conn.execute("INSERT INTO pages (url) VALUES ('https://a.example/')")
        conn.execute(
            "INSERT INTO sightings (image_id, page_id, image_url) VALUES (1, 1, 'https://a/1.png')"
        )
        conn.execute("INSERT INTO banks (name) VALUES ('banned')")
        conn.execute("INSERT INTO bank_entries (bank_id, dhash, flagged_by) VALUES (1, 1, 'm')")
    return database_url


def catalog_snapshot(url: str) -> dict[str, object]:
    """What a failed step must leave as it was: tables' columns, functions, views, bookkeeping."""
    with connect(url) as conn:
        return {
            "columns": conn.execute(
                "SELECT table_name, column_name, data_type FROM information_schema.columns"
                " WHERE table_schema = 'public' ORDER BY 1, 2"
            ).fetchall(),
            "functions": conn.execute(
                "SELECT p.oid::regprocedure::text, pg_get_functiondef(p.oid) FROM pg_proc p"
                " WHERE p.pronamespace = 'public'::regnamespace ORDER BY 1"
            ).fetchall(),
            "views": conn.execute(
                "SELECT viewname, definition FROM pg_views WHERE schemaname = 'public' ORDER BY 1"
            ).fetchall(),
            "migrations": conn.execute("TABLE schema_migrations ORDER BY version").fetchall(),
            "functions_record": conn.execute("TABLE schema_functions").fetchall(),
            "images": conn.execute("SELECT id, dhash FROM images ORDER BY id").fetchall(),
        }


def test_a_changed_return_type_is_dropped_and_created_on_a_filled_database(filled: str) -> None:
    changed = with_functions(OLD_TEXT_SEARCH, NEW_TEXT_SEARCH)
    with connect(filled) as conn, pytest.raises(psycopg.errors.InvalidFunctionDefinition) as plain:
        conn.execute(changed.functions.encode())  # what re-running schema.sql used to do
    assert "cannot change return type of existing function" in str(plain.value)
    done = apply_migrations(filled, changed)
    assert done == [
        f"re-created the functions and views of schema.sql ({FUNCTIONS} functions, 2 views)"
    ]
    with connect(filled) as conn:
        found = conn.execute("SELECT * FROM similar_images('0000000000000000', 1)").fetchall()
        types = conn.execute(
            "SELECT pg_typeof(distance)::text FROM similar_images('0000000000000001', 0)"
        ).fetchall()
        flagged = conn.execute("SELECT image_id FROM flagged_sightings").fetchall()
        bank = conn.execute("SELECT entry_id, distance FROM bank_matches(1)").fetchall()
    assert found == [(1, 1), (2, 1)] and types == [("bigint",)]
    assert flagged == [(1,)] and bank == [(1, 0)]
    assert apply_migrations(filled, changed) == []  # recorded: nothing more to do


def test_a_function_left_out_of_schema_sql_is_dropped(filled: str) -> None:
    without = with_functions(OLD_TEXT_SEARCH, "")
    apply_migrations(filled, without)
    with connect(filled) as conn:
        (left,) = conn.execute(
            "SELECT array_agg(oid::regprocedure::text) FROM pg_proc"
            " WHERE proname = 'similar_images'"
        ).fetchone()
    assert left == ["similar_images(bigint,integer)"]


def test_an_added_column_appears_on_an_existing_database(filled: str) -> None:
    added = with_migration("0901_image_notes.sql", "ALTER TABLE images ADD COLUMN note text;")
    assert apply_migrations(filled, added) == [
        "applied migration 0901_image_notes.sql",
        f"re-created the functions and views of schema.sql ({FUNCTIONS} functions, 2 views)",
    ]
    with connect(filled) as conn:
        rows = conn.execute("SELECT id, note FROM images ORDER BY id").fetchall()
        recorded = conn.execute("SELECT version, name FROM schema_migrations").fetchall()
    assert rows == [(1, None), (2, None), (3, None)]
    assert recorded == [
        (1, "0001_initial.sql"),
        (2, "0002_hash_kinds.sql"),
        (3, "0003_local_features.sql"),
        (4, "0004_framed_pictures.sql"),
        (901, "0901_image_notes.sql"),
    ]
    assert apply_migrations(filled, added) == []


@pytest.fixture
def fresh(server_url: str) -> Iterator[str]:
    """An empty database: no tables, no bookkeeping."""
    with scratch_database(server_url, "lookalike_test_migrate") as url:
        yield url


def test_two_migrators_at_once_apply_each_migration_once(fresh: str) -> None:
    with connect(fresh) as conn:
        conn.execute("CREATE TABLE runs (migration text)")
    slow = with_migration(
        "0901_slow.sql", "INSERT INTO runs VALUES ('0002'); SELECT pg_sleep(0.3);"
    )
    start = threading.Barrier(2)
    done: list[list[str]] = []

    def migrate() -> None:
        start.wait()
        done.append(apply_migrations(fresh, slow))

    threads = [threading.Thread(target=migrate) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    with connect(fresh) as conn:
        runs = conn.execute("SELECT count(*) FROM runs").fetchone()[0]
    assert runs == 1
    assert sorted(done[0] + done[1]) == [
        "applied migration 0001_initial.sql",
        "applied migration 0002_hash_kinds.sql",
        "applied migration 0003_local_features.sql",
        "applied migration 0004_framed_pictures.sql",
        "applied migration 0901_slow.sql",
        f"created the functions and views of schema.sql ({FUNCTIONS} functions, 2 views)",
    ]


def test_a_failing_migration_rolls_back_and_names_its_file(filled: str) -> None:
    before = catalog_snapshot(filled)
    broken = with_migration(
        "0901_broken.sql",
        "ALTER TABLE images ADD COLUMN note text;\nSELECT no_such_function();",
        with_functions(OLD_TEXT_SEARCH, NEW_TEXT_SEARCH),
    )
    with pytest.raises(MigrationError) as failed:
        apply_migrations(filled, broken)
    assert str(failed.value) == (
        f"cannot apply migration 0901_broken.sql to {describe_server(filled)}: "
        "function no_such_function() does not exist"
    )
    assert catalog_snapshot(filled) == before


def test_an_edited_migration_is_refused_and_nothing_changes(filled: str) -> None:
    before = catalog_snapshot(filled)
    initial, *later = SHIPPED.migrations
    edited = dataclasses.replace(
        with_functions(OLD_TEXT_SEARCH, NEW_TEXT_SEARCH),
        migrations=(dataclasses.replace(initial, sql=initial.sql + "\n-- edited\n"), *later),
    )
    with pytest.raises(MigrationError) as refused:
        apply_migrations(filled, with_migration("0901_more.sql", "SELECT 1;", edited))
    assert str(refused.value).startswith(
        f"migration 0001 was edited after it was applied to {describe_server(filled)}"
    )
    assert catalog_snapshot(filled) == before


def test_a_database_migrated_by_a_newer_lookalike_is_refused(filled: str, cli_env) -> None:
    with connect(filled) as conn:
        conn.execute(
            "INSERT INTO schema_migrations (version, name, checksum)"
            " VALUES (901, '0901_new.sql', 'x')"
        )
    before = catalog_snapshot(filled)
    with pytest.raises(MigrationError) as refused:
        apply_migrations(filled, with_functions(OLD_TEXT_SEARCH, NEW_TEXT_SEARCH))
    assert catalog_snapshot(filled) == before
    assert "has migration 0901_new.sql, which this Lookalike does not know" in str(refused.value)
    searched = run(cli_env, "stats")
    assert searched.returncode == 1
    assert searched.stderr.strip() == f"Error: {refused.value}"
    status = run(cli_env, "migrate", "--status").stdout.splitlines()
    assert status[-2] == "0901_new.sql  applied " + status[-2].split("applied ")[1]
    assert status[-2].endswith("  (not known to this Lookalike)")


def test_a_users_view_on_ours_stops_the_change_in_one_line(filled: str) -> None:
    with connect(filled) as conn:
        conn.execute("CREATE VIEW my_sightings AS SELECT image_url FROM image_sightings")
    before = catalog_snapshot(filled)
    with pytest.raises(MigrationError) as failed:
        apply_migrations(filled, with_functions(OLD_TEXT_SEARCH, NEW_TEXT_SEARCH))
    assert str(failed.value) == (
        f"cannot apply schema.sql to {describe_server(filled)}: view my_sightings depends on"
        " view image_sightings; drop it, migrate, then create it again"
    )
    assert catalog_snapshot(filled) == before


def test_a_dropped_function_comes_back_on_the_next_start(filled: str) -> None:
    with connect(filled) as conn:
        conn.execute("DROP FUNCTION hash_to_hex(bigint) CASCADE")  # and image_sightings with it
    assert apply_migrations(filled) == [
        f"re-created the functions and views of schema.sql ({FUNCTIONS} functions, 2 views)"
    ]
    with connect(filled) as conn:
        assert conn.execute("SELECT count(*) FROM image_sightings").fetchone() == (1,)


def test_status_lists_each_migration_and_changes_nothing(fresh: str, cli_env) -> None:
    env = {**cli_env, "DATABASE_URL": fresh}
    status = run(env, "migrate", "--status")
    assert status.stdout.splitlines() == [
        "0001_initial.sql  pending",
        "0002_hash_kinds.sql  pending",
        "0003_local_features.sql  pending",
        "0004_framed_pictures.sql  pending",
        "functions and views: not created yet",
    ]
    with connect(fresh) as conn:
        assert read_state(conn).applied == {}
        assert conn.execute("SELECT to_regclass('images')").fetchone() == (None,)
    applied = run(env, "migrate")
    assert applied.stdout.splitlines() == [
        "applied migration 0001_initial.sql",
        "applied migration 0002_hash_kinds.sql",
        "applied migration 0003_local_features.sql",
        "applied migration 0004_framed_pictures.sql",
        f"created the functions and views of schema.sql ({FUNCTIONS} functions, 2 views)",
    ]
    assert run(env, "migrate").stdout == f"{describe_server(fresh)} is up to date\n"
    status = run(env, "migrate", "--status").stdout.splitlines()
    assert status[0].startswith("0001_initial.sql  applied 20")
    assert status[1].startswith("0002_hash_kinds.sql  applied 20")
    assert status[2].startswith("0003_local_features.sql  applied 20")
    assert status[3].startswith("0004_framed_pictures.sql  applied 20")
    assert status[4] == "functions and views: current"


@pytest.mark.parametrize("args", [["migrate"], ["migrate", "--status"]])
def test_migrate_on_an_unreachable_database_is_one_line(cli_env, args: list[str]) -> None:
    env = {**cli_env, "DATABASE_URL": "postgresql://postgres@127.0.0.1:9/nowhere"}
    result = run(env, *args)
    assert result.returncode == 1
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith("Error: cannot connect to the database at 127.0.0.1:9/nowhere: ")


class CountingConnection(psycopg.Connection):
    """Remembers every statement it runs."""

    statements: list[str]

    def execute(self, query, params=None, **kwargs):  # type: ignore[override]
        self.statements.append(str(query))
        return super().execute(query, params, **kwargs)


def test_an_up_to_date_database_costs_two_queries_and_no_lock(database_url: str) -> None:
    with CountingConnection.connect(database_url) as conn:
        conn.statements = []
        assert bring_up_to_date(conn, describe_server(database_url)) == []
    assert len(conn.statements) == 2
    assert not any("lock" in statement for statement in conn.statements)


def test_a_migrations_folder_is_read_in_version_order(tmp_path) -> None:
    (tmp_path / "0002_second.sql").write_text("SELECT 2;")
    (tmp_path / "0001_first.sql").write_text("SELECT 1;")
    (tmp_path / "notes.txt").write_text("not a migration")
    schema = Schema.read(tmp_path, "-- Tables\n-- Functions and views ---\nSELECT 3;\n")
    assert [(m.version, m.name) for m in schema.migrations] == [
        (1, "0001_first.sql"),
        (2, "0002_second.sql"),
    ]
    assert schema.functions == "-- Functions and views ---\nSELECT 3;\n"
    (tmp_path / "0002_again.sql").write_text("SELECT 2;")
    with pytest.raises(ValueError, match="two migrations share a version number"):
        Schema.read(tmp_path, schema.functions)
    (tmp_path / "7_short.sql").write_text("SELECT 7;")
    with pytest.raises(ValueError, match=r"7_short\.sql: a migration is named NNNN_"):
        Schema.read(tmp_path, schema.functions)
    with pytest.raises(ValueError, match="exactly one line starting '-- Functions and views '"):
        functions_part("CREATE TABLE t (x int);")


def test_a_role_that_cannot_read_the_record_gets_one_line(database_url: str, cli_env) -> None:
    role = f"lookalike_reader_{secrets.token_hex(4)}"
    with connect(database_url, autocommit=True) as admin:
        admin.execute(sql.SQL("CREATE ROLE {} LOGIN").format(sql.Identifier(role)))
    try:
        params = conninfo.conninfo_to_dict(database_url)
        as_reader = conninfo.make_conninfo("", **{**params, "user": role})
        with pytest.raises(MigrationError) as refused:
            apply_migrations(as_reader)
        assert str(refused.value) == (
            f"cannot read the schema state of {describe_server(as_reader)}: "
            "permission denied for table schema_functions"
        )
        status = run({**cli_env, "DATABASE_URL": as_reader}, "migrate", "--status")
        assert (status.returncode, status.stderr) == (1, f"Error: {refused.value}\n")
    finally:
        with connect(database_url, autocommit=True) as admin:
            admin.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(role)))
