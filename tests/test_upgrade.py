"""Databases made and filled by earlier releases of Lookalike are migrated by this code.

Each fixture in tests/upgrade/ (made by that release's own code: see make_fixture.py) holds
its schema.sql, every row it wrote, and what its searches and bank checks answered.
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
    """What an earlier release wrote and answered: before numbered migrations (6043737),
    before local features (eae3eaf) and before framed pictures (0c12f0d)."""
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
        "applied migration 0004_framed_pictures.sql",
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
    robust = _searched_robustly(old)
    for name, before in old["answers"].items():
        query = f"queries/{name}"
        searched = lookalike(
            env,
            tmp_path,
            "search",
            "--json",
            *([] if robust else ["--hash-only"]),
            "--max-distance",
            "12",
            query,
        )
        checked = lookalike(env, tmp_path, "check", "--json", query)
        answer = json.loads(searched.stdout)
        verdicts = json.loads(checked.stdout)
        if not robust:  # the old release found these by hash; now each match says so
            assert [match.pop("relation") for match in answer] == [None] * len(answer), name
            for verdict in verdicts:
                relations = [match.pop("relation") for match in verdict["matches"]]
                assert all(relation["method"] == "hash" for relation in relations), name
        assert answer == before["search"], name
        assert (checked.returncode, verdicts) == (before["check_exit"], before["check"]), name
    flagged = lookalike(env, tmp_path, "check", "queries/original.jpg")
    assert flagged.returncode == 3 and "banned: entry 1, 0 bits" in flagged.stdout


def _searched_robustly(old: dict) -> bool:
    """Whether the old release's searches said how each match differs (local features)."""
    return any(
        "relation" in match for answer in old["answers"].values() for match in answer["search"]
    )


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
    data = base64.b64decode(old["queries"]["original.jpg"])
    digest = (hashlib.sha256(data).hexdigest(),)
    if not _searched_robustly(old):  # a release before local features described nothing
        assert _described(old_database) == []
    (tmp_path / "again").mkdir()
    (tmp_path / "again" / "original.jpg").write_bytes(data)
    lookalike(env, tmp_path, "index", "again")
    assert digest in _described(old_database)


def _described(url: str) -> list[tuple[str]]:
    """The contents of the images that have local features."""
    with connect(url) as conn:
        return conn.execute(
            "SELECT i.sha256 FROM image_features f JOIN images i ON i.id = f.image_id"
        ).fetchall()


@pytest.mark.parametrize("old", ["0c12f0d"], indirect=True)
def test_an_old_framed_picture_is_found_plain_once_it_is_recorded_again(
    old: dict, old_database: str, cli_env: dict[str, str], tmp_path: Path
) -> None:
    """A framed row from before 0004 has no hash of what is inside its frame: the plain
    picture (a graphic without local features) finds it once it is recorded again."""
    apply_migrations(old_database)
    env = {**cli_env, "DATABASE_URL": old_database}
    for name in ("framed.png", "unframed.png"):
        (tmp_path / name).write_bytes(base64.b64decode(old["queries"][name]))

    def found() -> list[dict]:
        return json.loads(lookalike(env, tmp_path, "search", "--json", "unframed.png").stdout)

    assert found() == []
    (tmp_path / "again").mkdir()
    (tmp_path / "framed.png").rename(tmp_path / "again" / "framed.png")
    assert lookalike(env, tmp_path, "index", "again").returncode == 0
    (match,) = found()
    assert match["relation"]["method"] == "hash"
    assert match["relation"]["target_overlap_percent"] == pytest.approx(
        100 * (320 * 240) / (384 * 304), abs=1
    )
    with connect(old_database) as conn:
        assert conn.execute("SELECT count(*) FROM image_frames").fetchone() == (1,)


def test_new_rows_after_the_upgrade_take_fresh_ids(old: dict, old_database: str) -> None:
    apply_migrations(old_database)
    with connect(old_database) as conn:
        (new_id,) = conn.execute(
            "INSERT INTO pages (url) VALUES ('https://new.example/') RETURNING id"
        ).fetchone()
    assert new_id == old["sequences"]["pages"] + 1
