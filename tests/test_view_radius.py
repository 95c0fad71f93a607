"""Mirrored and turned views are searched within a narrower radius than the query itself."""

from __future__ import annotations

import numpy as np
from PIL import ImageOps

from lookalike.features.views import TURNED_MAX_DISTANCE, views
from tests.images import photo


def test_only_mirrored_and_turned_views_narrow_the_radius() -> None:
    framed = ImageOps.expand(photo(3, (320, 240)), border=20, fill="white").convert("L")

    found = views(np.asarray(framed), {})

    radii = {
        (view.mirrored, view.turns, view.box is not None): view.max_distance(10) for view in found
    }
    assert radii.pop((False, 0, False)) == 10  # the query as it is
    assert radii.pop((False, 0, True)) == 10  # its border trimmed
    assert set(radii.values()) == {TURNED_MAX_DISTANCE}
    assert len(radii) == 7
    assert found[1].max_distance(4) == 4  # never wider than the query's own
