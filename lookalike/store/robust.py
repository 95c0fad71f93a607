"""The robust search: every stored image that is the query's picture, however it was edited.

Two ways in, one answer per image (best first):

1. each view of the query (mirrored, turned, trimmed: :mod:`lookalike.features.views`) is
   searched by its global hash through ``similar_hashes``, exact within the radius (a
   narrower one for mirrored and turned views: :meth:`View.max_distance`), among the stored
   images' hashes and the hashes of what is inside stored images' frames (``framed_dhash``);
2. the feature index proposes candidates, and each is kept only if the geometric fit of its
   stored features confirms it (:mod:`lookalike.features.verify`).

Hash matches come first, nearest first; then feature matches, most inliers first. Every match
says how it differs from the query (:class:`~lookalike.features.relation.Relation`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import psycopg

from lookalike.features.index import FeatureIndex
from lookalike.features.query import QueryDescription
from lookalike.features.relation import Relation, relation_from_transform
from lookalike.features.verify import contradicts, relate
from lookalike.features.views import View
from lookalike.frames import Box
from lookalike.hashes import to_bigint
from lookalike.kinds import HashKind
from lookalike.store import features, images, picture_frames
from lookalike.store.search import Found

# Copies resized or re-saved from one picture sit within this many dHash bits of each other
# (docs/benchmarks.md, bench radius); beyond it a hash match must not be contradicted.
TRUSTED_DISTANCE = 3


@dataclass(frozen=True, slots=True)
class _HashMatch:
    distance: int
    view: View
    framed: bool  # found by the hash of what is inside the stored image's frame


def find(
    conn: psycopg.Connection,
    kind: HashKind,
    description: QueryDescription,
    index: FeatureIndex | None,
    *,
    max_distance: int,
) -> list[Found]:
    """Every image that the views' hashes or a confirmed feature fit find, best first.

    A hash match more than TRUSTED_DISTANCE bits away is kept only if the local features do
    not contradict it: other shots of one scene on one backdrop can be that near in dHash.
    """
    views = [view for view in description.views if kind.name in view.hashes]
    by_hash = _hash_matches(conn, kind, views, max_distance)
    candidates = [] if index is None else index.candidates(_descriptor_sets(description))
    to_verify = [image_id for image_id in candidates if image_id not in by_hash]
    unsure = [image_id for image_id, match in by_hash.items() if match.distance > TRUSTED_DISTANCE]
    stored = features.read(conn, features.IMAGE_FEATURES, [*unsure, *to_verify])
    facts = _image_facts(conn, [*by_hash, *to_verify])
    boxes = _boxes(conn, by_hash)
    query = description.features

    found = []
    for image_id, match in sorted(by_hash.items(), key=lambda item: item[1].distance):
        if image_id not in facts:
            continue
        size = facts[image_id][0]
        if image_id in stored and contradicts(query, stored[image_id], size):
            continue
        relation = _by_view(match.view, query.size, size, boxes.get(image_id))
        found.append(Found(image_id, match.distance, relation))
    confirmed = []
    for image_id in to_verify:
        if image_id not in stored or image_id not in facts:
            continue
        size, hashes = facts[image_id]
        relation = relate(query, stored[image_id], size)
        if relation is not None and kind.name in hashes:
            distance = min(
                kind.distance(view.hashes[kind.name], hashes[kind.name]) for view in views
            )
            confirmed.append(Found(image_id, distance, relation))
    confirmed.sort(key=lambda match: (-(match.relation.inliers or 0), match.image_id))
    return found + confirmed


def _hash_matches(
    conn: psycopg.Connection, kind: HashKind, views: list[View], max_distance: int
) -> dict[int, _HashMatch]:
    """Each image within ``max_distance`` of some view, by ``kind`` or by a kind searched with
    it, with its nearest view."""
    nearest: dict[int, _HashMatch] = {}
    for view in views:
        for stored in view.stored_kinds(kind):
            for image_id, distance in conn.execute(
                "SELECT image_id, distance FROM similar_hashes(%s, %s::bigint, %s)",
                (
                    stored.name,
                    to_bigint(view.hashes[kind.name]),
                    stored.searched_within(view.max_distance(max_distance)),
                ),
            ):
                if image_id not in nearest or distance < nearest[image_id].distance:
                    nearest[image_id] = _HashMatch(distance, view, framed=stored is not kind)
    return nearest


def _boxes(conn: psycopg.Connection, by_hash: dict[int, _HashMatch]) -> dict[int, Box]:
    """Where the picture sits in each image found by what is inside its frame."""
    framed = [image_id for image_id, match in by_hash.items() if match.framed]
    return picture_frames.read(conn, picture_frames.IMAGE_FRAMES, framed) if framed else {}


def relate_one(
    conn: psycopg.Connection,
    kind: HashKind,
    description: QueryDescription,
    image_id: int,
    *,
    max_distance: int,
) -> Relation | None:
    """How one stored image differs from the query, related as :func:`find` relates what it
    finds: by the nearest view within ``max_distance``, else by a confirmed fit of the image's
    stored features; None if neither relates them."""
    facts = _image_facts(conn, [image_id])
    if image_id not in facts:
        return None
    size, hashes = facts[image_id]
    within = [
        _HashMatch(distance, view, framed=stored_kind is not kind)
        for view in description.views
        if kind.name in view.hashes
        for stored_kind in view.stored_kinds(kind)
        if stored_kind.name in hashes
        and (distance := kind.distance(view.hashes[kind.name], hashes[stored_kind.name]))
        <= stored_kind.searched_within(view.max_distance(max_distance))
    ]
    stored = features.read(conn, features.IMAGE_FEATURES, [image_id]).get(image_id)
    if within:
        nearest = min(within, key=lambda match: match.distance)
        trusted = nearest.distance <= TRUSTED_DISTANCE or stored is None
        if trusted or not contradicts(description.features, stored, size):
            box = _boxes(conn, {image_id: nearest}).get(image_id)
            return _by_view(nearest.view, description.features.size, size, box)
        return None
    return None if stored is None else relate(description.features, stored, size)


def _by_view(
    view: View, query_size: tuple[int, int], match_size: tuple[int, int], match_box: Box | None
) -> Relation:
    """The relation of a match that a view's hash found (onto the picture inside the match's
    frame, if that is what matched)."""
    return relation_from_transform(
        "hash",
        view.transform(query_size, match_size, match_box),
        query_size,
        match_size,
        mirrored=view.mirrored,
    )


def _descriptor_sets(description: QueryDescription) -> list[np.ndarray]:
    query = description.features
    return [query.upright.descriptors, query.mirrored.descriptors]


def _image_facts(
    conn: psycopg.Connection, image_ids: list[int]
) -> dict[int, tuple[tuple[int, int], dict[str, int]]]:
    """Each image's (width, height) and its hashes of every kind it has."""
    hashes = images.hashes_of(conn, image_ids)
    rows = conn.execute(
        "SELECT id, width, height FROM images WHERE id = ANY(%s)", (image_ids,)
    ).fetchall()
    return {image_id: ((width, height), hashes[image_id]) for image_id, width, height in rows}
