"""The crawls table (lookalike.store.crawls): resume by key, counters, errors merged by kind."""

from __future__ import annotations

from collections import Counter

import psycopg

from lookalike.store import crawls


def test_same_key_resumes_until_finished_then_starts_anew(database_url: str) -> None:
    seeds = ["https://b.example/", "https://a.example/"]
    key = crawls.crawl_key(seeds, {"depth": 2})
    assert key == crawls.crawl_key(list(reversed(seeds)), {"depth": 2})
    assert key != crawls.crawl_key(seeds, {"depth": 3})
    with psycopg.connect(database_url, autocommit=True) as conn:
        first, resumed = crawls.open_crawl(conn, key, seeds, {"depth": 2})
        assert not resumed
        assert crawls.open_crawl(conn, key, seeds, {"depth": 2}) == (first, True)
        crawls.finish_crawl(conn, first, "finished")
        second, resumed = crawls.open_crawl(conn, key, seeds, {"depth": 2})
        assert second != first and not resumed


def test_counters_add_up_and_errors_merge_by_kind(database_url: str) -> None:
    with psycopg.connect(database_url, autocommit=True) as conn:
        crawl_id, _ = crawls.open_crawl(conn, "k", ["https://a.example/"], {})
        crawls.add_counts(conn, crawl_id, pages=3, images_seen=5, new_images=4, new_sightings=6,
                          errors=Counter({"timeout": 1, "http 404": 2}))  # fmt: skip
        crawls.add_counts(conn, crawl_id, pages=1, errors=Counter({"timeout": 2}))
        crawls.add_counts(conn, crawl_id, images_seen=1)
        summary = crawls.get_crawl(conn, crawl_id)
        assert summary is not None
        assert (summary.pages, summary.images_seen, summary.new_images) == (4, 6, 4)
        assert summary.errors == {"timeout": 3, "http 404": 2}
        assert summary.one_line() == (
            f"crawl {crawl_id} unfinished: 4 pages, 6 images (4 new), 6 new sightings; "
            "errors: http 404: 2, timeout: 3"
        )
        crawls.finish_crawl(conn, crawl_id, "finished")
        later, _ = crawls.open_crawl(conn, "other", ["https://b.example/"], {})
        assert [c.id for c in crawls.recent_crawls(conn)] == [later, crawl_id]
        assert crawls.recent_crawls(conn)[1].outcome == "finished"
