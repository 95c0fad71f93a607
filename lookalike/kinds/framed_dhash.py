"""framed_dhash: the dHash of the picture inside a plain frame or letterbox bars.

Only a framed picture has one. It is searched with the query's dHash views, so a plain
query finds a stored copy someone framed, and a framed query (whose trimmed view is the
picture) finds one framed differently; the query's own frame is trimmed by its views
(:mod:`lookalike.features.views`). Where the picture sat is stored beside it
(``image_frames``), so a match says how much of the stored image the query is.
"""

from __future__ import annotations

import numpy as np

from lookalike import frames, perceptual
from lookalike.kinds import HashKind


def framed_dhash(gray: np.ndarray) -> int | None:
    picture = frames.framed(gray)
    return None if picture is None else perceptual.dhash(np.ascontiguousarray(picture[1]))


KIND = HashKind(
    name="framed_dhash",
    title="dHash inside the frame",
    bits=64,
    compute=framed_dhash,
    # a search's radius for it, at most (`lookalike bench quality` at 10: one more false
    # match in scikit-image's 340 queries); a bank's is its dHash radius (SQL bank_radius)
    default_radius=8,
    searched_with="dhash",
)
