"""How a match differs from the query, the way TinEye reports it.

A relation describes the match *as the query transformed*: "the match is the query mirrored,
turned 90° counterclockwise, showing 70% of it". ``transform`` maps query pixels to match
pixels; the two regions outline, on each image, the part the other one also shows.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

Polygon = list[tuple[float, float]]
_NOTICEABLE_DEGREES = 1.5  # a fit on a few hundred features wobbles by about a degree
_WHOLE_PERCENT = 97  # overlaps above this are the whole picture, give or take a fit's error


@dataclass(frozen=True, slots=True)
class Relation:
    method: str  # "hash": a global hash of a view of the query; "features": local features
    mirrored: bool
    rotation: float  # degrees counterclockwise, in (-180, 180]
    scale: float  # match pixels per query pixel
    query_overlap_percent: float  # share of the query that the match shows
    target_overlap_percent: float  # share of the match that shows the query
    transform: np.ndarray  # 2×3 affine: query pixel (x, y, 1) → match pixel
    query_region: Polygon
    match_region: Polygon
    inliers: int | None = None  # features that agree with the fit (feature matches only)

    @property
    def edits(self) -> list[str]:
        """The differences in words, as the results page lists them."""
        words = []
        if self.mirrored:
            words.append("mirrored")
        if abs(self.rotation) >= _NOTICEABLE_DEGREES:
            words.append(f"rotated {_degrees(self.rotation)}")
        if self.query_overlap_percent < _WHOLE_PERCENT:
            words.append(f"shows {self.query_overlap_percent:.0f}% of the query")
        if self.target_overlap_percent < _WHOLE_PERCENT:
            words.append(f"the query is {self.target_overlap_percent:.0f}% of it")
        return words

    def to_json(self) -> dict[str, object]:
        return {
            "method": self.method,
            "mirrored": self.mirrored,
            "rotation": round(self.rotation, 1) + 0.0,  # never -0.0
            "scale": round(self.scale, 4),
            "query_overlap_percent": round(self.query_overlap_percent, 1),
            "target_overlap_percent": round(self.target_overlap_percent, 1),
            "transform": [[round(float(v), 4) for v in row] for row in self.transform],
            "query_region": [[round(x, 1), round(y, 1)] for x, y in self.query_region],
            "match_region": [[round(x, 1), round(y, 1)] for x, y in self.match_region],
            "inliers": self.inliers,
            "edits": self.edits,
        }


def _degrees(rotation: float) -> str:
    turn = "counterclockwise" if rotation > 0 else "clockwise"
    return f"{abs(rotation):.0f}° {turn}" if round(abs(rotation)) != 180 else "180°"


def relation_from_transform(
    method: str,
    transform: np.ndarray,
    query_size: tuple[int, int],
    match_size: tuple[int, int],
    *,
    mirrored: bool,
    inliers: int | None = None,
) -> Relation:
    """The relation a query-to-match affine map implies, for images of these (w, h) sizes."""
    import cv2

    linear = transform[:, :2]
    determinant = float(np.linalg.det(linear))
    scale = float(np.sqrt(abs(determinant)))
    # Image y grows downwards, so a counterclockwise turn has a negative angle in its terms.
    # A mirrored map is a reflection composed with a turn: take the turn of the unmirrored part.
    unmirrored = linear @ np.diag([-1.0, 1.0]) if mirrored else linear
    rotation = -float(np.degrees(np.arctan2(unmirrored[1, 0], unmirrored[0, 0])))
    if rotation <= -180 + 1e-6:
        rotation += 360
    query_corners = _rectangle(*query_size)
    mapped = cv2.transform(query_corners[None], transform)[0]
    area, overlap = cv2.intersectConvexConvex(
        _convex(mapped), _rectangle(*match_size).astype(np.float32)
    )
    region = overlap.reshape(-1, 2) if overlap is not None and area > 0 else np.zeros((0, 2))
    back = cv2.transform(region[None].astype(np.float64), cv2.invertAffineTransform(transform))
    query_area = query_size[0] * query_size[1] * scale * scale
    return Relation(
        method=method,
        mirrored=mirrored,
        rotation=rotation,
        scale=scale,
        query_overlap_percent=min(100.0, 100 * area / query_area) if query_area else 0.0,
        target_overlap_percent=min(100.0, 100 * area / (match_size[0] * match_size[1])),
        transform=transform,
        query_region=[(float(x), float(y)) for x, y in back.reshape(-1, 2)],
        match_region=[(float(x), float(y)) for x, y in region],
        inliers=inliers,
    )


def _rectangle(width: float, height: float) -> np.ndarray:
    return np.array([(0, 0), (width, 0), (width, height), (0, height)], dtype=np.float64)


def _convex(points: np.ndarray) -> np.ndarray:
    """The points in the winding order intersectConvexConvex expects."""
    import cv2

    return cv2.convexHull(points.astype(np.float32))
