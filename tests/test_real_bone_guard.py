"""Real bone (../shared/ct/real_bone, case 001): every needle called safe stays inside the
reference sacrum from its bone entry to its tip and crosses no reference ilium.

The planner does not segment here (segmenting this case takes minutes): it plans on labels
derived from the reference, made poor on purpose as a segmentation can be, the sacrum with its
holes (canal, foramina) closed over, so the labels call solid bone where the CT shows gaps. The
guard reads the real CT (the bone-only CT with soft tissue around it, as
``sample_ct.bone_only.with_soft_tissue`` makes it), and a safe needle must still pass.
"""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from sample_ct.bone_only import with_soft_tissue
from trajplan import labels as lt
from trajplan.io.files import read_volume_file
from trajplan.planning import PlanOptions, plan_needles
from trajplan.planning.verify import axis_outside_bone
from trajplan.volume import Volume

PAD = 10            # voxels around the reference bones kept in the crop
END_TOLERANCE = 1.0  # mm at the entry and at the tip (about one voxel)


def poor_labels(ref) -> Volume:
    """The reference sacrum with its holes closed (alae beyond 15 mm of the midline), the ilia."""
    sacrum = ref.array == 1
    closed = ndimage.binary_fill_holes(ndimage.binary_closing(sacrum, np.ones((3, 3, 3)), iterations=3) | sacrum)
    out = np.zeros(ref.shape, np.uint8)
    out[closed] = lt.value("sacrum")
    out[(ref.array == 2) & ~closed] = lt.value("ilium_left")
    out[(ref.array == 3) & ~closed] = lt.value("ilium_right")
    idx = np.argwhere(closed)
    x = ref.index_to_world(idx)[:, 0]
    middle = float(np.median(x))
    out[tuple(idx[x > middle + 15].T)] = lt.value("ala_left")
    out[tuple(idx[x < middle - 15].T)] = lt.value("ala_right")
    return ref.with_array(out)


@pytest.fixture(scope="module")
def real_case(shared_ct):
    folder = shared_ct / "real_bone"
    if not (folder / "001_ct.nii.gz").is_file():
        pytest.skip(f"real bone CT not found in {folder}")
    ct, ref = read_volume_file(folder / "001_ct.nii.gz"), read_volume_file(folder / "001_ref.nii.gz")
    hit = np.argwhere(ref.array > 0)
    lo, hi = tuple(np.maximum(hit.min(0) - PAD, 0)), tuple(np.minimum(hit.max(0) + PAD + 1, ref.shape))
    ct, ref = ct.crop(lo, hi), ref.crop(lo, hi)
    return with_soft_tissue(ct, ref.array > 0), ref


def test_safe_needles_stay_in_the_reference_sacrum(real_case):
    ct, ref = real_case
    labels = poor_labels(ref)
    plan = plan_needles(labels, PlanOptions(needles=2, mc_samples=20), ct=ct)
    safe = [n for n in plan["needles"] + plan["alternatives"] if n["safe"]]
    assert plan["outcome"] == "planned" and len(safe) >= 5, plan["warnings"]
    for needle in safe:
        assert needle["ct_guard"]["checked"]
        outside_mm, crosses_ilium = axis_outside_bone(needle, ref, forbidden=(2, 3), end_tolerance_mm=END_TOLERANCE,
                                                      from_reference_entry=True)
        assert not crosses_ilium, (needle["technique"], needle["side"], "ilium")
        assert outside_mm == 0.0, (needle["technique"], needle["side"], needle["entry_lps"], needle["tip_lps"],
                                   f"{outside_mm:.2f} mm outside the sacrum")
