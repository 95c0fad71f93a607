"""pHash: the signs of a 32×32 shrink's lowest 8×8 DCT frequencies against their median.

Kept beside dHash to confirm a bank match (within 12 bits by default), not searched by itself.
"""

from lookalike import perceptual
from lookalike.kinds import HashKind

KIND = HashKind(
    name="phash",
    title="pHash",
    bits=64,
    compute=perceptual.phash,
    default_radius=12,
    indexed=False,
    cells="Each cell is one of the 8×8 lowest frequencies of a 32×32 grayscale copy: is it "
    "above their median?",
)
