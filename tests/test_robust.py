"""The robust search: edited copies found and explained; other pictures not found.

Photos are made by tests/images.py (a backdrop and 150 small shapes: corners for ORB), stored
through the real store in PostgreSQL, and searched as the CLI and the site search.
"""

from __future__ import annotations

import dataclasses
import secrets
import threading
import time
from collections.abc import Callable, Iterator

import numpy as np
import pytest
from PIL import Image, ImageDraw, ImageEnhance, ImageOps

from lookalike.features.index import FeatureIndex
from lookalike.features.orb import (
    DESCRIPTOR_BYTES,
    STORED_FEATURES,
    FeaturesUnreadable,
    LocalFeatures,
)
from lookalike.features.verify import describe_query, relate
from lookalike.fingerprint import Fingerprint, fingerprint
from lookalike.store import Match, Sighting, Store
from lookalike.store.db import connect, open_pool
from tests.conftest import _create_database, _drop_database
from tests.filler import add_described_images
from tests.images import encode, flat_picture, scene
from tests.test_cli import run
from tests.upgrade.make_fixture import FEATURES_FIXTURES

SIZE = (640, 480)
SCENES = range(1, 9)


def stored(seed: int) -> Fingerprint:
    return fingerprint(encode(scene(seed, SIZE), "PNG"), with_features=True)


def record(store: Store, prints: list[Fingerprint]) -> None:
    store.record(
        [Sighting(fp, f"https://pics.test/{fp.sha256}.png", "https://pics.test/") for fp in prints]
    )


def searched(store: Store, image: Image.Image) -> list[Match]:
    query = fingerprint(encode(image, "PNG"), as_query=True)
    return store.search(query.hashes["dhash"], robust=query.query, limit=50)


@pytest.fixture(scope="module")
def gallery(server_url: str, template_database: str) -> Iterator[tuple[Store, dict[int, int]]]:
    """Eight scenes stored (module-wide: describing them is the slow part); scene → image id."""
    name = f"lookalike_test_robust_{secrets.token_hex(4)}"
    url = _create_database(server_url, name, template=template_database)
    with Store(open_pool(url, init_schema=False)) as store:
        prints = {seed: stored(seed) for seed in SCENES}
        record(store, list(prints.values()))
        with connect(url) as conn:
            ids = dict(conn.execute("SELECT sha256, id FROM images").fetchall())
        assert store.refresh_features() == len(SCENES)
        yield store, {seed: ids[fp.sha256] for seed, fp in prints.items()}
    _drop_database(server_url, name)


def _crop(
    left: float, top: float, right: float, bottom: float
) -> Callable[[Image.Image], Image.Image]:
    def crop(image: Image.Image) -> Image.Image:
        w, h = image.size
        return image.crop((round(left * w), round(top * h), round(right * w), round(bottom * h)))

    return crop


def _caption(image: Image.Image) -> Image.Image:
    out = image.copy()
    ImageDraw.Draw(out).rectangle((0, out.height * 7 // 8, out.width, out.height), fill="black")
    return out


# edit → (mirrored, rotation of the match relative to the query, query %, target %)
EDITS: dict[str, tuple[Callable[[Image.Image], Image.Image], bool, float, float, float]] = {
    "mirror": (ImageOps.mirror, True, 0, 100, 100),
    "rotate 90° counterclockwise": (
        lambda image: image.transpose(Image.Transpose.ROTATE_90),
        False,
        -90,
        100,
        100,
    ),
    "rotate 180°": (
        lambda image: image.transpose(Image.Transpose.ROTATE_180),
        False,
        180,
        100,
        100,
    ),
    "mirror and rotate 270°": (
        lambda image: ImageOps.mirror(image).transpose(Image.Transpose.ROTATE_270),
        True,
        None,
        100,
        100,
    ),
    "rotate 5°": (
        lambda image: image.rotate(5, Image.Resampling.BICUBIC, expand=True),
        False,
        -5,
        None,
        100,
    ),
    "crop to the left 70%": (_crop(0, 0, 0.7, 1), False, 0, 100, 70),
    "crop to the centre 75%": (_crop(0.125, 0.125, 0.875, 0.875), False, 0, 100, 56),
    "5% white border": (
        lambda image: ImageOps.expand(image, (32, 24, 32, 24), fill="white"),
        False,
        0,
        100 / 1.1 / 1.1,
        100,
    ),
    "letterbox to a square": (lambda image: ImageOps.pad(image, (640, 640)), False, 0, 75, 100),
    "caption band": (_caption, False, 0, None, None),
    "half size, JPEG": (lambda image: image.resize((320, 240)), False, 0, 100, 100),
}


@pytest.mark.parametrize("edit", EDITS)
def test_each_edit_is_found_first_and_explained(gallery, edit: str) -> None:
    store, ids = gallery
    make, mirrored, rotation, query_percent, target_percent = EDITS[edit]
    matches = searched(store, make(scene(3, SIZE)))
    assert [match.image_id for match in matches] == [ids[3]]
    relation = matches[0].relation
    assert relation is not None
    assert relation.mirrored is mirrored
    if rotation is not None:
        assert abs((relation.rotation - rotation + 180) % 360 - 180) < 1.5
    if query_percent is not None:
        assert relation.query_overlap_percent == pytest.approx(query_percent, abs=4)
    if target_percent is not None:
        assert relation.target_overlap_percent == pytest.approx(target_percent, abs=4)


def test_the_transform_takes_a_query_pixel_to_the_same_spot_of_the_match(gallery) -> None:
    """A 70% crop, mirrored: the query's pixel (x, y) shows the match's (0.7w - x, y)."""
    store, ids = gallery
    query = ImageOps.mirror(scene(5, SIZE).crop((0, 0, 448, 480)))
    (match,) = searched(store, query)
    assert match.image_id == ids[5]
    assert match.relation.method == "features"
    assert match.relation.edits == ["mirrored", "the query is 70% of it"]
    for x, y in [(10, 10), (400, 50), (200, 400)]:
        mapped = match.relation.transform @ np.array([x, y, 1.0])
        assert mapped == pytest.approx([448 - x, y], abs=4)
    assert len(match.relation.match_region) >= 4


@pytest.mark.parametrize(
    "other",
    [
        pytest.param(lambda: scene(3, SIZE, moved=0.04), id="the same things, moved: another shot"),
        pytest.param(lambda: scene(42, SIZE), id="an unrelated scene"),
        pytest.param(
            lambda: _on_white(scene(3, SIZE).crop((200, 150, 440, 330)), 11),
            id="another item on the same white backdrop",
        ),
    ],
)
def test_other_pictures_are_not_found(gallery, other: Callable[[], Image.Image]) -> None:
    store, _ = gallery
    assert searched(store, other()) == []


@pytest.mark.parametrize("step", [0.03, 0.05])
def test_a_shot_from_a_step_aside_is_not_confirmed_by_its_features(step: float) -> None:
    """Its near half moved against its far half: one layer fits, the other shows parallax.
    (Its dHash is this scene's, backdrop and all: only the features can tell.)"""
    original = LocalFeatures.from_bytes(stored(3).features)
    aside = np.asarray(scene(3, SIZE, step_aside=step).convert("L"))
    cropped = np.asarray(scene(3, SIZE).crop((0, 0, 512, 480)).convert("L"))
    assert relate(describe_query(aside, SIZE), original, SIZE) is None
    assert relate(describe_query(cropped, (512, 480)), original, SIZE) is not None


def _on_white(item: Image.Image, seed: int) -> Image.Image:
    backdrop = Image.new("RGB", SIZE, "white")
    backdrop.paste(scene(seed, item.size), (200, 150))
    return backdrop


def test_the_hash_alone_still_finds_the_plain_copy_only(gallery) -> None:
    store, ids = gallery
    copy = fingerprint(encode(scene(2, SIZE).resize((320, 240)), "JPEG"))
    mirrored = fingerprint(encode(ImageOps.mirror(scene(2, SIZE)), "PNG"))
    assert [match.image_id for match in store.search(copy.hashes["dhash"])] == [ids[2]]
    assert store.search(mirrored.hashes["dhash"]) == []


def test_images_recorded_later_are_found_within_seconds(store: Store) -> None:
    record(store, [stored(1)])
    store.keep_features_fresh(every=0.1)
    deadline = time.monotonic() + 10
    while len(store.features) < 1 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert len(store.features) == 1
    record(store, [stored(2)])
    cropped = scene(2, SIZE).crop((0, 0, 448, 480))
    found: list[Match] = []
    while not found and time.monotonic() < deadline:
        found = searched(store, cropped)
    assert [match.relation.method for match in found] == ["features"]


def test_a_new_process_rebuilds_the_index_from_postgresql(store: Store, database_url: str) -> None:
    record(store, [stored(seed) for seed in (1, 2, 3)])
    with Store(open_pool(database_url, init_schema=False)) as fresh:
        assert len(fresh.features) == 0
        assert fresh.refresh_features() == 3
        assert fresh.refresh_features() == 0
        cropped = scene(3, SIZE).crop((0, 0, 448, 480))
        assert [match.relation.method for match in searched(fresh, cropped)] == ["features"]


def test_building_the_index_gives_its_connection_back_between_batches(
    database_url: str,
) -> None:
    """With a pool of one connection, a search answers while the index is being built."""
    photo = stored(2)
    add_described_images(database_url, 60_000)
    with Store(open_pool(database_url, max_size=1, init_schema=False)) as one:
        record(one, [photo])
        building = threading.Thread(target=one.refresh_features)
        building.start()
        time.sleep(0.2)  # into the build
        found = one.search(photo.hashes["dhash"], limit=5)
        still_building = building.is_alive()
        building.join()
    assert [match.sha256 for match in found] == [photo.sha256]
    assert still_building


def test_unreadable_stored_features_leave_the_image_to_its_hashes(
    store: Store, database_url: str
) -> None:
    record(store, [stored(4)])
    with connect(database_url) as conn:
        conn.execute("UPDATE image_features SET features = '\\x0102'")
    assert store.refresh_features() == 1
    assert len(store.features) == 0
    mirrored = searched(store, ImageOps.mirror(scene(4, SIZE)))
    assert [match.relation.method for match in mirrored] == ["hash"]
    assert searched(store, scene(4, SIZE).crop((0, 0, 448, 480))) == []


def test_features_round_trip_and_refuse_other_bytes() -> None:
    data = stored(6).features
    assert len(data) == 5 + STORED_FEATURES * (4 + DESCRIPTOR_BYTES) == 2_605
    features = LocalFeatures.from_bytes(data)
    assert len(features) == STORED_FEATURES
    again = LocalFeatures.from_bytes(features.to_bytes())
    assert np.array_equal(again.descriptors, features.descriptors)
    assert np.allclose(again.points, features.points, atol=1 / 16)
    with pytest.raises(FeaturesUnreadable):
        LocalFeatures.from_bytes(b"\x03" + features.to_bytes()[1:])
    with pytest.raises(FeaturesUnreadable):
        LocalFeatures.from_bytes(features.to_bytes()[:-1])


def test_three_images_features_fit_one_page(store: Store, database_url: str) -> None:
    """What keeps the robust path under 4 KB an image: rows of 100 features, three a page."""
    record(store, [stored(seed) for seed in range(1, 7)])
    with connect(database_url) as conn:
        (count, pages) = conn.execute(
            """SELECT count(*),
                      pg_relation_size('image_features') / current_setting('block_size')::int
               FROM image_features WHERE length(features) = %s""",
            (5 + STORED_FEATURES * (4 + DESCRIPTOR_BYTES),),
        ).fetchone()
    assert (count, pages) == (6, 2)


def test_features_the_previous_release_stored_are_read_and_found(
    store: Store, database_url: str
) -> None:
    """Format 1 kept whole 32-byte descriptors: read as their first 22 bytes, and a row of it
    is found by its features."""
    written = FEATURES_FIXTURES["b57ac4a"].read_bytes()
    assert (len(written), written[0]) == (3_605, 1)
    old = LocalFeatures.from_bytes(written)
    positions = np.frombuffer(written, "<u2", 200, offset=5).reshape(100, 2) / 8
    whole = np.frombuffer(written, np.uint8, offset=5 + 400).reshape(100, 32)
    assert np.array_equal(old.descriptors, whole[:, :DESCRIPTOR_BYTES])
    assert np.array_equal(old.points, positions)
    record(store, [stored(3)])
    with connect(database_url) as conn:
        conn.execute("UPDATE image_features SET features = %s", (written,))
    with Store(open_pool(database_url, init_schema=False)) as fresh:
        assert fresh.refresh_features() == 1
        cropped = scene(3, SIZE).crop((0, 0, 448, 480))
        assert [match.relation.method for match in searched(fresh, cropped)] == ["features"]


def test_stored_features_are_spread_so_a_crop_of_the_plainer_half_is_found(store: Store) -> None:
    """The strongest 100 features of this picture nearly all lie in its busy left half;
    spread over the picture, the plainer right half keeps its share."""
    picture = scene(11, SIZE)
    plainer = ImageEnhance.Contrast(scene(12, SIZE)).enhance(0.8)
    picture.paste(plainer.crop((320, 0, 640, 480)), (320, 0))
    record(store, [fingerprint(encode(picture, "PNG"), with_features=True)])
    store.refresh_features()
    found = searched(store, picture.crop((320, 0, 640, 480)))
    assert [match.relation.method for match in found] == ["features"]


def test_a_flat_picture_is_stored_without_features_and_found_by_hash(store: Store) -> None:
    flat = Image.new("RGB", SIZE, (90, 140, 200))
    fp = fingerprint(encode(flat, "PNG"), with_features=True)
    assert len(LocalFeatures.from_bytes(fp.features)) == 0
    record(store, [fp])
    store.refresh_features()
    assert len(searched(store, ImageOps.mirror(flat))) == 1


def test_the_index_finds_each_image_after_many_batches_merge() -> None:
    rng = np.random.default_rng(5)
    index = FeatureIndex()
    descriptors = {
        image_id: rng.integers(0, 256, (100, DESCRIPTOR_BYTES), dtype=np.uint8)
        for image_id in range(60)
    }
    for start in range(0, 60, 3):  # 20 batches: more than the segments kept before merging
        batch = range(start, start + 3)
        index.add(list(batch), [descriptors[image_id] for image_id in batch])
    index.add([0], [descriptors[0]])  # known already: not added twice
    assert len(index) == 60
    assert len(index._segments) < 8
    for image_id in (0, 31, 59):
        assert index.candidates([descriptors[image_id]], limit=1) == [image_id]


def test_the_cli_lists_an_edited_copy_with_how_it_differs(cli_env, tmp_path) -> None:
    (tmp_path / "photos").mkdir()
    for seed in (1, 2):
        scene(seed, SIZE).save(tmp_path / "photos" / f"scene{seed}.png")
    ImageOps.mirror(scene(2, SIZE).crop((0, 0, 448, 480))).save(tmp_path / "query.png")
    assert run(cli_env, "index", str(tmp_path / "photos")).returncode == 0
    found = run(cli_env, "search", str(tmp_path / "query.png")).stdout.splitlines()
    assert found[0] == "bits         size  image  on page"
    assert found[1].endswith("scene2.png  on " + str(tmp_path / "photos") + "/")
    assert found[2].strip() == "(mirrored, the query is 70% of it)"
    assert len(found) == 3
    plain = run(cli_env, "search", "--hash-only", str(tmp_path / "query.png"))
    assert plain.stdout.startswith("no matches within 10 bits of ")


def test_a_large_jpeg_framed_reports_its_overlap_in_its_own_pixels(gallery) -> None:
    """A JPEG is hashed from a reduced decode; the trimmed part is still told in full pixels."""
    store, ids = gallery
    large = scene(3, SIZE).resize((2000, 1500))
    framed = ImageOps.expand(large, (100, 75, 100, 75), fill="white")
    query = fingerprint(encode(framed, "JPEG", quality=90), as_query=True)
    (match,) = store.search(query.hashes["dhash"], robust=query.query)
    assert match.image_id == ids[3]
    assert match.relation.query_overlap_percent == pytest.approx(100 / 1.1 / 1.1, abs=3)
    left, top = match.relation.query_region[0]
    assert (left, top) == pytest.approx((100, 75), abs=12)


@pytest.mark.parametrize("with_features", [True, False], ids=["described", "not described"])
def test_a_framed_copy_in_the_store_is_found_by_the_picture_inside_its_frame(
    store: Store, with_features: bool
) -> None:
    """The stored copy keeps the dHash of what is inside its frame: found by that hash, with
    or without local features, and outlined on the picture, not the frame."""
    framed = ImageOps.expand(scene(7, SIZE), (64, 48, 64, 48), fill="white")
    kept = fingerprint(encode(framed, "PNG"), with_features=with_features)
    assert kept.picture_box == pytest.approx((64 / 768, 48 / 576, 704 / 768, 528 / 576), abs=1e-3)
    record(store, [kept])
    store.refresh_features()
    (match,) = searched(store, scene(7, SIZE))
    assert match.relation.method == "hash"
    assert match.relation.target_overlap_percent == pytest.approx(100 / 1.2 / 1.2, abs=1)
    assert match.relation.query_overlap_percent == pytest.approx(100, abs=1)
    assert match.relation.match_region[0] == pytest.approx((64, 48), abs=2)


def test_what_is_inside_a_frame_is_searched_within_its_own_radius(store: Store) -> None:
    """A part of a picture passes for another picture more often than the whole: a stored
    frame's inside is matched within 8 bits, whatever wider radius the query asks."""
    framed = fingerprint(encode(ImageOps.expand(flat_picture(2), 64, fill="white"), "PNG"))
    record(store, [framed])
    inside = framed.hashes["framed_dhash"]
    query = fingerprint(encode(flat_picture(2), "PNG"), as_query=True)
    upright = query.query.views[0]
    for bits, found in ((8, True), (9, False)):
        moved = inside ^ ((1 << bits) - 1)  # ``bits`` bits away from what is inside
        view = dataclasses.replace(upright, hashes={**upright.hashes, "dhash": moved})
        described = dataclasses.replace(query.query, views=[view])
        matches = store.search(moved, robust=described, max_distance=12)
        assert (len(matches) == 1) is found, bits


def test_what_is_inside_a_frame_is_not_compared_with_turned_views(store: Store) -> None:
    """A stored frame's inside is compared with the query as it is and trimmed, never with
    its mirrored or turned views, whose chance matches the narrower radius already bounds."""
    framed = fingerprint(encode(ImageOps.expand(flat_picture(6), 64, fill="white"), "PNG"))
    record(store, [framed])
    assert [m.relation.method for m in searched(store, flat_picture(6))] == ["hash"]
    mirrored = ImageOps.mirror(flat_picture(6))
    view = fingerprint(encode(mirrored, "PNG"), as_query=True).query.views[4]
    assert view.mirrored and not view.turns  # the picture inside, to a bit or two:
    assert (view.hashes["dhash"] ^ framed.hashes["framed_dhash"]).bit_count() <= 2
    assert searched(store, mirrored) == []


def test_a_copy_framed_otherwise_is_found_from_a_framed_query(store: Store) -> None:
    """Both frames are trimmed: the query's by its view, the stored one's by its kept hash."""
    record(
        store,
        [fingerprint(encode(ImageOps.expand(scene(5, SIZE), 96, fill="black"), "PNG"))],
    )
    (match,) = searched(store, ImageOps.expand(scene(5, SIZE), 32, fill="white"))
    assert match.relation.method == "hash"
    # picture onto picture: the query's thinner frame lies on the match's wider one
    assert match.relation.query_overlap_percent == pytest.approx(100, abs=1)
    assert match.relation.target_overlap_percent == pytest.approx(
        100 * (704 * 544) / (832 * 672), abs=1
    )
    assert match.relation.match_region[0] == pytest.approx((96 - 32, 96 - 32), abs=2)


def test_an_unframed_picture_keeps_no_framed_hash() -> None:
    plain = fingerprint(encode(scene(7, SIZE), "PNG"))
    assert (set(plain.hashes), plain.picture_box) == ({"dhash", "phash"}, None)
    framed = fingerprint(encode(ImageOps.expand(scene(7, SIZE), 40, fill="white"), "PNG"))
    assert abs(framed.hashes["framed_dhash"] ^ plain.hashes["dhash"]).bit_count() <= 2


@pytest.mark.parametrize("size", [(65_535, 2), (2, 4_000)])
def test_a_strip_is_described_by_no_features(size: tuple[int, int]) -> None:
    strip = Image.effect_noise(size, 60)
    stored = fingerprint(encode(strip, "PNG"), with_features=True)
    assert len(LocalFeatures.from_bytes(stored.features)) == 0
    query = fingerprint(encode(strip, "PNG"), as_query=True).query
    assert len(query.features.upright) == len(query.features.mirrored) == 0
