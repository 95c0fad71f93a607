"""Geometric verification: is a candidate the query's picture, and how does it differ?

Descriptors are paired by Lowe's ratio test, each candidate feature used once, and a
similarity (turn, scale, shift) is fitted with RANSAC. Different photos of one scene share
textures but not one rigid layout, so the count of features agreeing with the fit (inliers)
separates copies from look-alikes. MIN_INLIERS is set from `lookalike bench quality` at the
stored 100: over 816 edited copies of 48 real photos, no unrelated photo kept 10 inliers, and
97% of the copies kept 15 or more.

Two shots taken from nearly one place (a stereo pair) keep as many inliers as a crop (15 to 28
in bench quality): one layer of the scene fits. What gives them away is parallax: near things moved
against far ones, so many other pairs land a few pixels off the fit, where a copy's pairs
that miss it are mismatches and land anywhere (PARALLAX_PX; measured in docs/benchmarks.md).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from lookalike.features.orb import QUERY_FEATURES, LocalFeatures, extract, working_size
from lookalike.features.relation import Relation, relation_from_transform

MIN_INLIERS = 15
RATIO = 0.8
_REPROJECTION_PX = 4.0  # at the working size
_SCALES = (0.1, 10.0)  # a fit outside these collapses features onto a few points
_MIN_PAIRS = 6
# Pairs this far (working pixels) from an affine fit (which absorbs a stretch) are parallax,
# not noise or mismatches: a random mismatch lands in the band ~1.4% of the time. A fit is
# another shot when they number at least the larger of PARALLAX_PAIRS and a fifth of its
# inliers. Over bench quality's fits of 15 inliers or more, this refuses 29 of the stereo
# pair's 32 and 1 of 1,792 true ones (docs/benchmarks.md).
PARALLAX_PX = (6.0, 30.0)
PARALLAX_PAIRS = 4
PARALLAX_SHARE = 0.2
_DESCRIBED = 2 * MIN_INLIERS  # fewer features than this: their silence proves nothing


@dataclass(frozen=True, slots=True)
class QueryFeatures:
    """The query's features, upright and mirrored (ORB descriptors do not survive a mirror),
    and the query's size in pixels."""

    upright: LocalFeatures
    mirrored: LocalFeatures
    size: tuple[int, int]


def describe_query(gray: np.ndarray, size: tuple[int, int]) -> QueryFeatures:
    working = working_size(gray)  # once: a mirror of the small copy, not of the whole picture
    return QueryFeatures(
        # 500 cover a query: spreading them too cost ~5 ms for one more copy found in 816
        extract(working, QUERY_FEATURES, spread=False),
        extract(np.fliplr(working), QUERY_FEATURES, spread=False),
        size,
    )


def relate(
    query: QueryFeatures, candidate: LocalFeatures, candidate_size: tuple[int, int]
) -> Relation | None:
    """The relation of a candidate to the query, if a fit confirms it is the same picture."""
    best: tuple[_Fit, bool] | None = None
    for mirrored, described in ((False, query.upright), (True, query.mirrored)):
        fit = _fit(described, candidate)
        if fit is not None and (best is None or fit.inliers > best[0].inliers):
            best = (fit, mirrored)
    if best is None or best[0].inliers < MIN_INLIERS or best[0].another_shot():
        return None
    fit, mirrored = best
    return relation_from_transform(
        "features",
        _in_image_pixels(fit.working_map, query, candidate, candidate_size, mirrored=mirrored),
        query.size,
        candidate_size,
        mirrored=mirrored,
        inliers=fit.inliers,
    )


def contradicts(
    query: QueryFeatures, candidate: LocalFeatures, candidate_size: tuple[int, int]
) -> bool:
    """Whether both images are described well enough for the features to say no, and do."""
    described = min(len(query.upright), len(candidate)) >= _DESCRIBED
    return described and relate(query, candidate, candidate_size) is None


@dataclass(frozen=True, slots=True)
class _Fit:
    inliers: int
    working_map: np.ndarray  # query working pixels → candidate working pixels
    parallax: int  # pairs in the PARALLAX_PX band of an affine fit

    def another_shot(self) -> bool:
        return self.parallax >= max(PARALLAX_PAIRS, PARALLAX_SHARE * self.inliers)


def _fit(query: LocalFeatures, candidate: LocalFeatures) -> _Fit | None:
    import cv2

    if len(query) < 2 or len(candidate) < 2:
        return None
    pairs = cv2.BFMatcher(cv2.NORM_HAMMING).knnMatch(query.descriptors, candidate.descriptors, k=2)
    closest: dict[int, tuple[float, int]] = {}  # candidate feature → (distance, query feature)
    for pair in pairs:
        if len(pair) == 2 and pair[0].distance < RATIO * pair[1].distance:
            match = pair[0]
            if match.trainIdx not in closest or match.distance < closest[match.trainIdx][0]:
                closest[match.trainIdx] = (match.distance, match.queryIdx)
    if len(closest) < _MIN_PAIRS:
        return None
    source = query.points[[q for _, q in closest.values()]]
    target = candidate.points[list(closest)]
    working_map, inlier_mask = cv2.estimateAffinePartial2D(
        source, target, method=cv2.RANSAC, ransacReprojThreshold=_REPROJECTION_PX
    )
    if working_map is None:
        return None
    scale = float(np.hypot(working_map[0, 0], working_map[1, 0]))
    if not _SCALES[0] < scale < _SCALES[1]:
        return None
    return _Fit(int(inlier_mask.sum()), working_map, _parallax(source, target))


def _parallax(source: np.ndarray, target: np.ndarray) -> int:
    """How many pairs land in the PARALLAX_PX band around the best affine fit."""
    import cv2

    affine, _ = cv2.estimateAffine2D(
        source, target, method=cv2.RANSAC, ransacReprojThreshold=_REPROJECTION_PX
    )
    if affine is None:
        return 0
    off = np.linalg.norm(source @ affine[:, :2].T + affine[:, 2] - target, axis=1)
    return int(((off > PARALLAX_PX[0]) & (off <= PARALLAX_PX[1])).sum())


def _in_image_pixels(
    working_map: np.ndarray,
    query: QueryFeatures,
    candidate: LocalFeatures,
    candidate_size: tuple[int, int],
    *,
    mirrored: bool,
) -> np.ndarray:
    """The working-size map re-expressed from query image pixels to match image pixels."""
    width, height = query.size
    into_query = np.diag([query.upright.width / width, query.upright.height / height, 1.0])
    if mirrored:  # the mirrored description's x runs the other way
        into_query = np.array([[-1.0, 0, query.upright.width], [0, 1, 0], [0, 0, 1]]) @ into_query
    out_of_candidate = np.diag(
        [candidate_size[0] / candidate.width, candidate_size[1] / candidate.height, 1.0]
    )
    full = out_of_candidate @ np.vstack([working_map, (0, 0, 1)]) @ into_query
    return full[:2]
