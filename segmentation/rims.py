"""The partial-volume rims of the sacral bone's lumens and of its outer surface.

The canal and foramina are found below thresholds set well under the trabecular bone (to
keep its dark speckle out), and the bone's outer surface by a cortex threshold below half
the cortex's HU, both on a smoothed CT. Where a bright cortex borders a lumen or the soft
tissue around the bone, the voxels that partial volume lifts part of the way from the dark
side to the cortex stay on the bone's side of those thresholds: at 1 mm or finer the canal
and foramina came out about a voxel narrower all round than they are, and the sacral bone a
voxel thicker. The edge between a dark region and the cortex
is where the CT stands half way between them (the half maximum of a blurred step), so each
dark region takes the bone voxels that touch it through a face when, along that face's axis,
a wall lies within RIM_REACH_MM beyond the voxel and the voxel is darker than half way from
the dark region (its median HU next to the bone) to that wall (the brightest voxel there).

A wall beside a lumen is cortex: at least RIM_WALL_CONTRAST times as far above the dark region as
the trabecular bone is. The rim is as wide as the CT's blur and the smoothing, so a wall farther
than RIM_REACH_MM lifts no rim: in voxels of 2 mm no voxel beyond the edge is that near, and
the bone voxels beside a lumen that are darker than half way to a wall beyond them are dark
trabecular texture, not rim. Against the soft tissue outside the bone no such texture lies, and
a wall need only stand SURFACE_WALL_CONTRAST times as far above the soft tissue as the trabecular
bone: a thin cortex seen through the blur is little brighter than that (real sacra at 0.86-0.97 mm:
the first bone voxels at a median 330 HU, and 10-15 ml of voxels of soft tissue outside them kept
as bone against the lumens' wall of twice the trabecular contrast).

On voxels coarser than RIM_REACH_MM on every axis the edge lies inside the outermost voxel
itself, which holds bone and soft tissue in proportion to its HU: it is bone when more than half
of it is (as a reference mask brought to that grid has it), that is, when it stands at least
half way from the soft tissue beside it to the bone voxel next inside. There the outer surface
alone is settled, against the voxel next inside (a 2-3 mm voxel of cortex is itself part soft
tissue and marrow); the lumens are left as found.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from trajplan import labels as lt
from trajplan.volume import bounding_box

RIM_REACH_MM = 1.5
RIM_WALL_CONTRAST = 2.0
SURFACE_WALL_CONTRAST = 1.0
BONE = ("sacrum", "ala_left", "ala_right", "anterior_cortex")
_FACES = ndimage.generate_binary_structure(3, 1)


def partial_volume_rims(labels: np.ndarray, hu: np.ndarray, spacing: np.ndarray, trabecular_hu: float, *,
                        surface: bool = True) -> np.ndarray:
    """The label map with each lumen's rim given to the lumen and the outer surface's to the outside.

    The canal first, then the foramina S1 to S4, left then right (a voxel one lumen takes is
    no longer bone for the next); last the unlabelled soft tissue around the sacral bone
    (label 0; not the neighbouring bones, the SI joints or the disc) takes its rim. On voxels
    coarser than RIM_REACH_MM on every axis only the outer surface is settled, voxel by voxel.

    Parameters
    ----------
    labels : array of uint8
        A label map (label table values) on the grid of ``hu``.
    hu : array
        The CT in HU.
    spacing : array
        Voxel size (mm) along the array's axes.
    trabecular_hu : float
        The typical HU of the sacrum's trabecular bone.
    surface : bool
        Settle the outer surface too (not where the sacrum came from a given mask).

    Returns
    -------
    array of uint8
        A new label map; ``labels`` is not changed.
    """
    out = labels.copy()
    steps = np.floor(RIM_REACH_MM / np.asarray(spacing, dtype=float) + 1e-6).astype(int)
    bone = lt.mask(labels, *BONE)
    coarse = not steps.any()
    if not bone.any() or (coarse and not surface):
        return out
    lumens = lt.LUMENS
    if coarse:       # the outermost voxels against the voxel next inside; the lumens as found
        steps, lumens = np.ones_like(steps), ()
    box = bounding_box(bone, steps + 1)
    region, ct = out[box], hu[box]          # writes to the view ``region`` land in ``out``
    for name in lumens:
        lumen = region == lt.value(name)
        if lumen.any():
            near = bounding_box(lumen, steps + 1)
            rim = _rim(lumen[near], ct[near], lt.mask(region[near], *BONE), steps, trabecular_hu, RIM_WALL_CONTRAST)
            region[near][rim] = lt.value(name)
    if surface:
        region[_rim(region == 0, ct, lt.mask(region, *BONE), steps, trabecular_hu, SURFACE_WALL_CONTRAST)] = 0
    return out


def _rim(dark: np.ndarray, hu: np.ndarray, bone: np.ndarray, steps: np.ndarray,
         trabecular_hu: float, wall_contrast: float) -> np.ndarray:
    """The ``bone`` voxels face-adjacent to ``dark`` that are darker than half way from it to a
    wall up to ``steps`` voxels beyond them (per axis), on the far side from ``dark``; a wall stands
    at least ``wall_contrast`` times as far above ``dark`` as ``trabecular_hu`` does."""
    rim = np.zeros_like(bone)
    touching_mask = bone & ndimage.binary_dilation(dark, _FACES)
    if not touching_mask.any():
        return rim
    touching = np.argwhere(touching_mask)
    touching_hu = hu[tuple(touching.T)]
    beside = dark & ndimage.binary_dilation(touching_mask, _FACES)      # the dark voxels next to the bone
    dark_hu = float(np.median(hu[beside]))
    least_wall = dark_hu + wall_contrast * max(trabecular_hu - dark_hu, 1.0)
    take = np.zeros(len(touching), dtype=bool)
    for axis, reach in enumerate(steps):
        if not reach:
            continue
        for sign in (1, -1):
            from_dark = np.zeros(len(touching), dtype=bool)
            before, ok = _stepped(touching, axis, -sign, dark.shape)
            from_dark[ok] = dark[tuple(before[ok].T)]
            wall = np.full(len(touching), -np.inf, dtype=np.float32)
            for step in range(1, reach + 1):
                beyond, ok = _stepped(touching, axis, sign * step, dark.shape)
                wall[ok] = np.maximum(wall[ok], hu[tuple(beyond[ok].T)])
            take |= from_dark & (wall >= least_wall) & (touching_hu < 0.5 * (dark_hu + wall))
    rim[tuple(touching[take].T)] = True
    return rim


def _stepped(points: np.ndarray, axis: int, by: int, shape: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray]:
    """``points`` (n x 3 indices) moved ``by`` voxels along ``axis``, and which are still inside ``shape``."""
    moved = points.copy()
    moved[:, axis] += by
    return moved, (moved[:, axis] >= 0) & (moved[:, axis] < shape[axis])
