"""Regenerate a fixture: a database made and filled by Lookalike as of an earlier commit.

    export DATABASE_URL=postgresql://postgres@127.0.0.1:5432/postgres
    python -m tests.upgrade.make_fixture [COMMIT]

``fixture.json`` is commit 6043737's, the last release before numbered migrations;
``fixture-eae3eaf.json`` is eae3eaf's, the release before local features (migration 0003);
``fixture-0c12f0d.json`` is 0c12f0d's, the release before framed pictures (migration 0004).

    python -m tests.upgrade.make_fixture --features b57ac4a

writes ``features-b57ac4a.bin`` instead: the stored features of ``scene(3)`` as that release
wrote them (format 1, whole 32-byte descriptors), for tests/test_robust.py.

Runs that release's own code (``git archive 6043737``, on PYTHONPATH) against a scratch
database: it indexes a folder of generated photos, crawls a small local site, flags two
fingerprints in banks and unflags one, then records what its ``lookalike search --json`` and
``lookalike check --json`` answered for a few query images. The fixture holds that release's
schema.sql, every row it wrote (COPY text, per table in dependency order), its identity
sequences, the query images and those answers. tests/test_upgrade.py loads it with the old
schema, migrates it with this code and checks that nothing changed.
"""

from __future__ import annotations

import base64
import io
import json
import os
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

import psycopg
from PIL import ImageOps
from psycopg import sql

from lookalike.store.db import connect, scratch_database
from tests.crawl_site import FAST_SETTINGS, Site, linked_routes
from tests.images import encode, flat_picture, photo

FIXTURES = {
    "6043737": Path(__file__).with_name("fixture.json"),
    "eae3eaf": Path(__file__).with_name("fixture-eae3eaf.json"),
    "0c12f0d": Path(__file__).with_name("fixture-0c12f0d.json"),
}
ROOT = Path(__file__).resolve().parents[2]
# In dependency order, those a release has; hash_flip_masks is left out: the old schema.sql
# fills it itself.
TABLES = [
    "images",
    "pages",
    "sightings",
    "thumbnails",
    "crawls",
    "crawl_requests",
    "crawl_image_refs",
    "banks",
    "bank_entries",
    "image_features",
    "bank_entry_features",
]
WITH_IDENTITY = ["images", "pages", "sightings", "crawls", "banks", "bank_entries"]
# A plain graphic in a white frame: found from the plain picture by neither hash nor features
# until it is recorded again with the hash of what is inside the frame.
FRAMED = encode(ImageOps.expand(flat_picture(4, (320, 240)), 32, fill="white"), "PNG")


def stored_columns(conn: psycopg.Connection, table: str) -> list[str]:
    """The columns a row is written with: all but the generated ones."""
    rows = conn.execute(
        "SELECT column_name FROM information_schema.columns WHERE table_schema = 'public'"
        " AND table_name = %s AND is_generated = 'NEVER' ORDER BY ordinal_position",
        (table,),
    ).fetchall()
    return [name for (name,) in rows]


def copy_out(conn: psycopg.Connection, table: str, columns: list[str]) -> str:
    """Every row of ``table`` in COPY text form, in a stable order."""
    query = sql.SQL("COPY (SELECT {} FROM {} ORDER BY {}) TO STDOUT").format(
        sql.SQL(", ").join(map(sql.Identifier, columns)),
        sql.Identifier(table),
        sql.SQL(", ").join(sql.Literal(n) for n in range(1, len(columns) + 1)),
    )
    out = io.BytesIO()
    with conn.cursor().copy(query) as copy:
        for block in copy:
            out.write(block)
    return out.getvalue().decode()


def dump_rows(url: str) -> dict[str, object]:
    with connect(url) as conn:
        tables = []  # a list: the order rows are loaded in
        for table in TABLES:
            if conn.execute("SELECT to_regclass(%s)", (table,)).fetchone() == (None,):
                continue  # not in that release
            columns = stored_columns(conn, table)
            tables.append(
                {"name": table, "columns": columns, "rows": copy_out(conn, table, columns)}
            )
        sequences = {
            table: conn.execute(
                "SELECT pg_sequence_last_value(pg_get_serial_sequence(%s, 'id')::regclass)",
                (table,),
            ).fetchone()[0]
            for table in WITH_IDENTITY
        }
    return {"tables": tables, "sequences": sequences}


def lookalike(env: dict[str, str], cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "lookalike", *args],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=180,
    )


def answers(env: dict[str, str], work: Path, queries: dict[str, bytes]) -> dict[str, object]:
    """What ``search --json`` and ``check --json`` answer for each query (paths relative)."""
    (work / "queries").mkdir(exist_ok=True)
    recorded: dict[str, object] = {}
    for name, data in queries.items():
        (work / "queries" / name).write_bytes(data)
        searched = lookalike(
            env, work, "search", "--json", "--max-distance", "12", f"queries/{name}"
        )
        checked = lookalike(env, work, "check", "--json", f"queries/{name}")
        assert searched.returncode == 0, searched.stderr
        assert checked.returncode in (0, 3), checked.stderr
        recorded[name] = {
            "search": json.loads(searched.stdout),
            "check": json.loads(checked.stdout),
            "check_exit": checked.returncode,
        }
    return recorded


def old_code(commit: str, into: Path) -> str:
    """Unpack ``commit`` into ``into``; returns its schema.sql."""
    archive = subprocess.run(
        ["git", "-C", str(ROOT), "archive", commit], capture_output=True, check=True
    ).stdout
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        tar.extractall(into, filter="data")
    return (into / "schema.sql").read_text()


def fill(env: dict[str, str], work: Path) -> None:
    """Index photos, crawl a local site, flag and unflag, all with the old code."""
    photos = work / "photos"
    (photos / "copies").mkdir(parents=True)
    original = photo(1, (320, 240))
    (photos / "original.jpg").write_bytes(encode(original, "JPEG"))
    (photos / "copies" / "small.jpg").write_bytes(encode(original.resize((160, 120)), "JPEG"))
    (photos / "copies" / "q30.jpg").write_bytes(encode(original, "JPEG", quality=30))
    (photos / "other.png").write_bytes(encode(photo(2, (200, 150)), "PNG"))
    (photos / "framed.png").write_bytes(FRAMED)
    indexed = lookalike(env, work, "index", "photos")
    assert indexed.returncode == 0, indexed.stderr
    with Site(linked_routes(pages=3, images=4)) as site:
        crawled = lookalike(
            env, work, "crawl", *FAST_SETTINGS[:-2], "--depth", "2", site.url("/p0")
        )
    assert crawled.returncode == 0, crawled.stderr
    for args in (
        ["flag", "photos/original.jpg", "--bank", "banned", "--reason", "spam", "--by", "mod"],
        ["flag", "--dhash", "0123456789abcdef", "--bank", "copyright", "--by", "mod"],
        ["flag", "photos/other.png", "--bank", "banned", "--by", "mod"],
        ["unflag", "photos/other.png", "--by", "mod"],
    ):
        done = lookalike(env, work, *args)
        assert done.returncode == 0, done.stderr


def main(commit: str) -> None:
    server = os.environ["DATABASE_URL"]
    with tempfile.TemporaryDirectory() as temp, scratch_database(server, "lookalike_old") as url:
        old, work = Path(temp) / "old", Path(temp) / "work"
        work.mkdir()
        schema_sql = old_code(commit, old)
        env = {**os.environ, "DATABASE_URL": url, "PYTHONPATH": str(old)}
        env["LOOKALIKE_HOME"] = str(Path(temp) / "home")
        fill(env, work)
        queries = {
            "original.jpg": encode(photo(1, (320, 240)), "JPEG", quality=90),
            "crawled.jpg": encode(photo(0, (160, 120)), "JPEG", quality=70),
            "unrelated.png": encode(photo(7, (120, 90)), "PNG"),
            "unflagged.png": encode(photo(2, (200, 150)), "PNG"),  # its entry was disabled
            "framed.png": FRAMED,
            "unframed.png": encode(flat_picture(4, (320, 240)), "PNG"),
        }
        fixture = {
            "commit": commit,
            "schema_sql": schema_sql,
            **dump_rows(url),
            "queries": {name: base64.b64encode(data).decode() for name, data in queries.items()},
            "answers": answers(env, work, queries),
        }
    path = FIXTURES[commit]
    path.write_text(json.dumps(fixture, indent=1, sort_keys=True) + "\n")
    print(f"wrote {path} ({path.stat().st_size:,} bytes)")


FEATURES_FIXTURES = {"b57ac4a": Path(__file__).with_name("features-b57ac4a.bin")}
_DESCRIBE_SCENE = """
import sys
from lookalike.fingerprint import fingerprint
from tests.images import encode, scene
sys.stdout.buffer.write(fingerprint(encode(scene(3), "PNG"), with_features=True).features)
"""


def features_fixture(commit: str) -> None:
    """The stored features of tests.images.scene(3), written by ``commit``'s own code."""
    with tempfile.TemporaryDirectory() as temp:
        old_code(commit, Path(temp))
        described = subprocess.run(
            [sys.executable, "-c", _DESCRIBE_SCENE],
            env={**os.environ, "PYTHONPATH": temp},
            cwd=temp,
            capture_output=True,
            check=True,
        )
    path = FEATURES_FIXTURES[commit]
    path.write_bytes(described.stdout)
    print(f"wrote {path} ({len(described.stdout):,} bytes)")


if __name__ == "__main__":
    if sys.argv[1:2] == ["--features"]:
        features_fixture(sys.argv[2])
    else:
        main(sys.argv[1] if len(sys.argv) > 1 else "6043737")
