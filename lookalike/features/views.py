"""The query seen eight ways (mirrored, turned by 90° steps) and with its border trimmed.

Global hashes stay exact for each view: a mirrored copy's dHash is not the query's bits
reversed, so each view hashes transformed *pixels*. Searching nine hashes costs nine exact
searches (`lookalike bench search` gives one at ~1 ms) and changes nothing stored.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from lookalike import kinds

# A border line: nearly all of its pixels within this many levels of the line's median.
_BORDER_TOLERANCE = 12
_BORDER_SHARE = 0.98
_MIN_TRIM = 0.01  # of a side: thinner edges are JPEG ringing, not a frame
_MIN_KEPT = 0.4  # of a side: trimming more would be cutting into a plain picture
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
    box: tuple[int, int, int, int] | None  # (left, top, right, bottom) in query pixels
    hashes: Mapping[str, int]

    def max_distance(self, query_radius: int) -> int:
        """The radius this view's hashes are searched within, given the query's own."""
        turned = self.mirrored or self.turns
        return min(query_radius, TURNED_MAX_DISTANCE) if turned else query_radius

    def transform(self, query_size: tuple[int, int], match_size: tuple[int, int]) -> np.ndarray:
        """The 2×3 map from query pixels to match pixels that this view implies."""
        width, height = query_size
        left, top, right, bottom = self.box or (0, 0, width, height)
        # Where the query's top-left, top-right and bottom-left corners land, as a share of
        # the match: mirror, then turn a quarter at a time (a corner moves to the next one).
        corners = [(left, top), (right, top), (left, bottom)]
        unit = [(0.0, 0.0), (1.0, 0.0), (0.0, 1.0)]
        if self.mirrored:
            unit = [(1 - x, y) for x, y in unit]
        for _ in range(self.turns):
            unit = [(y, 1 - x) for x, y in unit]
        target = [(x * match_size[0], y * match_size[1]) for x, y in unit]
        return _affine_from(corners, target)


def views(gray: np.ndarray) -> list[View]:
    """The 8 mirrored and turned views of an upright grayscale image, then the trimmed one."""
    found = []
    for mirrored in (False, True):
        pixels = np.fliplr(gray) if mirrored else gray
        for turns in range(4):
            found.append(View(mirrored, turns, None, _hashes(np.rot90(pixels, turns))))
    box = border_box(gray)
    if box is not None:
        left, top, right, bottom = box
        found.append(View(False, 0, box, _hashes(gray[top:bottom, left:right])))
    return found


def border_box(gray: np.ndarray) -> tuple[int, int, int, int] | None:
    """The picture inside a plain frame or letterbox bars, or None when there is none."""
    height, width = gray.shape
    top = _plain_lines(gray)
    bottom = height - _plain_lines(gray[::-1])
    left = _plain_lines(gray.T)
    right = width - _plain_lines(gray.T[::-1])
    kept_width, kept_height = right - left, bottom - top
    trimmed = (
        max(left, width - right) >= _MIN_TRIM * width
        or max(top, height - bottom) >= _MIN_TRIM * height
    )
    if not trimmed or kept_width < _MIN_KEPT * width or kept_height < _MIN_KEPT * height:
        return None
    return left, top, right, bottom


def _plain_lines(rows: np.ndarray) -> int:
    """How many leading rows are one plain colour, the colour of the first row."""
    colour = float(np.median(rows[0]))
    close = np.abs(rows.astype(np.int16) - colour) <= _BORDER_TOLERANCE
    plain = close.mean(axis=1) >= _BORDER_SHARE
    return int(np.argmin(plain)) if not plain.all() else len(rows)


def _hashes(pixels: np.ndarray) -> dict[str, int]:
    return {kind.name: kind.compute(np.ascontiguousarray(pixels)) for kind in kinds.indexed_kinds()}


def _affine_from(
    source: list[tuple[float, float]], target: list[tuple[float, float]]
) -> np.ndarray:
    """The affine map taking three points to three others."""
    src = np.array([(x, y, 1.0) for x, y in source])
    return np.linalg.solve(src, np.array(target)).T
