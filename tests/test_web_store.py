"""Store.search_page and Store.image: what the results pages and the API are built on."""

from __future__ import annotations

import pytest

from lookalike.fingerprint import fingerprint
from lookalike.hashes import hash_to_hex
from lookalike.store import SORT_ORDERS, Store
from tests.web_support import seed_corpus


@pytest.fixture
def corpus_store(store: Store):
    return store, seed_corpus(store)


def _ids(page) -> list[int]:
    return [match.image_id for match in page.matches]


def test_every_sort_order_ranks_the_copies_as_documented(corpus_store) -> None:
    store, corpus = corpus_store
    dhash = fingerprint(corpus.original).hashes["dhash"]
    ids = corpus.ids
    expected = {
        # distance first (small is 1 bit off), ties by id
        "best": [*sorted([ids["original"], ids["evil"], ids["big"]]), ids["small"]],
        "pages": [ids["original"], *sorted([ids["evil"], ids["big"]]), ids["small"]],
        "newest": [ids["big"], ids["small"], ids["original"], ids["evil"]],
        "oldest": [ids["evil"], ids["original"], ids["small"], ids["big"]],
        "biggest": [ids["big"], *sorted([ids["original"], ids["evil"]]), ids["small"]],
    }
    assert expected.keys() == SORT_ORDERS.keys()
    distances = {m.image_id: m.distance for m in store.search_page(dhash).matches}
    assert distances[ids["small"]] > 0 and ids["other"] not in distances
    for sort, order in expected.items():
        page = store.search_page(dhash, sort=sort)
        assert _ids(page) == order, sort
        assert page.total == 4


def test_ranked_matches_carry_pages_first_seen_and_thumbnail_presence(corpus_store) -> None:
    store, corpus = corpus_store
    page = store.search_page(fingerprint(corpus.original).hashes["dhash"])
    by_id = {m.image_id: m for m in page.matches}
    original = by_id[corpus.ids["original"]]
    assert (original.pages, original.first_seen.year, original.has_thumbnail) == (3, 2024, True)
    assert by_id[corpus.ids["small"]].has_thumbnail is False
    assert [s.page_url for s in original.sightings] == [
        "http://a.test/1",
        "http://a.test/2",
        "https://b.test/",
    ]


def test_domain_filter_keeps_matches_seen_there_and_only_those_sightings(corpus_store) -> None:
    store, corpus = corpus_store
    page = store.search_page(
        fingerprint(corpus.original).hashes["dhash"], domain="b.test", with_domains=True
    )
    assert sorted(_ids(page)) == sorted([corpus.ids["original"], corpus.ids["big"]])
    assert page.total == 2
    assert {s.domain for m in page.matches for s in m.sightings} == {"b.test"}
    assert {m.image_id: m.pages for m in page.matches}[corpus.ids["original"]] == 1
    # the domain menu still lists every domain of every match, most matching images first
    assert page.domains == [("b.test", 2), ("a.test", 1), ("c.test", 1)]


def test_pages_split_the_matches_and_the_total_survives_past_the_end(corpus_store) -> None:
    store, corpus = corpus_store
    dhash = fingerprint(corpus.original).hashes["dhash"]
    everything = _ids(store.search_page(dhash))
    pages = [_ids(store.search_page(dhash, limit=3, offset=offset)) for offset in (0, 3)]
    assert pages[0] + pages[1] == everything and len(pages[0]) == 3
    beyond = store.search_page(dhash, limit=3, offset=30)
    assert (beyond.matches, beyond.total) == ([], 4)


def test_sightings_per_match_caps_the_list_not_the_page_count(corpus_store) -> None:
    store, corpus = corpus_store
    page = store.search_page(fingerprint(corpus.original).hashes["dhash"], sightings_per_match=1)
    original = next(m for m in page.matches if m.image_id == corpus.ids["original"])
    assert (len(original.sightings), original.pages) == (1, 3)


def test_no_matches_and_unknown_sort(store: Store) -> None:
    page = store.search_page(0x0123_4567_89AB_CDEF, with_domains=True)
    assert (page.matches, page.total, page.domains) == ([], 0, [])
    with pytest.raises(ValueError, match="unknown sort 'size'"):
        store.search_page(0, sort="size")


def test_image_returns_everything_known_and_none_for_unknown_ids(corpus_store) -> None:
    store, corpus = corpus_store
    image = store.image(corpus.ids["big"])
    expected = fingerprint(corpus.data["big"])
    assert image is not None
    assert (
        image.sha256,
        hash_to_hex(image.hashes["dhash"]),
        image.hashes["phash"],
        image.width,
        image.height,
    ) == (
        expected.sha256,
        expected.hex("dhash"),
        expected.hashes["phash"],
        1280,
        960,
    )
    assert image.has_thumbnail
    assert [s.page_url for s in image.sightings] == ["https://b.test/big"]
    assert store.image(10**9) is None
