"""ORB local features: what is stored per image, and what a query is described by.

An image is described at one working size, 512 px on its longer side (where ORB adds ~6 ms to
a 1024×768 JPEG's fingerprint, `lookalike bench robust`): copies resized from one picture are
then described at one scale, and a small copy gets enough pixels for ORB's corners.

Stored images keep 100 features spread over the picture: positions to 1/8 px and the first 22
bytes of each ORB descriptor, 2,605 bytes an image, three rows to a PostgreSQL page. Queries
keep their strongest 500 and describe their mirror image too, because ORB descriptors are
turned with the image but not mirrored with it.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

import numpy as np

WORKING_SIDE = 512
STORED_FEATURES = 100
# A flagged picture of a moderation bank keeps more: banks are small, and a re-upload cropped
# to 60% keeps a third of them (`lookalike bench moderation`: 400 caught 0.93 of such crops,
# 300 0.86, with no false positive either way; 10.4 KB an entry).
BANK_FEATURES = 400
QUERY_FEATURES = 500
# 176 of ORB's 256 tests: with all 32 bytes a row of 100 features (3,605 bytes) fits two to an
# 8 KB page, with 22 (2,605) three. bench quality: 0.987 over all edits against 0.989 with 32,
# every edit >= 0.92 either way (docs/benchmarks.md).
DESCRIPTOR_BYTES = 22
# What is kept is spread over the picture, so that a crop keeps its share: ORB detects three
# times the features kept, and the strongest are taken with at most twice a cell's share from
# any cell of a 4×4 grid, then the rest by strength. bench quality: 0.994 over all edits
# against 0.987 for the strongest alone (crop to the centre 75% 0.94 against 0.92).
_DETECTED_PER_KEPT = 3
_GRID = 4
_CELL_SHARE = 2
_ORB_BYTES = 32
_POSITION_SCALE = 8  # positions in 1/8 px: 512 px fits in 16 bits
_HEADER = struct.Struct("<BHH")  # format version, working width, working height
_FORMAT_VERSION = 2
# Version 1 (the release of migration 0003) kept all 32 bytes: read, and matched on the first 22.
_DESCRIPTOR_BYTES_BY_VERSION = {1: _ORB_BYTES, _FORMAT_VERSION: DESCRIPTOR_BYTES}
# ORB needs a 31 px patch around each corner at each of its 8 scales (1.2 apart): narrower
# working images (a 65,535×2 strip) are described by no features.
_MIN_SIDE = 64


class FeaturesUnreadable(ValueError):
    """Stored feature bytes that are not in the format this code writes."""


@dataclass(frozen=True, slots=True)
class LocalFeatures:
    """Keypoint positions (n×2, x then y, in working-size pixels) and their descriptors
    (n×DESCRIPTOR_BYTES).

    ``width``/``height``: the working size; ``scale``: working size over the image's size.
    """

    points: np.ndarray
    descriptors: np.ndarray
    width: int
    height: int

    def __len__(self) -> int:
        return len(self.descriptors)

    def to_bytes(self) -> bytes:
        positions = np.round(self.points * _POSITION_SCALE).astype("<u2")
        return (
            _HEADER.pack(_FORMAT_VERSION, self.width, self.height)
            + positions.tobytes()
            + np.ascontiguousarray(self.descriptors, dtype=np.uint8).tobytes()
        )

    @classmethod
    def from_bytes(cls, data: bytes) -> LocalFeatures:
        if len(data) < _HEADER.size:
            raise FeaturesUnreadable(f"{len(data)} bytes: shorter than the header")
        version, width, height = _HEADER.unpack_from(data)
        body = len(data) - _HEADER.size
        written = _DESCRIPTOR_BYTES_BY_VERSION.get(version)
        if written is None or body % (4 + written):
            raise FeaturesUnreadable(f"format {version}, {body} bytes of features")
        count = body // (4 + written)
        positions = np.frombuffer(data, "<u2", count * 2, _HEADER.size)
        descriptors = np.frombuffer(data, np.uint8, offset=_HEADER.size + count * 4)
        return cls(
            positions.reshape(count, 2).astype(np.float32) / _POSITION_SCALE,
            np.ascontiguousarray(descriptors.reshape(count, written)[:, :DESCRIPTOR_BYTES]),
            width,
            height,
        )


def extract(
    gray: np.ndarray, limit: int = STORED_FEATURES, *, spread: bool = True
) -> LocalFeatures:
    """``limit`` ORB features of an upright 8-bit grayscale image: spread over the picture
    (:func:`_spread`), or with ``spread=False`` simply the strongest."""
    import cv2  # a quarter of a second to import: only programs that describe images pay it

    working = working_size(gray)
    height, width = working.shape
    if min(height, width) < _MIN_SIDE:  # a strip: ORB's pyramid would shrink it to nothing
        return _none(width, height)
    # A low FAST threshold finds corners in soft, low-contrast photos too; the limit keeps the
    # strongest (spread). A detector per call: OpenCV's are not safe to share between threads.
    detected = limit * _DETECTED_PER_KEPT if spread else limit
    detector = cv2.ORB_create(nfeatures=detected, fastThreshold=10)
    keypoints, descriptors = detector.detectAndCompute(working, None)
    if descriptors is None:  # a flat or tiny picture has no corners to describe
        return _none(width, height)
    points = np.array([keypoint.pt for keypoint in keypoints], dtype=np.float32)
    order = np.argsort([-keypoint.response for keypoint in keypoints], kind="stable")
    if spread:
        order = _spread(order, points, width, height, limit)
    kept = order[:limit]
    described = np.ascontiguousarray(descriptors[kept, :DESCRIPTOR_BYTES])
    return LocalFeatures(points[kept], described, width, height)


def _spread(
    order: np.ndarray, points: np.ndarray, width: int, height: int, limit: int
) -> np.ndarray:
    """``order`` (strongest first) with each cell's features past its cap moved to the end."""
    column = np.minimum(points[order, 0] * _GRID // width, _GRID - 1)
    row = np.minimum(points[order, 1] * _GRID // height, _GRID - 1)
    cell = (row * _GRID + column).astype(np.int64)
    by_cell = np.argsort(cell, kind="stable")
    first_of_cell = np.searchsorted(cell[by_cell], cell[by_cell])
    rank = np.empty(len(order), dtype=np.int64)  # how many stronger ones share its cell
    rank[by_cell] = np.arange(len(order)) - first_of_cell
    within = rank < _CELL_SHARE * limit / _GRID**2
    return np.concatenate([order[within], order[~within]])


def _none(width: int, height: int) -> LocalFeatures:
    return LocalFeatures(
        np.zeros((0, 2), np.float32), np.zeros((0, DESCRIPTOR_BYTES), np.uint8), width, height
    )


def working_size(gray: np.ndarray) -> np.ndarray:
    import cv2

    height, width = gray.shape
    scale = WORKING_SIDE / max(height, width)
    if scale == 1:
        return np.ascontiguousarray(gray)
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    shrink = cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR
    return cv2.resize(gray, size, interpolation=shrink)
