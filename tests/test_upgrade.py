"""A database made and filled by Lookalike as of commit 6043737 is migrated by this code.

tests/upgrade/fixture.json (made by that release's own code: see tests/upgrade/make_fixture.py)
holds its schema.sql, every row it wrote, and what its searches and bank checks answered.
After migrating, every row is still there and the same questions get the same answers.
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from PIL import Image, ImageOps
from psycopg import sql

from lookalike.store.db import apply_migrations, connect, scratch_database
from tests.test_migrate import FUNCTIONS
from tests.upgrade.make_fixture import FIXTURES, copy_out, lookalike, stored_columns


@pytest.fixture(params=sorted(FIXTURES), ids=lambda commit: f"made by {commit}")
def old(request: pytest.FixtureRequest) -> dict:
    """What an earlier release wrote and answered: before numbered migrations (6043737), and
    the release before this one's local features (eae3eaf)."""
    return json.loads(FIXTURES[request.param].read_text())


@pytest.fixture
def old_database(server_url: str, old: dict) -> Iterator[str]:
    """A fresh database with the old schema.sql applied and the old rows loaded."""
    with scratch_database(server_url, "lookalike_test_upgrade") as url:
        with connect(url) as conn:
            conn.execute("SET client_min_messages = warning")
            conn.execute(old["schema_sql"].encode())
            for dumped in old["tables"]:
                columns = sql.SQL(", ").join(map(sql.Identifier, dumped["columns"]))
                name = sql.Identifier(dumped["name"])
                query = sql.SQL("COPY {} ({}) FROM STDIN").format(name, columns)
                with conn.cursor().copy(query) as copy:
                    copy.write(dumped["rows"])
            for table, last_value in old["sequences"].items():
                conn.execute(
                    "SELECT setval(pg_get_serial_sequence(%s, 'id'), %s)", (table, last_value)
                )
        yield url


def test_the_fixture_was_made_by_the_old_release_and_is_small(old: dict) -> None:
    assert FIXTURES[old["commit"]].stat().st_size < 300_000
    assert "CREATE TABLE IF NOT EXISTS images" in old["schema_sql"]
    assert ("CREATE TABLE IF NOT EXISTS hash_kinds" in old["schema_sql"]) == (
        old["commit"] != "6043737"
    )
    assert all(dumped["rows"] for dumped in old["tables"])  # every table has rows


def test_an_old_database_keeps_every_row_and_answers_the_same(
    old: dict, old_database: str, cli_env: dict[str, str], tmp_path: Path
) -> None:
    assert apply_migrations(old_database) == [
        "applied migration 0001_initial.sql",
        "applied migration 0002_hash_kinds.sql",
        "applied migration 0003_local_features.sql",
        f"re-created the functions and views of schema.sql ({FUNCTIONS} functions, 2 views)",
    ]
    with connect(old_database) as conn:
        for dumped in old["tables"]:
            table, columns = dumped["name"], dumped["columns"]
            assert stored_columns(conn, table) == columns, table
            assert copy_out(conn, table, columns) == dumped["rows"], table
    env = {**cli_env, "DATABASE_URL": old_database}
    (tmp_path / "queries").mkdir()
    for name, data in old["queries"].items():
        (tmp_path / "queries" / name).write_bytes(base64.b64decode(data))
    for name, before in old["answers"].items():
        query = f"queries/{name}"
        searched = lookalike(
            env, tmp_path, "search", "--json", "--hash-only", "--max-distance", "12", query
        )
        checked = lookalike(env, tmp_path, "check", "--json", query)
        answer = json.loads(searched.stdout)
        assert [match.pop("relation") for match in answer] == [None] * len(answer), name
        assert answer == before["search"], name
        verdicts = json.loads(checked.stdout)
        for verdict in verdicts:  # the old release found these by hash; now each says so
            relations = [match.pop("relation") for match in verdict["matches"]]
            assert all(relation["method"] == "hash" for relation in relations), name
        assert (checked.returncode, verdicts) == (before["check_exit"], before["check"]), name
    flagged = lookalike(env, tmp_path, "check", "queries/original.jpg")
    assert flagged.returncode == 3 and "banned: entry 1, 0 bits" in flagged.stdout


def test_old_images_are_found_mirrored_and_get_features_when_recorded_again(
    old: dict, old_database: str, cli_env: dict[str, str], tmp_path: Path
) -> None:
    """Rows from before local features: found by their hashes' views (a mirrored copy) at
    once, and described when the same picture is indexed again."""
    apply_migrations(old_database)
    env = {**cli_env, "DATABASE_URL": old_database}
    original = Image.open(io.BytesIO(base64.b64decode(old["queries"]["original.jpg"])))
    ImageOps.mirror(original).save(tmp_path / "mirrored.png")
    before = json.loads(lookalike(env, tmp_path, "search", "--json", "mirrored.png").stdout)
    assert before and before[0]["relation"]["mirrored"] is True
    assert before[0]["relation"]["method"] == "hash"
    with connect(old_database) as conn:
        assert conn.execute("SELECT count(*) FROM image_features").fetchone() == (0,)
    data = base64.b64decode(old["queries"]["original.jpg"])
    (tmp_path / "again").mkdir()
    (tmp_path / "again" / "original.jpg").write_bytes(data)
    lookalike(env, tmp_path, "index", "again")
    with connect(old_database) as conn:
        described = conn.execute(
            "SELECT i.sha256 FROM image_features f JOIN images i ON i.id = f.image_id"
        ).fetchall()
    assert described == [(hashlib.sha256(data).hexdigest(),)]


def test_new_rows_after_the_upgrade_take_fresh_ids(old: dict, old_database: str) -> None:
    apply_migrations(old_database)
    with connect(old_database) as conn:
        (new_id,) = conn.execute(
            "INSERT INTO pages (url) VALUES ('https://new.example/') RETURNING id"
        ).fetchone()
    assert new_id == old["sequences"]["pages"] + 1
