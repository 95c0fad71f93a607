"""Hash kinds: one small definition per kind of global fingerprint, registered in one place.

A kind says what it is called, how many bits it has, how it is computed from the one decoded
image, its default search radius and whether it is searched through the multi-index (or only
kept to confirm a match). The store, the SQL functions, the CLI, the site and the banks take a
kind as a parameter, dHash (DEFAULT_KIND) when none is given. Every module of this package
that defines ``KIND`` is registered, dHash and pHash first: adding a kind is one module here
plus one migration that creates its tables (:func:`lookalike.store.kind_tables.create_tables`).

Where a kind's hashes live in PostgreSQL is recorded in the ``hash_kinds`` table, which the
store reads; that is the one place the database and the program agree on it.
"""

from __future__ import annotations

import importlib
import math
import pkgutil
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache

import numpy as np

from lookalike.hashes import HASH_BITS

# What a search or a bank check uses when the caller does not pick a kind.
DEFAULT_KIND = "dhash"
_FIRST = ("dhash", "phash")  # the order `lookalike hash` prints them in
# Widest chunk of the multi-index layout: hash_flip_masks holds the masks of up to 22 bits.
MAX_CHUNK_BITS = 22


class UnknownKind(ValueError):
    """No hash kind by that name (or not one that can be searched); the message lists them."""


@dataclass(frozen=True, slots=True)
class HashKind:
    """One kind of global hash: a ``bits``-long unsigned integer per image.

    ``compute`` takes the image as an upright 8-bit grayscale array, transparent pixels white:
    every kind sees the same decode, so no two callers can hash a picture differently. It may
    return None: the kind says nothing about this picture (``framed_dhash`` of an unframed one).
    """

    name: str  # lowercase: a column and table prefix, an API parameter, a key in JSON
    title: str  # how people write it: "dHash"
    bits: int
    compute: Callable[[np.ndarray], int | None]
    default_radius: int
    indexed: bool = True  # False: stored to confirm matches, never searched by itself
    confirmed_by: str | None = None  # a kind a bank match must also be near in, when known
    cells: str = ""  # what one bit says, for the compare page's grid of bits
    # A kind holding another kind's hashes of part of a picture (framed_dhash: the dHash of
    # what is inside a frame) is indexed, but searched with the query's hashes of that kind,
    # by the robust search and bank checks, never by a query hash of its own.
    searched_with: str | None = None

    def __post_init__(self) -> None:
        if not 1 <= self.bits <= HASH_BITS:  # stored as one bigint
            raise ValueError(f"{self.name}: {self.bits} bits; a kind holds 1 to {HASH_BITS}")

    @property
    def searchable(self) -> bool:
        """Whether a search or bank check may be asked for by this kind's own hash."""
        return self.indexed and self.searched_with is None

    def searched_within(self, radius: int) -> int:
        """The radius this kind's stored hashes are searched within for a query's ``radius``:
        a kind searched with another's hashes (a frame's inside) within its own default at
        most, as a turned view is; a part of a picture passes for another more often."""
        return radius if self.searched_with is None else min(radius, self.default_radius)

    @property
    def hex_digits(self) -> int:
        return math.ceil(self.bits / 4)

    @property
    def chunk_bits(self) -> tuple[int, ...]:
        """The multi-index layout, most significant chunk first (:func:`chunk_layout`)."""
        return chunk_layout(self.bits)

    @property
    def max_radius(self) -> int:
        """The widest radius the chunk probes reach (each chunk up to 4 bits): 14 for 64 bits."""
        return 5 * len(self.chunk_bits) - 1

    def distance(self, a: int, b: int) -> int:
        """Number of differing bits."""
        return (a ^ b).bit_count()

    def to_hex(self, value: int) -> str:
        return f"{value:0{self.hex_digits}x}"

    def from_hex(self, text: str) -> int:
        """Hex digits → hash; ``ValueError`` with a one-line reason for a person."""
        cleaned = text.strip()
        if len(cleaned) != self.hex_digits or not _is_hex(cleaned):
            raise ValueError(
                f"not a {self.bits}-bit hash: {text!r} (expected {self.hex_digits} hex digits)"
            )
        return int(cleaned, 16)


def chunk_layout(bits: int) -> tuple[int, ...]:
    """Chunk widths for multi-index hashing: as few chunks as keep each within 22 bits, as
    even as possible, the wider ones last (64 → 21, 21, 22). Same as SQL ``hash_chunk_layout``.
    """
    chunks = math.ceil(bits / MAX_CHUNK_BITS)
    narrow, wider = divmod(bits, chunks)
    return tuple(narrow + (index >= chunks - wider) for index in range(chunks))


def chunk_shifts(bits: int) -> tuple[int, ...]:
    """How far each chunk of :func:`chunk_layout` sits from the least significant bit."""
    layout = chunk_layout(bits)
    return tuple(sum(layout[index + 1 :]) for index in range(len(layout)))


def all_kinds() -> tuple[HashKind, ...]:
    """Every registered kind: dHash, pHash, then the others by module name."""
    return tuple(_registry().values())


def indexed_kinds() -> tuple[HashKind, ...]:
    """The kinds with a multi-index in the database."""
    return tuple(kind for kind in all_kinds() if kind.indexed)


def searchable_kinds() -> tuple[HashKind, ...]:
    return tuple(kind for kind in all_kinds() if kind.searchable)


def searched_with(kind: HashKind) -> tuple[HashKind, ...]:
    """The kinds searched with the query's hashes of ``kind`` beside ``kind``'s own."""
    return tuple(other for other in all_kinds() if other.searched_with == kind.name)


def compute_all(gray: np.ndarray) -> dict[str, int]:
    """Every kind's hash of an upright grayscale picture, less those that say nothing of it."""
    found = {}
    for kind in all_kinds():
        value = kind.compute(gray)
        if value is not None:
            found[kind.name] = value
    return found


def get(name: str, *, searchable: bool = False) -> HashKind:
    """The kind called ``name``; ``searchable``: one a search may be asked for by."""
    kind = _registry().get(name)
    if kind is None or (searchable and not kind.searchable):
        choices = searchable_kinds() if searchable else all_kinds()
        what = "searchable hash kind" if searchable else "hash kind"
        raise UnknownKind(
            f"unknown {what} {name!r}: expected one of {', '.join(k.name for k in choices)}"
        )
    return kind


def register(kind: HashKind) -> None:
    """Add a kind defined outside this package, in this process (and the processes it forks)."""
    registry = _registry()
    if kind.name in registry and registry[kind.name] != kind:
        raise ValueError(f"a different hash kind is already registered as {kind.name!r}")
    registry[kind.name] = kind


def unregister(name: str) -> None:
    _registry().pop(name, None)


@cache
def _registry() -> dict[str, HashKind]:
    names = sorted(
        (module.name for module in pkgutil.iter_modules(__path__)),
        key=lambda name: (name not in _FIRST, _FIRST.index(name) if name in _FIRST else 0, name),
    )
    found: dict[str, HashKind] = {}
    for name in names:
        kind = getattr(importlib.import_module(f"{__name__}.{name}"), "KIND", None)
        if isinstance(kind, HashKind):
            found[kind.name] = kind
    return found


def _is_hex(text: str) -> bool:
    return all(char in "0123456789abcdefABCDEF" for char in text)
