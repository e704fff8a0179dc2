"""Step 3d: bones whose fatty marrow, darker than soft tissue, hides the joints are split by their
marrow compartments instead of refused: on hand-built bones, and on a real sacrum with its marrow made
fatty (../shared/ct/real_bone, skipped where absent)."""

from __future__ import annotations

import numpy as np
import pytest

from sample_ct.bone_only import real_case, scanned_reference
from segmentation.bone import solid_bone
from segmentation.metrics import dice
from segmentation.pipeline import segment
from segmentation.separation import FATTY_MARROW_CAVEAT, split_bones, split_bones_by_marrow
from trajplan import labels as lt
from trajplan.errors import NoSacrumError
from trajplan.planning import PlanOptions, plan_needles
from trajplan.planning.verify import axis_outside_bone

SPACING = np.array([1.0, 1.0, 1.0])


def _fatty_pelvis() -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """(smooth CT, bones) on a 1 mm grid (L, P, S), midline at x = 85 mm: a 70 mm wide sacrum with a
    40 mm wide ilium against each side, each bone a 2 mm cortex of 600 HU around marrow of 0 HU, in
    soft tissue of 35 HU. The sacrum's cortex lies against each ilium's: no joint gap shows."""
    shape = (170, 60, 90)
    bones = {name: np.zeros(shape, bool) for name in ("sacrum", "ilium_left", "ilium_right")}
    bones["sacrum"][50:120, 15:45, 30:70] = True
    bones["ilium_left"][120:160, 5:55, 10:85] = True
    bones["ilium_right"][10:50, 5:55, 10:85] = True
    smooth = np.full(shape, 35.0, np.float32)
    for mask in bones.values():
        smooth[mask] = 600.0
        lo, hi = np.argwhere(mask).min(axis=0) + 2, np.argwhere(mask).max(axis=0) - 1
        smooth[lo[0]:hi[0], lo[1]:hi[1], lo[2]:hi[2]] = 0.0
    return smooth, bones


def test_bones_whose_cortices_touch_are_split_by_their_marrow_compartments():
    smooth, bones = _fatty_pelvis()
    solid, _ = solid_bone(smooth, SPACING)
    with pytest.raises(NoSacrumError, match="told apart"):        # the filled shells erode as one plate
        split_bones(smooth, solid, SPACING, midline_mm=85.0)
    split = split_bones_by_marrow(smooth, solid, SPACING, midline_mm=85.0)
    for name, truth in bones.items():
        assert dice(getattr(split, name), truth) >= 0.95, name
    assert split.fatty_marrow and split.caveat == FATTY_MARROW_CAVEAT


def test_without_marrow_compartments_apart_the_bones_are_still_refused():
    # One marrow space runs through all three bones (no cortex between them): nothing tells them apart.
    smooth, bones = _fatty_pelvis()
    smooth[12:158, 17:43, 32:68] = 0.0
    solid, _ = solid_bone(smooth, SPACING)
    with pytest.raises(NoSacrumError, match="told apart"):
        split_bones_by_marrow(smooth, solid, SPACING, midline_mm=85.0)


@pytest.mark.slow
def test_a_real_sacrum_in_fatty_marrow_is_segmented_flagged_and_planned_on_safely(shared_ct):
    # Real case 001 with its trabecular bone turned to fatty marrow (a median of 0 HU, below the soft
    # tissue's 35): refused before ("one bone piece 298 mm wide spans the midline"). Split by its
    # marrow compartments: sacral Dice 0.805 (0.738-0.812 over three noise draws), 5-6 needles called
    # safe, none leaving the reference sacrum or crossing an ilium.
    folder = shared_ct / "real_bone"
    if not (folder / "001_ct.nii.gz").is_file():
        pytest.skip(f"real bone data not found in {folder}")
    ct, ref = real_case(folder, "001", "fatty")
    seg = segment(ct)
    sacral = lt.sacral_bone(seg.labels)
    assert dice(sacral, ref.array == 1) >= 0.78
    assert (sacral & np.isin(ref.array, (2, 3))).sum() < 0.01 * sacral.sum()
    assert seg.report["partial"] and FATTY_MARROW_CAVEAT in seg.report["partial_reason"]
    plan = plan_needles(seg.labels, PlanOptions(needles=3, mc_samples=50), ct=ct,
                        lesion_uncertain=seg.lesion_uncertain, implausible=seg.implausible_reason)
    safe = [n for n in plan["needles"] + plan["alternatives"] if n["safe"]]
    assert len(safe) >= 3, plan["warnings"]
    native = scanned_reference(folder, "001", "fatty")
    for needle in safe:
        outside_mm, crosses_ilium = axis_outside_bone(needle, native, forbidden=(2, 3), end_tolerance_mm=1.5,
                                                      from_reference_entry=True)
        assert outside_mm == 0.0 and not crosses_ilium, (needle["technique"], needle["side"], outside_mm)
