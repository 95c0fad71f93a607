"""The three spellings of a 64-bit perceptual hash and the conversions between them.

Python keeps hashes unsigned (imagehash's bit order), PostgreSQL stores them as signed
``bigint`` and people read 16 hex digits. Every conversion lives here so none is improvised.
"""

from __future__ import annotations

import re

HASH_BITS = 64
_HEX_HASH = re.compile(r"[0-9a-fA-F]{16}")


def hash_to_hex(value: int) -> str:
    """Unsigned hash → the 16-hex-digit form ``lookalike hash`` prints."""
    return f"{value & 0xFFFF_FFFF_FFFF_FFFF:016x}"


def hash_from_hex(text: str) -> int:
    """16 hex digits → unsigned hash; raises ``ValueError`` with a readable reason."""
    cleaned = text.strip()
    if not _HEX_HASH.fullmatch(cleaned):
        raise ValueError(f"not a 64-bit hash: {text!r} (expected 16 hex digits)")
    return int(cleaned, 16)


def to_bigint(value: int) -> int:
    """Unsigned 64-bit → PostgreSQL's signed ``bigint`` with the same bits."""
    return value - (1 << HASH_BITS) if value >= 1 << (HASH_BITS - 1) else value


def from_bigint(value: int) -> int:
    """PostgreSQL ``bigint`` → unsigned 64-bit with the same bits."""
    return value & 0xFFFF_FFFF_FFFF_FFFF


def hamming(a: int, b: int) -> int:
    """Number of differing bits between two hashes (signed or unsigned alike)."""
    return ((a ^ b) & 0xFFFF_FFFF_FFFF_FFFF).bit_count()
