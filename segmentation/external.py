"""External masks: a TotalSegmentator result (folder of masks or multilabel file), or any
binary sacrum mask, brought onto the CT's grid."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from trajplan.errors import InputError
from trajplan.io.files import read_volume_file
from trajplan.volume import Volume

log = logging.getLogger("trajplan")

# TotalSegmentator v2 "total" task: our name -> (mask file stems, multilabel class ids).
TOTALSEGMENTATOR = {
    "sacrum": (("sacrum", "vertebrae_S1"), (25, 26)),
    "L5": (("vertebrae_L5",), (27,)),
    "ilium_left": (("hip_left",), (77,)),
    "ilium_right": (("hip_right",), (78,)),
}


def mask_on_grid(mask: Volume, ct: Volume, name: str) -> np.ndarray:
    """A binary mask resampled (nearest) onto ``ct``'s grid; warns when it had to be resampled.

    Raises
    ------
    InputError
        If the mask is empty or does not overlap the CT.
    """
    binary = mask.with_array((np.asarray(mask.array) > 0.5).astype(np.uint8))
    if not binary.array.any():
        raise InputError(f"the {name} mask is empty")
    if binary.same_geometry(ct, tol_mm=1e-2):
        return binary.array.astype(bool)
    lo, hi = binary.world_bounds()
    clo, chi = ct.world_bounds()
    if np.any(hi < clo) or np.any(lo > chi):
        raise InputError(f"the {name} mask does not overlap the CT (mask spans {np.round(lo).tolist()}.."
                         f"{np.round(hi).tolist()} mm, CT {np.round(clo).tolist()}..{np.round(chi).tolist()} mm)")
    log.warning("the %s mask is on another grid than the CT: resampled (nearest neighbour)", name)
    resampled = binary.resample_onto(ct, interpolator="nearest").array.astype(bool)
    if not resampled.any():
        raise InputError(f"the {name} mask does not overlap the CT")
    return resampled


def load_totalsegmentator(path: str | Path, ct: Volume) -> dict[str, np.ndarray]:
    """Masks of the sacrum, ilia and L5 from TotalSegmentator output, on the CT grid.

    ``path`` is an output folder (``sacrum.nii.gz``, ``vertebrae_S1.nii.gz``,
    ``hip_left.nii.gz``, ``hip_right.nii.gz``, ``vertebrae_L5.nii.gz``) or its
    multilabel file (TotalSegmentator v2 class ids). Missing neighbours are left out;
    a missing sacrum is an error.
    """
    path = Path(path)
    out: dict[str, np.ndarray] = {}
    if path.is_dir():
        for name, (stems, _) in TOTALSEGMENTATOR.items():
            files = [path / f"{stem}.nii.gz" for stem in stems if (path / f"{stem}.nii.gz").is_file()]
            masks = [mask_on_grid(read_volume_file(f), ct, f.name) for f in files
                     if np.asarray(read_volume_file(f).array).any()]
            if masks:
                out[name] = np.logical_or.reduce(masks)
    elif path.is_file():
        multilabel = read_volume_file(path)
        values = np.rint(multilabel.array).astype(np.int32)
        for name, (_, ids) in TOTALSEGMENTATOR.items():
            if np.isin(values, ids).any():
                out[name] = mask_on_grid(multilabel.with_array(np.isin(values, ids).astype(np.uint8)), ct, name)
    else:
        raise InputError(f"{path}: no such file or folder")
    if "sacrum" not in out:
        raise InputError(f"{path}: no TotalSegmentator sacrum mask found (sacrum.nii.gz, or class 25 "
                         "of a multilabel file)")
    return out
