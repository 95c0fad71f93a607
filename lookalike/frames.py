"""The picture inside a plain frame or letterbox bars.

Re-uploaders frame a picture to move its global hashes; the query trims its own frame
(:mod:`lookalike.features.views`), and a stored picture that was framed keeps the hash of what
is inside (the ``framed_dhash`` kind) with the box it was cut from, so either side may be the
framed one.
"""

from __future__ import annotations

import numpy as np

# A border line: nearly all of its pixels within this many levels of the line's median.
_BORDER_TOLERANCE = 12
_BORDER_SHARE = 0.98
_MIN_TRIM = 0.01  # of a side: thinner edges are JPEG ringing, not a frame
_MIN_KEPT = 0.4  # of a side: trimming more would be cutting into a plain picture
_LINES_AT_A_TIME = 64

# (left, top, right, bottom) as shares of the width and height
Box = tuple[float, float, float, float]


def _border_box(gray: np.ndarray) -> tuple[int, int, int, int] | None:
    """(left, top, right, bottom) of the picture inside a plain frame, in pixels."""
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


def picture_box(gray: np.ndarray) -> Box | None:
    """Where the picture inside a frame is, as shares of the sides: the same at any scale."""
    picture = framed(gray)
    return None if picture is None else picture[0]


def framed(gray: np.ndarray) -> tuple[Box, np.ndarray] | None:
    """Where the picture inside a frame is, as shares of the sides (the same at any scale),
    and its pixels; None when there is no frame."""
    box = _border_box(gray)
    if box is None:
        return None
    left, top, right, bottom = box
    height, width = gray.shape
    shares = (left / width, top / height, right / width, bottom / height)
    return shares, gray[top:bottom, left:right]


def _plain_lines(rows: np.ndarray) -> int:
    """How many leading rows are one plain colour, the colour of the first row.

    Rows are compared a few at a time, stopping at the first that is not plain: widened to
    compare at once, a 49 MP picture took 750 MB, over twice its decode's bound. Most
    pictures have no frame, so the first look is at two rows only.
    """
    colour = float(np.median(rows[0]))
    start, step = 0, 2
    while start < len(rows):
        lines = rows[start : start + step]
        close = np.abs(lines.astype(np.int16) - colour) <= _BORDER_TOLERANCE
        plain = close.mean(axis=1) >= _BORDER_SHARE
        if not plain.all():
            return start + int(np.argmin(plain))
        start, step = start + len(lines), min(step * 4, _LINES_AT_A_TIME)
    return len(rows)
