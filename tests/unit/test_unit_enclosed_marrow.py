"""Step 5b on a hand-built sacrum: the dark marrow its cortex encloses is filled, its lumens are not."""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from segmentation.sacral import FORAMEN_OPENING_MM, MARROW_CLOSE_MM, _with_enclosed_marrow

SPACING = np.ones(3)
SOFT_HU, GAS_HU = 35.0, -900.0


def _hollow_sacrum() -> dict[str, np.ndarray]:
    """A 40 x 30 x 40 mm box of cortex 2 mm thick (canonical axes L, P, S) around marrow as dark as
    soft tissue, with a 5 x 5 mm gap in its dorsal wall (a 3-D fill leaks out through it), a
    foramen running front to back through it, a gas pocket inside and an ilium beside it."""
    shape = (70, 60, 60)
    box = np.zeros(shape, dtype=bool)
    box[10:50, 15:45, 10:50] = True
    inside = ndimage.binary_erosion(box, iterations=2)
    cortex = box & ~inside
    cortex[28:33, 43:45, 28:33] = False                    # the gap
    foramen = np.zeros(shape, dtype=bool)
    foramen[18:22, 15:45, 18:22] = True
    gas = np.zeros(shape, dtype=bool)
    gas[38:42, 25:29, 38:42] = True
    ilium = np.zeros(shape, dtype=bool)
    ilium[54:64, 10:50, 10:50] = True
    smooth = np.full(shape, SOFT_HU, dtype=np.float32)
    smooth[cortex | ilium] = 600.0
    smooth[gas] = GAS_HU
    return {"sacrum": cortex & ~foramen, "inside": inside, "foramen": foramen, "gas": gas, "ilium": ilium,
            "smooth": smooth}


def test_the_marrow_behind_a_gap_is_filled_and_the_foramen_is_not():
    case = _hollow_sacrum()
    grown, mouths = _with_enclosed_marrow(case["sacrum"], case["smooth"], case["ilium"], case["foramen"], 0.0, SPACING)
    added = grown & ~case["sacrum"]
    near_foramen = ndimage.distance_transform_edt(~case["foramen"], sampling=SPACING) <= FORAMEN_OPENING_MM
    marrow = case["inside"] & ~near_foramen & ~case["gas"]
    assert grown[marrow].mean() > 0.99, grown[marrow].mean()
    assert not (added & case["foramen"]).any()
    assert not (added & near_foramen).any()
    assert mouths.any() and not (mouths & ~near_foramen).any() and not (mouths & added).any()
    assert not (added & case["gas"]).any()
    assert not (added & case["ilium"]).any()
    # Nothing outside the box's cortex is taken (the gap itself, 2 mm deep, is closed).
    outside = ~case["inside"] & ~case["sacrum"]
    assert added[outside].sum() <= 5 * 5 * 2, added[outside].sum()


def test_a_sacrum_open_on_one_side_is_not_filled():
    """A bay open over its whole width encloses no marrow: only its corners narrower than the
    closing's ball are taken."""
    case = _hollow_sacrum()
    open_side = case["sacrum"].copy()
    open_side[:, 43:45, :] = False                         # the whole dorsal wall removed
    grown, _ = _with_enclosed_marrow(open_side, case["smooth"], case["ilium"], case["foramen"], 0.0, SPACING)
    clear = ndimage.distance_transform_edt(~(open_side | case["foramen"]), sampling=SPACING) > 2 * MARROW_CLOSE_MM
    assert clear[case["inside"]].sum() > 5000
    assert not (grown & clear).any()


def test_the_unfound_rest_of_a_foramen_is_not_filled():
    """A foramen found over half its length: its dark rest, joined to the found half's mouth, is the
    lumen's continuation, not marrow (the marrow around it, brighter than the lumens' threshold,
    is still filled)."""
    case = _hollow_sacrum()
    smooth = case["smooth"].copy()
    smooth[case["inside"] & ~case["foramen"] & ~case["gas"]] = 120.0      # marrow brighter than the lumens
    found = case["foramen"].copy()
    found[:, 30:, :] = False
    rest = case["foramen"] & ~found
    grown, _ = _with_enclosed_marrow(case["sacrum"] | (case["foramen"] & ~found & ~case["inside"]), smooth,
                                     case["ilium"], found, 80.0, SPACING)
    assert not (grown & rest & case["inside"]).any()
    far = case["inside"] & (ndimage.distance_transform_edt(~case["foramen"], sampling=SPACING) > 3.0) & ~case["gas"]
    assert grown[far].mean() > 0.99
