"""Recording sightings: batched, idempotent, one image row per content."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from lookalike.fingerprint import fingerprint
from lookalike.store import Sighting, Store
from lookalike.store.db import connect
from tests.images import encode, photo


def _fp(seed: int, **options: object):
    return fingerprint(encode(photo(seed), "JPEG"), **options)


def test_same_image_on_many_pages_is_one_image_row(store: Store) -> None:
    fp = _fp(1)
    result = store.record(
        [
            Sighting(fp, "http://a.test/x.jpg", f"http://a.test/page{n}", f"Page {n}")
            for n in range(3)
        ]
    )
    assert (result.new_images, result.new_sightings) == (1, 3)
    stats = store.stats()
    assert (stats.images, stats.pages, stats.sightings) == (1, 3, 3)


def test_recording_again_only_moves_last_seen(store: Store, database_url: str) -> None:
    fp = _fp(2)
    earlier = datetime(2026, 1, 1, tzinfo=UTC)
    later = earlier + timedelta(days=30)
    store.record([Sighting(fp, "http://a.test/x.jpg", "http://a.test/", "Title", "alt", earlier)])
    again = store.record([Sighting(fp, "http://a.test/x.jpg", "http://a.test/", None, None, later)])
    assert (again.new_images, again.known_images, again.new_sightings) == (0, 1, 0)
    with connect(database_url) as conn:
        row = conn.execute(
            "SELECT page_title, alt_text, first_seen, last_seen FROM image_sightings"
        ).fetchall()
    assert row == [("Title", "alt", earlier, later)]  # missing title/alt do not erase known ones


def test_duplicates_within_one_batch_are_folded(store: Store) -> None:
    fp = _fp(3)
    sighting = Sighting(fp, "http://a.test/x.jpg", "http://a.test/")
    result = store.record(
        [sighting, sighting, Sighting(fp, "http://cdn.test/x.jpg", "http://a.test/")]
    )
    assert (result.new_images, result.new_sightings) == (1, 2)


def test_search_returns_matches_best_first_with_their_sightings(store: Store) -> None:
    original = photo(4)
    smaller = original.resize((320, 240))
    store.record(
        [
            Sighting(
                fingerprint(encode(original, "PNG")), "http://a.test/big.png", "http://a.test/"
            ),
            Sighting(
                fingerprint(encode(smaller, "JPEG", quality=40)),
                "http://b.test/s.jpg",
                "http://b.test/p",
            ),
            Sighting(_fp(5), "http://c.test/other.jpg", "http://c.test/"),
        ]
    )
    matches = store.search(fingerprint(encode(original, "JPEG")).hashes["dhash"], max_distance=10)
    assert [m.sightings[0].page_url for m in matches] == ["http://a.test/", "http://b.test/p"]
    assert matches[0].distance <= matches[1].distance <= 10
    assert matches[1].sightings[0].domain == "b.test"


def test_thumbnails_are_kept_for_images_recorded_with_one(store: Store) -> None:
    fp = _fp(6, with_thumbnail=True)
    store.record([Sighting(fp, "http://a.test/x.jpg", "http://a.test/")])
    (match,) = store.search(fp.hashes["dhash"], max_distance=0)
    assert store.thumbnail(match.image_id) == fp.thumbnail
    assert store.thumbnail(match.image_id + 1000) is None
