"""Agreement of a label map with a reference: Dice, surface distances, detection, recall."""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from trajplan import labels as lt
from trajplan.volume import Volume

FALSE_FRACTURE_MM = 5.0     # fracture labelled farther than this from a true fracture line is false


def dice(a: np.ndarray, b: np.ndarray) -> float:
    """Dice coefficient of two boolean masks (1.0 when both are empty)."""
    total = int(a.sum()) + int(b.sum())
    return 1.0 if total == 0 else 2.0 * int(np.logical_and(a, b).sum()) / total


def enclosed_canal(sacrum: np.ndarray, spacing: np.ndarray, within_mm: float = 15.0) -> np.ndarray:
    """The canal of a solid reference ``sacrum`` mask (the canal and foramina holes in it), where its
    ring is closed: the holes of its axial sections (last axis head to foot) within ``within_mm`` left
    to right (first axis) of its centre. For validation against reference masks that have no canal
    label of their own.

    Parameters
    ----------
    sacrum : np.ndarray
        Boolean reference sacrum.
    spacing : np.ndarray
        Voxel size (mm) per axis.
    within_mm : float
        How far from the sacrum's centre, left to right, a hole counts.
    """
    holes = np.zeros_like(sacrum, dtype=bool)
    for z in np.flatnonzero(sacrum.any(axis=(0, 1))):
        holes[..., z] = ndimage.binary_fill_holes(sacrum[..., z]) & ~sacrum[..., z]
    centre = np.argwhere(sacrum)[:, 0].mean()
    return holes & (np.abs(np.arange(sacrum.shape[0]) - centre) * spacing[0] < within_mm)[:, None, None]


def surface_distances(a: np.ndarray, b: np.ndarray, spacing: np.ndarray) -> np.ndarray:
    """Distances (mm) from the surface voxels of ``a`` to the surface of ``b``, and back."""
    if not a.any() or not b.any():
        return np.array([np.inf])
    sa = a & ~ndimage.binary_erosion(a)
    sb = b & ~ndimage.binary_erosion(b)
    to_b = ndimage.distance_transform_edt(~sb, sampling=spacing)
    to_a = ndimage.distance_transform_edt(~sa, sampling=spacing)
    return np.concatenate([to_b[sa], to_a[sb]])


def compare(result: Volume, reference: Volume) -> dict[str, float]:
    """The validation figures of a segmentation against ground truth on the same grid.

    ``fracture_false_ml`` is the labelled fracture farther than FALSE_FRACTURE_MM from any true one;
    ``dice_lesion`` is given where the truth holds a lesion;
    ``foramina_named`` counts the true foramen levels (of ``foramina_levels``) whose found voxels
    mostly carry the level's own name (S1 found as S1, not as S2).
    """
    r, g = result.array, reference.array
    out = {
        "dice_sacral_bone": dice(lt.sacral_bone(r), lt.sacral_bone(g)),
        "dice_ala": dice(lt.mask(r, "ala_left", "ala_right"), lt.mask(g, "ala_left", "ala_right")),
        "dice_canal": dice(lt.mask(r, "canal"), lt.mask(g, "canal")),
        "dice_foramina": dice(lt.mask(r, *lt.FORAMINA), lt.mask(g, *lt.FORAMINA)),
    }
    detected = 0
    for level in ("S1", "S2", "S3"):
        for side in ("left", "right"):
            truth = lt.mask(g, f"foramen_{level}_{side}")
            detected += bool((truth & lt.mask(r, *lt.FORAMINA)).any())
    out["foramina_S1_S3_detected"] = detected
    foramen_values = [lt.value(name) for name in lt.FORAMINA]
    named = present = 0
    for name in lt.FORAMINA:       # a true foramen level is named right when most of it found carries its name
        found = r[lt.mask(g, name)]
        if found.size:
            present += 1
            found = found[np.isin(found, foramen_values)]
            named += bool(found.size) and lt.name(int(np.bincount(found).argmax())) == name
    out["foramina_named"], out["foramina_levels"] = named, present
    d = surface_distances(lt.mask(r, "anterior_cortex"), lt.mask(g, "anterior_cortex"), result.spacing)
    out["cortex_msd_mm"] = float(d.mean())
    out["cortex_hd95_mm"] = float(np.percentile(d, 95))
    truth, found = lt.mask(g, "fracture"), lt.mask(r, "fracture")
    if truth.any():
        near = ndimage.binary_dilation(found, iterations=1)
        out["fracture_recall"] = float((truth & near).sum() / truth.sum())
    if lt.mask(g, "lesion").any():
        out["dice_lesion"] = dice(lt.mask(r, "lesion"), lt.mask(g, "lesion"))
    beyond = ndimage.distance_transform_edt(~truth, sampling=result.spacing) > FALSE_FRACTURE_MM if truth.any() \
        else np.ones_like(truth)
    out["fracture_false_ml"] = float((found & beyond).sum() * result.voxel_volume_ml)
    return out
