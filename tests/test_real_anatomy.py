"""Segmentation on real sacra (../shared/ct/real_bone, skipped where absent).

The real bone-only CTs are made whole CTs (soft tissue in a body ellipse, air outside) by
sample_ct.bone_only and cropped to the bones plus 30 mm, a targeted field over the pelvis.
Figures against the reference sacrum (solid bone; canal, foramina and joint gaps are holes).
"""

from __future__ import annotations

import numpy as np
import pytest

from sample_ct.bone_only import real_case
from segmentation.metrics import dice
from segmentation.pipeline import segment
from trajplan import labels as lt

CROP_MM = 30.0


@pytest.fixture(scope="module")
def real_001(shared_ct):
    folder = shared_ct / "real_bone"
    if not (folder / "001_ct.nii.gz").is_file():
        pytest.skip(f"real bone data not found in {folder}")
    ct, ref = real_case(folder, "001")
    hit = np.argwhere(ref.array > 0)
    pad = np.ceil(CROP_MM / ct.spacing).astype(int)
    lower = tuple(np.maximum(hit.min(axis=0) - pad, 0))
    upper = tuple(np.minimum(hit.max(axis=0) + pad + 1, ct.shape))
    ct, ref = ct.crop(lower, upper), ref.crop(lower, upper)
    return ct, ref, segment(ct)


def test_real_sacrum_found_with_its_alae_and_kept_off_the_ilia(real_001):
    ct, ref, seg = real_001
    sacral = lt.sacral_bone(seg.labels)
    truth = ref.array == 1
    # 0.688 before the dark-marrow enclosure (54 % of the sacrum found, the alae hollow)
    assert dice(sacral, truth) >= 0.87
    assert (sacral & np.isin(ref.array, (2, 3))).sum() <= 0.01 * sacral.sum()
    ml = ct.voxel_volume_ml
    for side in lt.SIDES:
        assert lt.mask(seg.labels, f"ala_{side}").sum() * ml >= 15.0, side


def test_real_scan_is_not_flagged_for_what_is_not_there(real_001):
    _, _, seg = real_001
    reason = seg.report["partial_reason"] or ""
    assert "contrast-filled bowel" not in reason          # there is no bowel in this scan
    assert "no L5 was separated" not in reason            # nor L5: the bone-only source kept the pelvis alone
    assert any("L5 is not in the field of view" in note for note in seg.report["notes"])


@pytest.mark.parametrize("case, scan", [("003", "2mm"), ("001", "3mm"), ("003", "3mm")])
def test_a_sacrum_known_to_be_wrong_is_flagged(shared_ct, case, scan):
    # A result that is half the sacrum, or mostly an ilium, is never passed on silently
    # (003 at 2 mm: a 32 ml piece of the left ilium was named sacrum, unflagged).
    folder = shared_ct / "real_bone"
    if not (folder / f"{case}_ct.nii.gz").is_file():
        pytest.skip(f"real bone data not found in {folder}")
    ct, ref = real_case(folder, case, scan)
    seg = segment(ct)
    sacral = lt.sacral_bone(seg.labels)
    truth = ref.array == 1
    wrong = ((sacral & np.isin(ref.array, (2, 3))).sum() > 0.2 * sacral.sum()
             or sacral.sum() < 0.5 * truth.sum())
    if wrong:
        assert seg.report["partial"] and "the sacrum found" in seg.report["partial_reason"], seg.report
