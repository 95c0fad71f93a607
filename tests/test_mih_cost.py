"""The search benchmark's cost model must count exactly what the SQL probes read."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from click.testing import CliRunner

from benchmarks.bench import bench
from benchmarks.data import clustered_hashes, load_hashes
from benchmarks.mih_cost import ChunkCounts, CostFit, Work
from lookalike.store.db import connect

ROWS_READ_SQL = """
    SELECT cardinality(p.chunk0) + cardinality(p.chunk1) + cardinality(p.chunk2),
           (SELECT count(*) FROM images WHERE dhash_chunk0 = ANY (p.chunk0))
         + (SELECT count(*) FROM images WHERE dhash_chunk1 = ANY (p.chunk1))
         + (SELECT count(*) FROM images WHERE dhash_chunk2 = ANY (p.chunk2))
    FROM hash_chunk_probes(%s::bigint, %s, %s, %s) AS p
"""


@pytest.fixture
def clustered(database_url: str) -> tuple[str, np.ndarray]:
    hashes = clustered_hashes(5_000, seed=3)
    load_hashes(database_url, hashes)
    return database_url, hashes


def test_work_counts_the_probes_and_rows_the_sql_reads(clustered: tuple[str, np.ndarray]) -> None:
    url, hashes = clustered
    counts = ChunkCounts(hashes)
    queries = [int(h) for h in hashes[:5]] + [0x0123_4567_89AB_CDEF]
    with connect(url) as conn:
        for query, split in itertools.product(queries, [(0, 0, 0), (2, -1, 1), (1, 3, 4)]):
            probes, rows = conn.execute(ROWS_READ_SQL, (query, *split)).fetchone()
            assert counts.work(query, split) == Work(probes, rows), (query, split)


def test_cheapest_is_the_best_exact_split(clustered: tuple[str, np.ndarray]) -> None:
    _, hashes = clustered
    counts = ChunkCounts(hashes)
    fit = CostFit(fixed_ms=0.3, per_probe_ms=0.004, per_row_ms=0.0002)
    query = int(hashes[7])
    for radius in (4, 8, 12):
        exact_splits = [
            split
            for split in itertools.product(range(-1, 5), repeat=3)
            if sum(k + 1 for k in split) >= radius + 1
        ]
        best = min(fit.ms(counts.work(query, split)) for split in exact_splits)
        assert fit.ms(counts.cheapest(query, radius, fit)) == pytest.approx(best)


def test_cost_fit_recovers_known_costs_despite_a_stray_slow_query() -> None:
    rng = np.random.default_rng(1)
    work = [
        Work(int(p), int(r))
        for p, r in zip(rng.integers(10, 2000, 200), rng.integers(0, 50_000, 200), strict=True)
    ]
    times = [0.4 + 0.004 * w.probes + 0.00015 * w.rows for w in work]
    times[0] += 50  # the machine was busy for one query
    fit = CostFit.of(work, times)
    assert fit.fixed_ms == pytest.approx(0.4, rel=0.05)
    assert fit.per_probe_ms == pytest.approx(0.004, rel=0.05)
    assert fit.per_row_ms == pytest.approx(0.00015, rel=0.05)


def test_bench_search_prints_exactness_work_and_floor(server_url: str) -> None:
    result = CliRunner().invoke(
        bench,
        ["search", "--rows", "3000", "--queries", "5", "--scan-queries", "3"],
        env={"DATABASE_URL": server_url},
    )
    assert result.exit_code == 0, result.output
    radius_lines = [
        line.split() for line in result.output.splitlines() if "ms" in line and "×" in line
    ]
    assert len(radius_lines) == 6  # two distributions, three radii
    assert all(line[6] == "yes" for line in radius_lines), result.output
    assert result.output.count("fitted cost per query:") == 1
