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
from lookalike.features.relation import relation_from_transform
from lookalike.features.verify import relate
from lookalike.features.views import View
from lookalike.hashes import from_bigint, to_bigint
from lookalike.kinds import HashKind
from lookalike.store import features, kind_tables
from lookalike.store.search import Found


def find(
    conn: psycopg.Connection,
    kind: HashKind,
    description: QueryDescription,
    index: FeatureIndex | None,
    *,
    max_distance: int,
) -> list[Found]:
    """Every image that the views' hashes or a confirmed feature fit find, best first."""
    views = [view for view in description.views if kind.name in view.hashes]
    by_hash: dict[int, tuple[int, View]] = {}
    for view in views:
        for image_id, distance in conn.execute(
            "SELECT image_id, distance FROM similar_hashes(%s, %s::bigint, %s)",
            (kind.name, to_bigint(view.hashes[kind.name]), view.max_distance(max_distance)),
        ):
            if image_id not in by_hash or distance < by_hash[image_id][0]:
                by_hash[image_id] = (distance, view)
    candidates = [] if index is None else index.candidates(_descriptor_sets(description))
    to_verify = [image_id for image_id in candidates if image_id not in by_hash]
    stored = features.read(conn, features.IMAGE_FEATURES, to_verify)
    facts = _image_facts(conn, kind, [*by_hash, *to_verify])
    query_size = description.features.size

    found = [
        Found(
            image_id,
            distance,
            relation_from_transform(
                "hash",
                view.transform(query_size, facts[image_id][0]),
                query_size,
                facts[image_id][0],
                mirrored=view.mirrored,
            ),
        )
        for image_id, (distance, view) in sorted(by_hash.items(), key=lambda item: item[1][0])
        if image_id in facts
    ]
    confirmed = []
    for image_id in to_verify:
        if image_id not in stored or image_id not in facts:
            continue
        size, stored_hash = facts[image_id]
        relation = relate(description.features, stored[image_id], size)
        if relation is not None:
            distance = min(kind.distance(view.hashes[kind.name], stored_hash) for view in views)
            confirmed.append(Found(image_id, distance, relation))
    confirmed.sort(key=lambda match: (-(match.relation.inliers or 0), match.image_id))
    return found + confirmed


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
