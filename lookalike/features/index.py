"""Candidate retrieval: which stored images share enough local features with a query.

Verifying a candidate costs ~0.5 ms, so only a few may be verified per search; this index
picks them without comparing against every image. Each descriptor is hashed by sampling bits
(locality-sensitive hashing for Hamming space: two descriptors a few bits apart usually agree
on all sampled bits) into ``TABLES`` keys; an image's candidacy is the idf-weighted count of
query keys it shares. No vocabulary is trained, so nothing is learnt from, or shipped with,
any photo set.

The index lives in memory and is derived from the ``image_features`` table (PostgreSQL stays
the record of truth): :meth:`FeatureIndex.add` appends a batch as a new immutable segment,
small segments are merged as they pile up, and searches read whichever segments exist, so it
serves while it is built.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np

from lookalike.features.orb import DESCRIPTOR_BYTES

TABLES = 2
KEY_BITS = 20
CANDIDATES = 40
_SEED = 20261201  # fixed: the same keys in every process
_MERGE_AT = 8  # segments before the small ones are merged
SEGMENT_IMAGES = 100_000  # images per segment while catching up


def _sampled_bits() -> np.ndarray:
    bits = np.random.default_rng(_SEED).permutation(8 * DESCRIPTOR_BYTES)
    return bits[: TABLES * KEY_BITS].reshape(TABLES, KEY_BITS)


_BITS = _sampled_bits()


def keys(descriptors: np.ndarray) -> np.ndarray:
    """TABLES × n keys of n descriptors (bit i of a descriptor: bit i % 8, most
    significant first, of byte i // 8, as numpy's unpackbits counts them)."""
    found = np.zeros((TABLES, len(descriptors)), dtype=np.uint32)
    for table, sample in enumerate(_BITS):
        for place, bit in enumerate(sample):
            column = descriptors[:, bit // 8] >> (7 - bit % 8) & 1
            found[table] |= column.astype(np.uint32) << place
    return found


@dataclass(frozen=True, slots=True)
class _Segment:
    """Images ``image_ids`` and, per table, their keys sorted with each key's postings."""

    image_ids: np.ndarray  # int64, position → image id
    unique_keys: list[np.ndarray]  # per table: the distinct keys, ascending (uint32)
    starts: list[np.ndarray]  # per table: where each key's postings start, plus the end
    postings: list[np.ndarray]  # per table: image positions (uint32), grouped by key

    @classmethod
    def build(
        cls, image_ids: np.ndarray, per_table: list[tuple[np.ndarray, np.ndarray]]
    ) -> _Segment:
        unique_keys, starts, postings = [], [], []
        for table_keys, positions in per_table:
            order = np.argsort(table_keys, kind="stable")
            sorted_keys = table_keys[order]
            distinct, first = np.unique(sorted_keys, return_index=True)
            unique_keys.append(distinct)
            starts.append(np.append(first, len(sorted_keys)).astype(np.int64))
            postings.append(positions[order].astype(np.uint32))
        return cls(image_ids, unique_keys, starts, postings)

    @property
    def nbytes(self) -> int:
        arrays = [self.image_ids, *self.unique_keys, *self.starts, *self.postings]
        return sum(array.nbytes for array in arrays)

    def table_keys(self, table: int) -> np.ndarray:
        """Each posting's key, in posting order (to merge segments)."""
        return np.repeat(self.unique_keys[table], np.diff(self.starts[table]))

    def votes(self, query_keys: np.ndarray, total_images: int) -> np.ndarray:
        """Per image of this segment, the idf-weighted number of query keys it holds."""
        votes = np.zeros(len(self.image_ids))
        for table, table_query in enumerate(query_keys):
            distinct = self.unique_keys[table]
            if not len(distinct):
                continue
            wanted = np.unique(table_query)
            at = np.searchsorted(distinct, wanted).clip(max=len(distinct) - 1)
            at = at[distinct[at] == wanted]
            begin, end = self.starts[table][at], self.starts[table][at + 1]
            lengths = end - begin
            # Rare keys say more: weigh each key by log(N / images holding it).
            weight = np.log1p(total_images / lengths)
            hits = _ranges(begin, lengths)
            votes += np.bincount(
                self.postings[table][hits],
                weights=np.repeat(weight, lengths),
                minlength=len(self.image_ids),
            )
        return votes


def _ranges(begin: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """The concatenation of range(b, b + n) for each (b, n), without a Python loop."""
    if not len(lengths) or not lengths.sum():
        return np.zeros(0, np.int64)
    offsets = np.repeat(begin - np.concatenate(([0], np.cumsum(lengths)[:-1])), lengths)
    return offsets + np.arange(lengths.sum())


class FeatureIndex:
    """An in-memory inverted index of local-feature keys, safe to search while being added to."""

    def __init__(self) -> None:
        self._segments: tuple[_Segment, ...] = ()
        self._lock = threading.Lock()  # one writer at a time; readers take the tuple as is
        self._known: set[int] = set()
        self._highest: int | None = None

    def __len__(self) -> int:
        return len(self._known)

    def __contains__(self, image_id: int) -> bool:
        return image_id in self._known

    @property
    def highest_id(self) -> int | None:
        return self._highest

    @property
    def nbytes(self) -> int:
        """Bytes its segments' arrays hold (ids, keys, key offsets, postings): what grows with
        the images indexed, besides the set of their ids."""
        return sum(segment.nbytes for segment in self._segments)

    def add(self, image_ids: Sequence[int], descriptors: Sequence[np.ndarray]) -> None:
        """Index a batch: each image's descriptors (n×DESCRIPTOR_BYTES uint8). Known images
        are skipped."""
        self.add_many([(image_ids, descriptors)])

    def add_many(
        self,
        batches: Iterable[tuple[Sequence[int], Sequence[np.ndarray]]],
        segment_images: int = SEGMENT_IMAGES,
    ) -> None:
        """Index batches as they come (a database read in pages), as segments of up to
        ``segment_images`` images: only the batches' keys are held meanwhile (800 bytes an
        image, a third of their descriptors), and few segments means few merges."""
        pending: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
        held = 0
        for image_ids, descriptors in batches:
            with self._lock:
                fresh = [
                    (image_id, found)
                    for image_id, found in zip(image_ids, descriptors, strict=True)
                    if image_id not in self._known
                ]
            if not fresh:
                continue
            stacked = np.concatenate([found for _, found in fresh]).reshape(-1, DESCRIPTOR_BYTES)
            pending.append(
                (
                    np.array([image_id for image_id, _ in fresh], dtype=np.int64),
                    np.array([len(found) for _, found in fresh]),
                    keys(stacked),
                )
            )
            held += len(fresh)
            if held >= segment_images:
                self._add_segment(pending)
                pending, held = [], 0
        if pending:
            self._add_segment(pending)

    def _add_segment(self, parts: list[tuple[np.ndarray, np.ndarray, np.ndarray]]) -> None:
        ids = np.concatenate([part[0] for part in parts])
        counts = np.concatenate([part[1] for part in parts])
        table_keys = np.concatenate([part[2] for part in parts], axis=1)
        with self._lock:
            known = np.fromiter((image_id in self._known for image_id in ids.tolist()), bool)
            if known.any():  # another writer added some meanwhile
                keep = np.repeat(~known, counts)
                ids, counts, table_keys = ids[~known], counts[~known], table_keys[:, keep]
            if not len(ids):
                return
            positions = np.repeat(np.arange(len(ids), dtype=np.uint32), counts)
            segment = _Segment.build(ids, [(k, positions) for k in table_keys])
            self._segments = _merged_if_many((*self._segments, segment))
            self._known.update(ids.tolist())
            self._highest = max(self._highest or 0, int(ids.max()))

    def candidates(
        self, descriptor_sets: Sequence[np.ndarray], limit: int = CANDIDATES
    ) -> list[int]:
        """The ``limit`` images sharing the most weight of keys with any of the descriptor sets
        (a query's upright and mirrored features), best first."""
        segments = self._segments
        total = max(1, sum(len(segment.image_ids) for segment in segments))
        scored: list[tuple[np.ndarray, np.ndarray]] = []
        for descriptors in descriptor_sets:
            if not len(descriptors):
                continue
            query_keys = keys(descriptors)
            for segment in segments:
                votes = segment.votes(query_keys, total)
                top = _top(votes, limit)
                scored.append((segment.image_ids[top], votes[top]))
        if not scored:
            return []
        ids = np.concatenate([ids for ids, _ in scored])
        votes = np.concatenate([votes for _, votes in scored])
        best: dict[int, float] = {}
        for image_id, vote in zip(ids.tolist(), votes.tolist(), strict=True):
            if vote > 0 and vote > best.get(image_id, 0.0):
                best[image_id] = vote
        return sorted(best, key=lambda image_id: -best[image_id])[:limit]


def _top(votes: np.ndarray, limit: int) -> np.ndarray:
    if len(votes) <= limit:
        return np.argsort(-votes)
    top = np.argpartition(-votes, limit)[:limit]
    return top[np.argsort(-votes[top])]


def _merged_if_many(segments: tuple[_Segment, ...]) -> tuple[_Segment, ...]:
    """Merge the newer, smaller segments into one once there are _MERGE_AT of them; the
    largest stays as it is, so a steady trickle of batches costs little to fold in."""
    if len(segments) < _MERGE_AT:
        return segments
    ordered = sorted(segments, key=lambda segment: -len(segment.image_ids))
    keep, merge = ordered[:1], ordered[1:]
    if len(ordered[0].image_ids) < sum(len(segment.image_ids) for segment in merge):
        keep, merge = [], ordered
    return (*keep, _merge(merge))


def _merge(segments: list[_Segment]) -> _Segment:
    offsets = np.cumsum([0, *(len(segment.image_ids) for segment in segments)])
    image_ids = np.concatenate([segment.image_ids for segment in segments])
    per_table = []
    for table in range(TABLES):
        per_table.append(
            (
                np.concatenate([segment.table_keys(table) for segment in segments]),
                np.concatenate(
                    [
                        segment.postings[table].astype(np.int64) + offset
                        for segment, offset in zip(segments, offsets, strict=False)
                    ]
                ),
            )
        )
    return _Segment.build(image_ids, per_table)
