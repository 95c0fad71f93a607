"""Hash kinds are plug-ins: a kind defined only in the tests is indexed, searched exactly
through its own multi-index and checked in a bank, with no change to the store or the site."""

from __future__ import annotations

import io
import random
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from lookalike import indexer, kinds
from lookalike.fingerprint import fingerprint
from lookalike.hashes import to_bigint
from lookalike.kinds import chunk_layout, chunk_shifts
from lookalike.store import Store, migrate
from lookalike.store.banks import Banks, FlagTarget
from lookalike.store.db import apply_migrations, connect, open_pool
from lookalike.store.kind_tables import KindNotInDatabase
from lookalike.store.migrate import Migration, Schema
from tests.images import encode, photo
from tests.plugin_kind import KIND, MIGRATIONS
from tests.test_migrate import FUNCTIONS, PER_KIND
from tests.web_openapi import assert_matches_openapi
from tests.web_support import running_app

MASK = (1 << KIND.bits) - 1
SHIPPED = migrate.shipped_schema()


def _with_plugin_migration() -> Schema:
    """The shipped migrations plus the kind's own, as if it shipped with Lookalike."""
    (path,) = MIGRATIONS.glob("0*.py")
    plugin = Migration(int(path.name[:4]), path.name, path.read_text())
    return Schema((*SHIPPED.migrations, plugin), SHIPPED.functions)


@pytest.fixture
def plugin_kind(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """The test kind registered, its migration among those every program applies."""
    monkeypatch.setattr(migrate, "shipped_schema", _with_plugin_migration)
    kinds.register(KIND)
    yield
    kinds.unregister(KIND.name)


@pytest.fixture
def plugin_url(database_url: str, plugin_kind: None) -> str:
    assert apply_migrations(database_url) == [
        "applied migration 0900_average48.py",
        # with the kind's own functions (test_migrate.FUNCTIONS counts the shipped ones)
        f"re-created the functions and views of schema.sql "
        f"({FUNCTIONS + PER_KIND} functions, 2 views)",
    ]
    return database_url


def _flip(value: int, bits: int, rng: random.Random) -> int:
    for bit in rng.sample(range(KIND.bits), bits):
        value ^= 1 << bit
    return value


def test_the_multi_index_layout_is_derived_from_the_bit_length(database_url: str) -> None:
    with connect(database_url) as conn:
        for bits in range(1, 65):
            (in_sql,) = conn.execute("SELECT hash_chunk_layout(%s)", (bits,)).fetchone()
            assert tuple(in_sql) == chunk_layout(bits), bits
            assert sum(in_sql) == bits and max(in_sql) <= 22
    assert chunk_layout(64) == (21, 21, 22) and chunk_layout(48) == (16, 16, 16)


def test_chunks_cut_in_sql_are_the_chunks_cut_in_python(database_url: str) -> None:
    rng = random.Random(5)
    with connect(database_url) as conn:
        for bits in (64, 48, 23, 22, 7):
            layout = chunk_layout(bits)
            for _ in range(20):
                value = rng.getrandbits(bits)
                in_python = [
                    (value >> shift) & ((1 << width) - 1)
                    for width, shift in zip(layout, chunk_shifts(bits), strict=True)
                ]
                in_sql = [
                    conn.execute(
                        "SELECT hash_chunk(%s, %s, %s)", (to_bigint(value), list(layout), chunk)
                    ).fetchone()[0]
                    for chunk in range(len(layout))
                ]
                assert in_sql == in_python, (bits, value)


def test_a_kind_reads_and_refuses_its_hex_form() -> None:
    dhash = kinds.get("dhash")
    assert dhash.from_hex(" 796DE8EC7B6F3F9F ") == 0x796DE8EC7B6F3F9F
    assert KIND.to_hex(0xABC) == "000000000abc"  # 48 bits: 12 digits
    with pytest.raises(ValueError, match=r"not a 48-bit hash: '12' \(expected 12 hex digits\)"):
        KIND.from_hex("12")
    with pytest.raises(kinds.UnknownKind, match=r"expected one of dhash$"):
        kinds.get("phash", searchable=True)


def test_a_plugin_kind_is_computed_indexed_and_stored(plugin_url: str, tmp_path: Path) -> None:
    for seed in range(12):
        (tmp_path / f"{seed}.jpg").write_bytes(encode(photo(seed, (320, 240))))
    files, _ = indexer.find_files([tmp_path])
    with Store(open_pool(plugin_url, init_schema=False)) as store:
        summary = indexer.index_files(store, indexer.fingerprint_files(files, workers=2))
    assert summary.indexed == 12
    expected = {fingerprint(path.read_bytes()).hashes[KIND.name] for path in files}
    with connect(plugin_url) as conn:
        stored = conn.execute("SELECT hash FROM average48_image_hashes").fetchall()
        images = conn.execute("SELECT count(*) FROM images").fetchone()[0]
    assert images == 12
    assert {value & MASK for (value,) in stored} == expected


def _fill(conn: psycopg.Connection, rng: random.Random, count: int) -> dict[int, int]:
    """``count`` images with clustered average48 hashes (crowded chunks, like real hashes)."""
    centres = [rng.getrandbits(KIND.bits) for _ in range(40)]
    hashes = [_flip(rng.choice(centres), rng.randrange(0, 9), rng) for _ in range(count)]
    ids = [
        row[0]
        for row in conn.execute(
            """
            INSERT INTO images (sha256, dhash, phash, width, height, format)
            SELECT md5(g::text) || md5((-g)::text), g, g, 1, 1, 'PNG'
            FROM generate_series(1, %s) AS g RETURNING id
            """,
            (count,),
        ).fetchall()
    ]
    with conn.cursor().copy("COPY average48_image_hashes (image_id, hash) FROM STDIN") as copy:
        for image_id, value in zip(ids, hashes, strict=True):
            copy.write_row((image_id, to_bigint(value)))
    conn.execute("ANALYZE average48_image_hashes")
    return dict(zip(ids, hashes, strict=True))


def test_search_by_a_plugin_kind_is_exact_through_its_own_index(plugin_url: str) -> None:
    rng = random.Random(48)
    with connect(plugin_url) as conn, conn.transaction():
        stored = _fill(conn, rng, 30_000)
    queries = [
        _flip(rng.choice(list(stored.values())), rng.randrange(0, 4), rng) for _ in range(12)
    ]
    with Store(open_pool(plugin_url, init_schema=False)) as store, connect(plugin_url) as conn:
        for query in queries:
            for radius in (0, 3, 6, 9, 14):
                found = store.search(query, kind=KIND.name, max_distance=radius, limit=10**6)
                brute = sorted(
                    (KIND.distance(value, query), image_id)
                    for image_id, value in stored.items()
                    if KIND.distance(value, query) <= radius
                )
                assert [(m.distance, m.image_id) for m in found] == brute, (query, radius)
                cost, rows = conn.execute(
                    "SELECT cost, table_rows FROM hash_kind_radii(%s, %s, %s)",
                    (KIND.name, to_bigint(query), radius),
                ).fetchone()
                assert radius > 6 or cost <= rows, "a search this narrow probes the indexes"


def test_a_bank_checks_by_a_plugin_kind(plugin_url: str) -> None:
    original = photo(7)
    copy = fingerprint(encode(original.resize((400, 300)), quality=60))
    unrelated = fingerprint(encode(photo(8)))
    pool = open_pool(plugin_url, init_schema=False)
    banks = Banks(pool)
    with pool:
        flagged = banks.flag(
            FlagTarget.from_fingerprint(fingerprint(encode(original))),
            bank="banned",
            reason="test",
            flagged_by="mod",
        )
        by_kind = banks.check(copy.hashes, kind=KIND.name)
        assert [m.entry_id for m in by_kind] == [flagged.entry.id]
        assert banks.check(unrelated.hashes, kind=KIND.name) == []
        only_plugin = {KIND.name: copy.hashes[KIND.name]}
        assert [m.entry_id for m in banks.check(only_plugin)] == [flagged.entry.id]
        banks.disable(disabled_by="lead", entry_id=flagged.entry.id)
        assert banks.check(copy.hashes, kind=KIND.name) == []


def test_a_kind_without_its_migration_is_a_one_line_error(
    database_url: str, plugin_kind: None
) -> None:
    sighting = indexer.sighting_for(Path("/photos/a.jpg"), fingerprint(encode(photo(1))), {})
    with Store(open_pool(database_url, init_schema=False)) as store:
        with pytest.raises(KindNotInDatabase, match="run `lookalike migrate`"):
            store.record([sighting])
        assert store.stats().images == 0


def test_the_site_searches_and_compares_by_a_plugin_kind(plugin_url: str) -> None:
    original = encode(photo(3))
    with Store(open_pool(plugin_url, init_schema=False)) as store:
        store.record([indexer.sighting_for(Path("/photos/three.jpg"), fingerprint(original), {})])
    query = fingerprint(encode(photo(3).resize((320, 240)), quality=70))
    with running_app(plugin_url, WTF_CSRF_ENABLED=False) as app:
        client = app.test_client()
        upload = client.post(
            "/api/search",
            data={
                "image": (io.BytesIO(encode(photo(3).resize((320, 240)), quality=70)), "q.jpg"),
                "kind": KIND.name,
            },
        )
        assert upload.status_code == 200, upload.get_json()
        body = upload.get_json()
        assert (body["query"]["kind"], body["query"]["hash"]) == (
            KIND.name,
            query.hex(KIND.name),
        )
        (match,) = body["matches"]
        stored = fingerprint(original).hashes[KIND.name]
        assert match["distance"] == KIND.distance(query.hashes[KIND.name], stored)
        assert_matches_openapi(upload, "/api/search", "post")
        raw = client.post("/api/search", json={"kind": KIND.name, "hash": KIND.to_hex(stored)})
        assert [m["distance"] for m in raw.get_json()["matches"]] == [0]
        page = client.get(f"/search?kind={KIND.name}&{KIND.name}={KIND.to_hex(stored)}")
        assert page.status_code == 200 and f"aHash-48 <code>{KIND.to_hex(stored)}</code>" in (
            page.get_data(as_text=True)
        )
        image_id = match["image_id"]
        compare = client.get(f"/compare/{image_id}?kind={KIND.name}&hash={KIND.to_hex(stored)}")
        assert "The 48 aHash-48 bits" in compare.get_data(as_text=True)
        unknown = client.post("/api/search", json={"kind": "nope", "hash": "00"})
        assert unknown.status_code == 400
        assert unknown.get_json()["error"]["message"] == (
            f"unknown searchable hash kind 'nope': expected one of dhash, {KIND.name}"
        )
        not_searchable = client.get("/search?kind=phash&phash=0000000000000000")
        assert not_searchable.status_code == 400


def test_every_module_of_the_kinds_package_that_defines_a_kind_is_registered(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "average48.py").write_text("from tests.plugin_kind import KIND\n")
    (tmp_path / "helpers.py").write_text("VALUE = 1\n")  # no KIND: not a kind
    monkeypatch.setattr(kinds, "__path__", [*kinds.__path__, str(tmp_path)])
    kinds._registry.cache_clear()
    try:
        built_in = ["dhash", "phash", KIND.name, "framed_dhash"]  # then by module name
        assert [kind.name for kind in kinds.all_kinds()] == built_in
        assert [kind.name for kind in kinds.indexed_kinds()] == ["dhash", KIND.name, "framed_dhash"]
        assert [kind.name for kind in kinds.searchable_kinds()] == ["dhash", KIND.name]
        # an unframed photo has no framed_dhash
        assert set(fingerprint(encode(photo(2))).hashes) == {"dhash", "phash", KIND.name}
    finally:
        monkeypatch.undo()
        kinds._registry.cache_clear()
    assert [kind.name for kind in kinds.all_kinds()] == ["dhash", "phash", "framed_dhash"]
