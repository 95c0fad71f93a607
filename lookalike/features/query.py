"""Everything the robust search needs from a query image, taken from its one decode."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from lookalike.features.verify import QueryFeatures, describe_query
from lookalike.features.views import View, views


@dataclass(frozen=True, slots=True)
class QueryDescription:
    views: list[View]  # its hashes mirrored, turned and trimmed
    features: QueryFeatures


def describe(
    gray: np.ndarray, size: tuple[int, int], hashes: Mapping[str, int]
) -> QueryDescription:
    """``gray``: the upright grayscale pixels ``hashes`` were taken from; ``size``: the
    image's."""
    return QueryDescription(views(gray, hashes), describe_query(gray, size))
