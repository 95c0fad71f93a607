"""dHash: whether each pixel of a 9×8 shrink is brighter than its left neighbour.

The kind every search and bank check uses by default. Radius 10 is the search default
(docs/benchmarks.md, `lookalike bench radius`); banks use their own, 8 by default, and
confirm a dHash match by the pHash when both sides have one.
"""

from lookalike import perceptual
from lookalike.kinds import HashKind

KIND = HashKind(
    name="dhash",
    title="dHash",
    bits=64,
    compute=perceptual.dhash,
    default_radius=10,
    confirmed_by="phash",
    cells="Each cell is one bit of a 9×8 grayscale copy: is the next pixel to the right brighter?",
)
