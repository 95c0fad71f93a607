"""The robust search: every stored image that is the query's picture, however it was edited.

Two ways in, one answer per image (best first):

1. each view of the query (mirrored, turned, trimmed: :mod:`lookalike.features.views`) is
   searched by its global hash through ``similar_hashes``, exact within the radius (a
   narrower one for mirrored and turned views: :meth:`View.max_distance`);
2. the feature index proposes candidates, and each is kept only if the geometric fit of its
   stored features confirms it (:mod:`lookalike.features.verify`).

Hash matches come first, nearest first; then feature matches, most inliers first. Every match
says how it differs from the query (:class:`~lookalike.features.relation.Relation`).
"""

from __future__ import annotations

import numpy as np
import psycopg
from psycopg import sql

from lookalike.features.index import FeatureIndex
from lookalike.features.query import QueryDescription
from lookalike.features.relation import Relation, relation_from_transform
from lookalike.features.verify import contradicts, relate
from lookalike.features.views import View
from lookalike.hashes import from_bigint, to_bigint
from lookalike.kinds import HashKind
from lookalike.store import features, kind_tables
from lookalike.store.search import Found

# Copies resized or re-saved from one picture sit within this many dHash bits of each other
# (docs/benchmarks.md, bench radius); beyond it a hash match must not be contradicted.
TRUSTED_DISTANCE = 3


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
    unsure = [
        image_id for image_id, (distance, _) in by_hash.items() if distance > TRUSTED_DISTANCE
    ]
    stored = features.read(conn, features.IMAGE_FEATURES, [*unsure, *to_verify])
    facts = _image_facts(conn, kind, [*by_hash, *to_verify])
    query = description.features

    found = []
    for image_id, (distance, view) in sorted(by_hash.items(), key=lambda item: item[1][0]):
        if image_id not in facts:
            continue
        size = facts[image_id][0]
        if image_id in stored and contradicts(query, stored[image_id], size):
            continue
        found.append(Found(image_id, distance, _by_view(view, query.size, size)))
    confirmed = []
    for image_id in to_verify:
        if image_id not in stored or image_id not in facts:
            continue
        size, stored_hash = facts[image_id]
        relation = relate(query, stored[image_id], size)
        if relation is not None:
            distance = min(kind.distance(view.hashes[kind.name], stored_hash) for view in views)
            confirmed.append(Found(image_id, distance, relation))
    confirmed.sort(key=lambda match: (-(match.relation.inliers or 0), match.image_id))
    return found + confirmed


def _hash_matches(
    conn: psycopg.Connection, kind: HashKind, views: list[View], max_distance: int
) -> dict[int, tuple[int, View]]:
    """Each image within ``max_distance`` of some view, with its nearest view."""
    nearest: dict[int, tuple[int, View]] = {}
    for view in views:
        for image_id, distance in conn.execute(
            "SELECT image_id, distance FROM similar_hashes(%s, %s::bigint, %s)",
            (kind.name, to_bigint(view.hashes[kind.name]), view.max_distance(max_distance)),
        ):
            if image_id not in nearest or distance < nearest[image_id][0]:
                nearest[image_id] = (distance, view)
    return nearest


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
    facts = _image_facts(conn, kind, [image_id])
    if image_id not in facts:
        return None
    size, stored_hash = facts[image_id]
    within = [
        (distance, view)
        for view in description.views
        if kind.name in view.hashes
        and (distance := kind.distance(view.hashes[kind.name], stored_hash))
        <= view.max_distance(max_distance)
    ]
    stored = features.read(conn, features.IMAGE_FEATURES, [image_id]).get(image_id)
    if within:
        distance, nearest = min(within, key=lambda pair: pair[0])
        trusted = distance <= TRUSTED_DISTANCE or stored is None
        if trusted or not contradicts(description.features, stored, size):
            return _by_view(nearest, description.features.size, size)
        return None
    return None if stored is None else relate(description.features, stored, size)


def _by_view(view: View, query_size: tuple[int, int], match_size: tuple[int, int]) -> Relation:
    """The relation of a match that a view's hash found."""
    return relation_from_transform(
        "hash",
        view.transform(query_size, match_size),
        query_size,
        match_size,
        mirrored=view.mirrored,
    )


def _descriptor_sets(description: QueryDescription) -> list[np.ndarray]:
    query = description.features
    return [query.upright.descriptors, query.mirrored.descriptors]


def _image_facts(
    conn: psycopg.Connection, kind: HashKind, image_ids: list[int]
) -> dict[int, tuple[tuple[int, int], int]]:
    """Each image's (width, height) and its hash of ``kind``."""
    place = next(place for place in kind_tables.storages(conn) if place.name == kind.name)
    rows = conn.execute(
        sql.SQL("""
            SELECT i.id, i.width, i.height, h.{column}
            FROM images i JOIN {table} h ON h.{key} = i.id
            WHERE i.id = ANY(%s)
        """).format(
            column=sql.Identifier(place.hash_column),
            table=sql.Identifier(place.image_table),
            key=sql.Identifier(place.image_key),
        ),
        (image_ids,),
    ).fetchall()
    return {
        image_id: ((width, height), from_bigint(value))
        for image_id, width, height, value in rows
        if value is not None
    }
