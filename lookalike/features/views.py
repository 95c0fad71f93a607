"""The query seen eight ways (mirrored, turned by 90° steps) and with its border trimmed.

Global hashes stay exact for each view: a mirrored copy's dHash is not the query's bits
reversed, so each view hashes transformed *pixels*. Searching nine hashes costs nine exact
searches (`lookalike bench search` gives one at ~1 ms) and changes nothing stored. Each view
has every kind's hash, the confirming ones too, so a bank check applies its rule (a dHash
confirmed by a pHash) to every view.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from lookalike import frames, kinds
from lookalike.frames import Box

VIEW_SIDE = 1024
# A turned photo passes for another picture more often than an upright one (a rocket launch
# turned 90° hashes like a page of text), so mirrored and turned views are searched within
# 8 bits, which a resized or recompressed copy stays within (`lookalike bench moderation`);
# the local features still find the turned copies this radius misses.
TURNED_MAX_DISTANCE = 8


@dataclass(frozen=True, slots=True)
class View:
    """One way of looking at the query: the match is the query ``mirrored`` then turned by
    ``turns`` quarter turns counterclockwise, or (``box``) the part of the query inside it."""

    mirrored: bool
    turns: int
    # shares, not pixels: the pixels hashed may be a JPEG's reduced decode, the query's size
    # is its full one
    box: Box | None
    hashes: Mapping[str, int]

    def box_in(self, query_size: tuple[int, int]) -> tuple[float, float, float, float]:
        """The part of the query this view shows, in query pixels."""
        width, height = query_size
        left, top, right, bottom = self.box or (0.0, 0.0, 1.0, 1.0)
        return left * width, top * height, right * width, bottom * height

    @property
    def turned(self) -> bool:
        return self.mirrored or self.turns != 0

    def max_distance(self, query_radius: int) -> int:
        """The radius this view's hashes are searched within, given the query's own."""
        return min(query_radius, TURNED_MAX_DISTANCE) if self.turned else query_radius

    def stored_kinds(self, kind: kinds.HashKind) -> tuple[kinds.HashKind, ...]:
        """The stored kinds this view's ``kind`` hash is compared with: that kind, and unless
        the view is mirrored or turned, the kinds searched with it (what is inside a stored
        frame). A turned view's chance matches are what its narrower radius is for; a frame's
        inside beside them doubled them (`lookalike bench quality`: a mirrored crop of a
        rocket's sky within 8 bits of a colour chart's inside, 10 of the whole chart)."""
        return (kind,) if self.turned else (kind, *kinds.searched_with(kind))

    def transform(
        self,
        query_size: tuple[int, int],
        match_size: tuple[int, int],
        match_box: Box | None = None,
    ) -> np.ndarray:
        """The 2×3 map from query pixels to match pixels that this view implies: onto the
        whole match, or onto the part of it inside ``match_box`` (a stored picture's frame)."""
        left, top, right, bottom = self.box_in(query_size)
        # Where the query's top-left, top-right and bottom-left corners land, as a share of
        # the match: mirror, then turn a quarter at a time (a corner moves to the next one).
        corners = [(left, top), (right, top), (left, bottom)]
        unit = [(0.0, 0.0), (1.0, 0.0), (0.0, 1.0)]
        if self.mirrored:
            unit = [(1 - x, y) for x, y in unit]
        for _ in range(self.turns):
            unit = [(y, 1 - x) for x, y in unit]
        box_left, box_top, box_right, box_bottom = match_box or (0.0, 0.0, 1.0, 1.0)
        target = [
            (
                (box_left + x * (box_right - box_left)) * match_size[0],
                (box_top + y * (box_bottom - box_top)) * match_size[1],
            )
            for x, y in unit
        ]
        return _affine_from(corners, target)


def views(gray: np.ndarray, hashes: Mapping[str, int]) -> list[View]:
    """The 8 mirrored and turned views of an upright grayscale image, then the trimmed one.

    ``hashes`` are the image's own (the upright view's). The others are taken from a copy
    at most VIEW_SIDE px a side: a 9×8 or 32×32 shrink of it differs from one of the full
    picture by a bit at most, and turning 49 MP eight times would cost seconds.
    """
    found = [View(False, 0, None, hashes)]
    gray = _reduced(gray)
    for mirrored in (False, True):
        pixels = np.fliplr(gray) if mirrored else gray
        for turns in range(4):
            if mirrored or turns:
                found.append(View(mirrored, turns, None, _hashes(np.rot90(pixels, turns))))
    picture = frames.framed(gray)
    if picture is not None:
        box, pixels = picture
        found.append(View(False, 0, box, _hashes(pixels)))
    return found


def _reduced(gray: np.ndarray) -> np.ndarray:
    import cv2

    height, width = gray.shape
    scale = VIEW_SIDE / max(height, width)
    if scale >= 1:
        return gray
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    return cv2.resize(gray, size, interpolation=cv2.INTER_AREA)


def _hashes(pixels: np.ndarray) -> dict[str, int]:
    return kinds.compute_all(np.ascontiguousarray(pixels))


def _affine_from(
    source: list[tuple[float, float]], target: list[tuple[float, float]]
) -> np.ndarray:
    """The affine map taking three points to three others."""
    src = np.array([(x, y, 1.0) for x, y in source])
    return np.linalg.solve(src, np.array(target)).T
