"""Tell a CT in Hounsfield units from other images (MR, raw CT without its rescale) by its values.

A CT in HU has soft tissue and water near 0-80 HU, fat near -150..-50 HU and/or air
near -1000 HU, and values mostly within -1024..3071. A targeted reconstruction whose
whole field lies inside the body holds no air, but still holds fat and soft tissue.
An MR volume has non-negative intensities (background 0): no fat or air below zero.
"""

from __future__ import annotations

import numpy as np

from trajplan.errors import InputError

FAT_OR_AIR_HU = (-1100.0, -50.0)     # fat (-150..-50) and air (-1000); below is padding
SOFT_TISSUE_HU = (-30.0, 100.0)      # water, muscle, organs (0-80) with noise
HIGHEST_CT_HU = 3100.0               # 12-bit CT range ends at 3071 (metal may exceed it)
MIN_FAT_OR_AIR = 0.01                # fractions of the voxels
MIN_SOFT_TISSUE = 0.03
MAX_ABOVE_CT_RANGE = 0.05


def hu_fractions(values: np.ndarray) -> dict[str, float]:
    """Fractions of ``values`` that are fat or air, soft tissue, and above the CT range."""
    n = max(values.size, 1)

    def share(low: float, high: float) -> float:
        return float(np.count_nonzero((values >= low) & (values <= high))) / n

    return {
        "fat_or_air": share(*FAT_OR_AIR_HU),
        "soft_tissue": share(*SOFT_TISSUE_HU),
        "above_range": float(np.count_nonzero(values > HIGHEST_CT_HU)) / n,
    }


def check_hounsfield(values: np.ndarray, source: str) -> None:
    """Refuse finite, non-constant values that are not those of a CT in Hounsfield units.

    Parameters
    ----------
    values : ndarray
        The voxel values (or a regular sample of them), all finite.
    source : str
        The input's name for the message.

    Raises
    ------
    InputError
        When there is no fat or air (no mass below -50 HU, as in MR), no soft tissue
        near 0-80 HU, or many values above the CT range.
    """
    low, high = float(values.min()), float(values.max())
    found = hu_fractions(values)
    if found["fat_or_air"] < MIN_FAT_OR_AIR:
        reason = (f"{100 * found['fat_or_air']:.1f} % of the voxels in {FAT_OR_AIR_HU[0]:g}..{FAT_OR_AIR_HU[1]:g}"
                  f" (no fat or air)")
    elif found["soft_tissue"] < MIN_SOFT_TISSUE:
        reason = (f"{100 * found['soft_tissue']:.1f} % of the voxels in {SOFT_TISSUE_HU[0]:g}.."
                  f"{SOFT_TISSUE_HU[1]:g} (no soft tissue)")
    elif found["above_range"] > MAX_ABOVE_CT_RANGE:
        reason = f"{100 * found['above_range']:.1f} % of the voxels above {HIGHEST_CT_HU:g}"
    else:
        return
    raise InputError(
        f"{source}: values range {low:g}..{high:g} with {reason}: this does not look like a CT in "
        "Hounsfield units (MR, or a CT stored without its rescale?)"
    )
