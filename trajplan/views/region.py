"""The part of the CT the views need: the pelvis around the sacrum and every needle path."""

from __future__ import annotations

import numpy as np

from trajplan import labels as lt
from trajplan.volume import Volume

MARGIN_MM = 20.0


def view_region(ct: Volume, labels: Volume, plan: dict, *, margin_mm: float = MARGIN_MM) -> Volume:
    """``ct`` cropped to the sacral bone, the ilia and the needles (skin to tip), plus ``margin_mm``.

    The crop keeps the CT's own grid (spacing, direction; origin moved), so the views
    drawn from it line up with the label map in world coordinates. It is written to the
    plan folder as ``ct_roi.nii.gz`` for ``trajplan render``.
    """
    idx = np.argwhere(lt.mask(labels, *lt.SACRAL_BONE, "ilium_left", "ilium_right"))
    points = [np.asarray(n[k], float) for n in plan.get("needles", [])
              for k in ("skin_entry_lps", "entry_lps", "tip_lps") if n.get(k) is not None]
    if points:
        idx = np.vstack([idx, ct.world_to_index(np.asarray(points))])
    if not len(idx):
        return ct
    pad = np.ceil(margin_mm / ct.spacing)
    lower = np.floor(idx.min(axis=0) - pad).astype(int)
    upper = np.ceil(idx.max(axis=0) + pad + 1).astype(int)
    return ct.crop(tuple(lower), tuple(upper))
