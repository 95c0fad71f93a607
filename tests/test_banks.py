"""Moderation banks against a real PostgreSQL: flag, check, disable, radii, concurrency, SQL,
and robust checks that catch disguised re-uploads."""

from __future__ import annotations

import random
import threading
from collections.abc import Iterator

import numpy as np
import psycopg
import pytest
from PIL import ImageOps

from benchmarks.data import clustered_hashes
from benchmarks.moderation import disguises
from lookalike.features.orb import BANK_FEATURES, LocalFeatures
from lookalike.features.verify import relate
from lookalike.fingerprint import fingerprint
from lookalike.hashes import from_bigint, hamming, to_bigint
from lookalike.store import Sighting, Store
from lookalike.store.banks import BankError, BankMatch, Banks, FlagTarget
from lookalike.store.db import apply_migrations, connect, open_pool
from tests.concurrency import check_while_flagging
from tests.images import encode, flat_picture, photo, textured_photo


@pytest.fixture
def banks(database_url: str) -> Iterator[Banks]:
    pool = open_pool(database_url, max_size=8, init_schema=False)
    try:
        yield Banks(pool)
    finally:
        pool.close()


def _flip(value: int, bits: int, seed: int = 0) -> int:
    """``value`` with ``bits`` distinct bits flipped."""
    for position in random.Random(seed).sample(range(64), bits):
        value ^= 1 << position
    return value


ORIGINAL = photo(11)
COPIES = {
    "resized": encode(ORIGINAL.resize((320, 240)), "JPEG", quality=90),
    "JPEG quality 30": encode(ORIGINAL, "JPEG", quality=30),
    "grayscale": encode(ORIGINAL.convert("L"), "PNG"),
    "1-px border": encode(ImageOps.expand(ORIGINAL, border=1, fill="black"), "PNG"),
}


def test_flagged_photo_matches_its_copies_and_not_unrelated_photos(banks: Banks) -> None:
    flagged = banks.flag(
        FlagTarget.from_fingerprint(fingerprint(encode(ORIGINAL), with_thumbnail=True)),
        bank="banned",
        reason="spam",
        flagged_by="mod",
    )
    assert flagged.created and flagged.entry.has_thumbnail
    for name, data in COPIES.items():
        copy = fingerprint(data)
        matches = banks.check(copy.hashes)
        assert [(m.bank, m.entry_id, m.reason) for m in matches] == [
            ("banned", flagged.entry.id, "spam")
        ], name
    for seed in range(100, 120):
        unrelated = fingerprint(encode(photo(seed)))
        assert banks.check(unrelated.hashes) == [], seed


def test_disabled_entry_stops_matching_and_stays_in_history(banks: Banks) -> None:
    target = FlagTarget({"dhash": 0x0123_4567_89AB_CDEF})
    entry = banks.flag(target, bank="banned", reason=None, flagged_by="mod").entry
    near = _flip(target.hashes["dhash"], 3)
    assert [m.entry_id for m in banks.check({"dhash": near})] == [entry.id]

    disabled = banks.disable(disabled_by="lead", hash_value=target.hashes["dhash"])

    assert [e.id for e in disabled] == [entry.id]
    assert banks.check({"dhash": near}) == []
    (kept,) = banks.entries("banned")
    assert (kept.id, kept.active, kept.disabled_by) == (entry.id, False, "lead")
    assert kept.disabled_at is not None
    again = banks.flag(target, bank="banned", reason="for real", flagged_by="mod")
    assert again.created and again.entry.id != entry.id
    assert [m.reason for m in banks.check({"dhash": near})] == ["for real"]


def test_flagging_an_already_flagged_fingerprint_uses_up_no_entry_id(banks: Banks) -> None:
    first = banks.flag(FlagTarget({"dhash": 0x0123}), bank="banned", reason=None, flagged_by="mod")
    again = banks.flag(FlagTarget({"dhash": 0x0123}), bank="banned", reason=None, flagged_by="mod")
    assert not again.created and again.entry.id == first.entry.id
    other = banks.flag(FlagTarget({"dhash": 0x4567}), bank="banned", reason=None, flagged_by="mod")
    assert other.entry.id == first.entry.id + 1


def test_flag_from_a_stored_image_links_it_and_keeps_its_thumbnail(
    banks: Banks, store: Store
) -> None:
    fp = fingerprint(encode(photo(5)), with_thumbnail=True)
    store.record([Sighting(fp, "https://example.org/a.jpg", "https://example.org/")])
    (match,) = store.search(fp.hashes["dhash"], max_distance=0)

    entry = banks.flag(
        banks.target_from_image(match.image_id), bank="copyright", reason=None, flagged_by="m"
    ).entry

    assert (entry.image_id, entry.sha256, entry.has_thumbnail) == (match.image_id, fp.sha256, True)
    assert banks.thumbnail(entry.id) == store.thumbnail(match.image_id)
    with pytest.raises(BankError, match="no image with id"):
        banks.target_from_image(match.image_id + 1000)


def test_flag_from_file_bytes_links_the_stored_image_of_the_same_content(
    banks: Banks, store: Store
) -> None:
    fp = fingerprint(encode(photo(6)))
    store.record([Sighting(fp, "https://example.org/b.jpg", "https://example.org/")])
    entry = banks.flag(FlagTarget.from_fingerprint(fp), bank="b", reason=None, flagged_by="m")
    assert entry.entry.image_id == store.search(fp.hashes["dhash"], max_distance=0)[0].image_id


def test_default_radius_and_per_bank_override(banks: Banks) -> None:
    base = 0x7F00_FF00_1234_5678
    banks.flag(FlagTarget({"dhash": base}), bank="strict", reason=None, flagged_by="m")
    banks.flag(FlagTarget({"dhash": base}), bank="loose", reason=None, flagged_by="m")
    banks.configure("strict", dhash_radius=4)

    eight, nine, five = _flip(base, 8), _flip(base, 9), _flip(base, 5)

    assert [(m.bank, m.distance) for m in banks.check({"dhash": eight})] == [("loose", 8)]
    assert banks.check({"dhash": nine}) == []
    assert [m.bank for m in banks.check({"dhash": five})] == ["loose"]
    assert [m.bank for m in banks.check({"dhash": five}, max_distance=5)] == ["loose", "strict"]
    assert [m.bank for m in banks.check({"dhash": five}, bank="strict", max_distance=5)] == [
        "strict"
    ]
    with pytest.raises(BankError, match="0 to 14"):
        banks.check({"dhash": base}, max_distance=15)
    with pytest.raises(BankError, match="no bank named"):
        banks.check({"dhash": base}, bank="missing")


def test_phash_confirms_a_dhash_match_when_both_sides_have_one(banks: Banks) -> None:
    dhash, phash = 0x1111_2222_3333_4444, 0x5555_6666_7777_8888
    banks.flag(
        FlagTarget({"dhash": dhash, "phash": phash}), bank="banned", reason=None, flagged_by="m"
    )
    near = _flip(dhash, 2)

    assert len(banks.check({"dhash": near, "phash": _flip(phash, 12)})) == 1
    assert banks.check({"dhash": near, "phash": _flip(phash, 13)}) == []
    assert len(banks.check({"dhash": near})) == 1  # a raw dHash query has no pHash to confirm with


def test_bad_bank_names_are_refused_and_nothing_is_written(banks: Banks) -> None:
    for name in ("Bad Name", "", "x" * 64, "-dash-first"):
        with pytest.raises(BankError, match="bad bank name"):
            banks.flag(FlagTarget({"dhash": 1}), bank=name, reason=None, flagged_by="m")
    assert banks.summaries() == []


def test_bank_matches_is_exact_against_brute_force(banks: Banks, database_url: str) -> None:
    """The MIH probe over bank entries and over images finds what a full scan finds."""
    hashes = np.unique(clustered_hashes(4000, seed=3)).tolist()
    with connect(database_url) as conn:
        conn.execute("INSERT INTO banks (name) VALUES ('bulk')")
        with conn.cursor().copy(
            "COPY bank_entries (bank_id, dhash, flagged_by) FROM STDIN"
        ) as copy:
            for value in hashes:
                copy.write_row((1, value, "bench"))
        with conn.cursor().copy(
            "COPY images (sha256, dhash, phash, width, height, format) FROM STDIN"
        ) as copy:
            for index, value in enumerate(hashes):
                copy.write_row((f"{index:064x}", value, value, 1, 1, "JPEG"))
        conn.commit()
        conn.execute("ANALYZE bank_entries, images")  # as autovacuum would: index plans
        rng = random.Random(4)
        queries = [_flip(from_bigint(h), rng.randrange(4), rng.random()) for h in hashes[:12]]
        for index, query in enumerate(queries):
            for radius in (0, 3, 7, 10, 14) if index < 2 else (0, 3, 7, 10):
                expected = sorted(
                    (hamming(h, query), i)
                    for i, h in enumerate(hashes)
                    if hamming(h, query) <= radius
                )
                found = banks.check({"dhash": query}, max_distance=radius)
                assert [m.distance for m in found] == [d for d, _ in expected]
                images = conn.execute(
                    "SELECT distance FROM similar_images(%s::bigint, %s)",
                    (to_bigint(query), radius),
                ).fetchall()
                assert [d for (d,) in images] == [d for d, _ in expected]


def test_flagging_one_fingerprint_at_once_leaves_one_active_entry(banks: Banks) -> None:
    target = FlagTarget({"dhash": 0xABCD_0000_1111_2222, "phash": 0x3333_4444_5555_6666})
    barrier = threading.Barrier(6)
    results = []

    def flag() -> None:
        barrier.wait()
        results.append(banks.flag(target, bank="banned", reason="dup", flagged_by="m"))

    threads = [threading.Thread(target=flag) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert sum(r.created for r in results) == 1
    assert len({r.entry.id for r in results}) == 1
    assert len(banks.entries("banned")) == 1


def test_checks_stay_correct_while_others_flag(banks: Banks) -> None:
    rng = random.Random(9)
    flagged_first = [rng.getrandbits(64) for _ in range(20)]
    for value in flagged_first:
        banks.flag(FlagTarget({"dhash": value}), bank="banned", reason=None, flagged_by="m")
    flagged_later = [rng.getrandbits(64) for _ in range(80)]

    def check_once() -> None:
        for value in flagged_first:
            assert len(banks.check({"dhash": _flip(value, 2)})) == 1

    def flag_some(values: list[int]) -> None:
        for value in values:
            banks.flag(FlagTarget({"dhash": value}), bank="banned", reason=None, flagged_by="m")

    errors = check_while_flagging(check_once, flag_some, flagged_later)
    assert errors == []
    assert all(len(banks.check({"dhash": _flip(v, 1)})) == 1 for v in flagged_later)


def test_flagged_sightings_lists_pages_of_the_image_and_its_near_copies(
    banks: Banks, store: Store, database_url: str
) -> None:
    copy = fingerprint(COPIES["JPEG quality 30"])
    other = fingerprint(encode(photo(77)))
    store.record(
        [
            Sighting(copy, "https://a.example/copy.jpg", "https://a.example/page"),
            Sighting(other, "https://b.example/other.jpg", "https://b.example/page"),
        ]
    )
    entry = banks.flag(
        FlagTarget.from_fingerprint(fingerprint(encode(ORIGINAL))),
        bank="banned",
        reason="spam",
        flagged_by="m",
    ).entry

    assert [s.page_url for s in banks.sightings(entry.id)] == ["https://a.example/page"]
    with connect(database_url) as conn:
        rows = conn.execute(
            "SELECT bank, entry_id, reason, page_url FROM flagged_sightings"
        ).fetchall()
    assert rows == [("banned", entry.id, "spam", "https://a.example/page")]
    banks.disable(disabled_by="m", entry_id=entry.id)
    assert banks.sightings(entry.id) == []


def test_schema_can_be_applied_again_with_banks_in_it(banks: Banks, database_url: str) -> None:
    banks.flag(FlagTarget({"dhash": 42}), bank="banned", reason=None, flagged_by="m")
    apply_migrations(database_url)
    assert [(s.name, s.active_entries) for s in banks.summaries()] == [("banned", 1)]


def test_invalid_entry_state_is_refused_by_the_database(database_url: str) -> None:
    with connect(database_url) as conn:
        conn.execute("INSERT INTO banks (name) VALUES ('banned')")
        with pytest.raises(psycopg.errors.CheckViolation):
            conn.execute(
                "INSERT INTO bank_entries (bank_id, dhash, flagged_by, active)"
                " VALUES (1, 1, 'm', false)"
            )


# A crop to the centre 60% keeps about a third of a picture's features: on some pictures
# enough for a fit, on others not (`lookalike bench moderation`). This one is caught.
BANNED = textured_photo(59)
DISGUISED = {name: make(BANNED) for name, make in disguises().items()}
# Disguises that beat the plain check: it sees none of them.
BEATS_PLAIN = ("mirror", "rotate 90°", "rotate 5°", "crop centre 60%")


def _flag_picture(banks: Banks, data: bytes, bank: str = "banned") -> int:
    target = FlagTarget.from_fingerprint(
        fingerprint(data, with_features=True, feature_limit=BANK_FEATURES)
    )
    return banks.flag(target, bank=bank, reason="re-upload", flagged_by="mod").entry.id


def _robust_check(banks: Banks, data: bytes, **options: object) -> list[BankMatch]:
    upload = fingerprint(data, as_query=True)
    return banks.check(upload.hashes, query=upload.query, **options)


def test_robust_check_catches_disguised_reuploads_and_says_how(banks: Banks) -> None:
    entry = _flag_picture(banks, encode(BANNED, "PNG"))

    caught = {}
    for name, data in DISGUISED.items():
        matches = _robust_check(banks, data)
        caught[name] = [m.entry_id for m in matches] == [entry]
        if name in BEATS_PLAIN:
            assert banks.check(fingerprint(data).hashes) == [], name
        if caught[name]:
            relation = matches[0].relation
            assert relation is not None
            if name == "mirror":
                assert relation.mirrored and relation.method == "hash"
            if name == "rotate 90°":  # the flagged picture is the upload turned back
                assert relation.rotation == pytest.approx(-90) and relation.method == "hash"
            if name == "rotate 5°":
                assert relation.rotation == pytest.approx(-5, abs=1.5)
            if name == "crop centre 60%":  # the upload is 0.6 x 0.6 of the flagged picture
                assert relation.target_overlap_percent == pytest.approx(36, abs=5)
            if name == "5% white border":  # the flagged picture is 1 / 1.1² of the upload
                assert relation.query_overlap_percent == pytest.approx(83, abs=5)
    assert caught == dict.fromkeys(DISGUISED, True)

    for seed in range(70, 76):
        assert _robust_check(banks, encode(textured_photo(seed), "PNG")) == [], seed
    for seed in range(100, 104):
        assert _robust_check(banks, encode(photo(seed))) == [], seed


def test_every_view_carries_the_confirming_kind_so_the_bank_rule_holds(banks: Banks) -> None:
    upload = fingerprint(DISGUISED["mirror"], as_query=True)
    assert upload.query is not None
    assert all(set(view.hashes) == set(upload.hashes) for view in upload.query.views)
    entry = _flag_picture(banks, encode(BANNED, "PNG"))
    mirrored = next(view for view in upload.query.views if view.mirrored and not view.turns)
    # The mirrored view's dHash with a pHash that does not confirm it: no match by hash.
    unconfirmed = {
        "dhash": mirrored.hashes["dhash"],
        "phash": ~mirrored.hashes["phash"] & (2**64 - 1),
    }
    assert banks.check(unconfirmed) == []
    assert [m.entry_id for m in banks.check(mirrored.hashes)] == [entry]


def test_a_disabled_entry_is_caught_by_no_route(banks: Banks) -> None:
    original = encode(BANNED, "PNG")
    for _ in range(25):  # flagged and unflagged again and again: identical disabled entries
        banks.disable(disabled_by="lead", entry_id=_flag_picture(banks, original))
    active = _flag_picture(banks, original)
    routes = {
        "plain": original,
        "views": DISGUISED["mirror"],
        "features": DISGUISED["crop centre 60%"],
    }
    # Indexed in one go, the disabled entries tie with the active one: they must not crowd
    # it out of the candidates.
    for route, data in routes.items():
        assert [m.entry_id for m in _robust_check(banks, data)] == [active], route
    banks.disable(disabled_by="lead", entry_id=active)
    for route, data in routes.items():
        assert _robust_check(banks, data) == [], route


def test_entries_flagged_by_hash_only_match_by_hash_only_and_banks_stay_apart(
    banks: Banks,
) -> None:
    fp = fingerprint(encode(BANNED, "PNG"))
    by_hash = banks.flag(FlagTarget(fp.hashes), bank="hashes", reason=None, flagged_by="mod")
    with_features = _flag_picture(banks, encode(BANNED, "PNG"), bank="pictures")

    mirrored = _robust_check(banks, DISGUISED["mirror"], bank="hashes")
    assert [(m.entry_id, m.relation and m.relation.mirrored) for m in mirrored] == [
        (by_hash.entry.id, True)
    ]
    cropped = DISGUISED["crop centre 60%"]
    assert _robust_check(banks, cropped, bank="hashes") == []
    assert [m.entry_id for m in _robust_check(banks, cropped)] == [with_features]


def test_flagging_a_stored_image_carries_its_stored_features(banks: Banks, store: Store) -> None:
    fp = fingerprint(encode(BANNED, "PNG"), with_features=True)
    store.record([Sighting(fp, "https://example.org/c.png", "https://example.org/")])
    (match,) = store.search(fp.hashes["dhash"], max_distance=0)

    target = banks.target_from_image(match.image_id)
    assert target.features == fp.features
    entry = banks.flag(target, bank="banned", reason=None, flagged_by="m").entry
    assert [m.entry_id for m in _robust_check(banks, DISGUISED["crop centre 60%"])] == [entry.id]


def test_strangers_see_the_relation_without_its_inlier_count(banks: Banks) -> None:
    _flag_picture(banks, encode(BANNED, "PNG"))
    (match,) = _robust_check(banks, DISGUISED["rotate 5°"])
    assert match.relation is not None and match.relation.method == "features"
    assert match.detail()["relation"] == match.relation.to_json()
    # in the flagged picture's working size, 512 px wide for this 640 x 480 picture
    assert max(x for x, _ in match.relation.match_region) == pytest.approx(512, abs=1)
    public = match.public()["relation"]
    assert "inliers" not in public
    assert public == {k: v for k, v in match.relation.to_json().items() if k != "inliers"}


def test_a_picture_flagged_framed_is_caught_plain_by_what_is_inside_its_frame(
    banks: Banks, store: Store, database_url: str
) -> None:
    """Flagged with a frame, a smooth picture (too few corners for local features) is still
    caught without it, by the hash of what was inside the frame, and outlined there."""
    picture = flat_picture(1)
    framed = encode(ImageOps.expand(picture, (64, 48, 64, 48), fill="white"), "PNG")
    fp = fingerprint(framed, with_features=True)
    kept = LocalFeatures.from_bytes(fp.features)
    plain = encode(picture, "PNG")
    upload = fingerprint(plain, as_query=True).query
    assert len(kept) < 5 and relate(upload.features, kept, (kept.width, kept.height)) is None
    store.record([Sighting(fp, "https://example.org/framed.png", "https://example.org/")])
    (stored,) = store.search(fp.hashes["dhash"], max_distance=0)
    target = banks.target_from_image(stored.image_id)
    assert target.picture_box == pytest.approx(fp.picture_box)
    entry = banks.flag(target, bank="banned", reason=None, flagged_by="m").entry.id

    assert [m.entry_id for m in banks.check(fingerprint(plain).hashes)] == [entry]
    (match,) = _robust_check(banks, plain)
    assert (match.entry_id, match.relation.method) == (entry, "hash")
    assert match.relation.target_overlap_percent == pytest.approx(100 / 1.2 / 1.2, abs=1)
    assert match.relation.query_overlap_percent == pytest.approx(100, abs=1)

    banks.configure("banned", dhash_radius=3)  # the bank's dHash radius bounds it too
    with connect(database_url) as conn:
        (radius,) = conn.execute(
            "SELECT bank_radius(b, 'framed_dhash') FROM banks b WHERE name = 'banned'"
        ).fetchone()
    assert radius == 3
