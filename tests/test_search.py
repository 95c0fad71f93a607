"""similar_images() must give exactly what a brute-force scan gives, for every radius."""

from __future__ import annotations

import secrets

import numpy as np
import psycopg
import pytest

from benchmarks.data import clustered_hashes, load_hashes
from lookalike.hashes import hash_to_hex
from lookalike.store.db import connect

RANDOM_ROWS = 10_000
CLUSTERED_ROWS = 10_000
QUERIES_PER_RADIUS = 25


@pytest.fixture(scope="module")
def loaded(server_url: str, template_database: str) -> tuple[str, np.ndarray, np.ndarray]:
    """A database with 10,000 uniform and 10,000 clustered hashes; (url, ids, hashes)."""
    from tests.conftest import _create_database, _drop_database

    # a name of its own: under xdist every worker that runs tests of this module builds one
    name = f"lookalike_test_search_{secrets.token_hex(4)}"
    url = _create_database(server_url, name, template=template_database)
    rng = np.random.default_rng(11)
    uniform = rng.integers(np.iinfo(np.int64).min, np.iinfo(np.int64).max, RANDOM_ROWS, np.int64)
    hashes = np.concatenate([uniform, clustered_hashes(CLUSTERED_ROWS, seed=5)])
    load_hashes(url, hashes)
    with connect(url) as conn:
        rows = conn.execute("SELECT id, dhash FROM images").fetchall()
    ids = np.array([row[0] for row in rows], dtype=np.int64)
    stored = np.array([row[1] for row in rows], dtype=np.int64)
    yield url, ids, stored
    _drop_database(server_url, name)


def _brute_force(ids: np.ndarray, hashes: np.ndarray, query: int, radius: int) -> list[tuple]:
    xor = (hashes ^ np.int64(query)).view(np.uint64)
    distances = np.bitwise_count(xor).astype(int)
    hits = np.flatnonzero(distances <= radius)
    return sorted((int(ids[i]), int(distances[i])) for i in hits)


def _queries(hashes: np.ndarray, count: int, seed: int) -> list[int]:
    """Stored hashes with a few bits flipped (near-duplicate look-ups) and fresh random ones."""
    rng = np.random.default_rng(seed)
    near = hashes[rng.integers(0, len(hashes), count - 5)].view(np.uint64).copy()
    for _ in range(3):
        near ^= np.uint64(1) << rng.integers(0, 64, len(near)).astype(np.uint64)
    fresh = rng.integers(0, np.iinfo(np.int64).max, 5, dtype=np.int64)
    return [int(v) for v in near.view(np.int64)] + [int(v) for v in fresh]


PROBED_SQL = """
    SELECT p.image_id, p.distance
    FROM image_chunk_radii(%(q)s::bigint, %(r)s) AS k,
    LATERAL similar_images_probed(%(q)s::bigint, %(r)s, k.k0, k.k1, k.k2) AS p
"""
PLANNED_SQL = "SELECT image_id, distance FROM similar_images(%(q)s::bigint, %(r)s)"


@pytest.mark.parametrize("radius", range(15))
@pytest.mark.parametrize("path", ["probed", "planned"])
def test_similar_images_equals_brute_force(loaded, radius: int, path: str) -> None:
    """Both the index path (forced) and similar_images (which may choose to scan)."""
    url, ids, hashes = loaded
    statement = PROBED_SQL if path == "probed" else PLANNED_SQL
    with connect(url) as conn:
        for query in _queries(hashes, QUERIES_PER_RADIUS, seed=radius):
            found = conn.execute(statement, {"q": query, "r": radius}).fetchall()
            assert sorted(found) == _brute_force(ids, hashes, query, radius)
            assert [d for _, d in found] == sorted(d for _, d in found)  # best first


def test_clustered_queries_really_find_neighbours(loaded) -> None:
    """Guards the test above against passing vacuously with empty results."""
    url, _, hashes = loaded
    with connect(url) as conn:
        found = sum(
            len(conn.execute("SELECT * FROM similar_images(%s::bigint, 8)", (q,)).fetchall())
            for q in _queries(hashes, 20, seed=99)
        )
    assert found >= 20


def test_radius_past_the_probing_limit_still_exact(loaded) -> None:
    url, ids, hashes = loaded
    query = int(hashes[3])
    with connect(url) as conn:
        found = conn.execute("SELECT * FROM similar_images(%s::bigint, 20)", (query,)).fetchall()
    assert sorted(found) == _brute_force(ids, hashes, query, 20)


def test_text_overload_takes_the_hex_that_lookalike_hash_prints(loaded) -> None:
    url, ids, hashes = loaded
    query = int(hashes[7])
    with connect(url) as conn:
        as_text = conn.execute(
            "SELECT * FROM similar_images(%s, 6)", (hash_to_hex(query),)
        ).fetchall()
        as_bigint = conn.execute("SELECT * FROM similar_images(%s::bigint, 6)", (query,)).fetchall()
    assert as_text == as_bigint
    assert (int(ids[7]), 0) in as_text


def test_sql_helpers(database_url: str) -> None:
    with connect(database_url) as conn:
        assert conn.execute("SELECT hamming(0, -1)").fetchone() == (64,)
        assert conn.execute("SELECT hash_to_hex(hash_from_hex('00ff00ff00ff00ff'))").fetchone() == (
            "00ff00ff00ff00ff",
        )
        with pytest.raises(psycopg.errors.InvalidParameterValue, match="16 hex digits"):
            conn.execute("SELECT hash_from_hex('nope')")
        conn.rollback()
        with pytest.raises(psycopg.errors.InvalidParameterValue, match="max_distance"):
            conn.execute("SELECT * FROM similar_images(0::bigint, -1)")


def test_every_radius_split_covers_the_radius_whatever_the_densities(database_url: str) -> None:
    densities = [(0, 0, 0), (1e6, 0, 0), (0, 1e6, 3), (5, 5, 1e6), (0.5, 200, 7)]
    with connect(database_url) as conn:
        for radius in range(15):
            for density in densities:
                k0, k1, k2 = conn.execute(
                    "SELECT k0, k1, k2 FROM hash_chunk_radii(%s, %s, %s, %s)", (radius, *density)
                ).fetchone()
                assert all(-1 <= k <= 4 for k in (k0, k1, k2))
                assert (k0 + 1) + (k1 + 1) + (k2 + 1) >= radius + 1  # pigeonhole
        # a crowded chunk gets the small radius
        assert conn.execute("SELECT k0 FROM hash_chunk_radii(12, 1e5, 1, 1)").fetchone()[0] < 3
