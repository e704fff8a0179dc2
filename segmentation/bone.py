"""Bone from CT: the cortical shell, and the solid bone it encloses.

Trabecular bone of an osteoporotic sacrum can be as dark as soft tissue, so bone is
not found by a trabecular threshold: the cortical shell (bright in any bone) is
found, its small gaps are closed, and everything it encloses is filled in.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage
from skimage.segmentation import expand_labels

from trajplan.distance import squared_distance
from trajplan.volume import bounding_box

BODY_HU = -400.0


def ball(radius_mm: float, spacing: np.ndarray) -> np.ndarray:
    """Boolean ellipsoidal structuring element of ``radius_mm`` on an anisotropic grid.

    The radius in voxels is rounded per axis (not floored), so a radius of more than
    half a voxel still reaches the neighbouring voxel. An exact half rounds to the even
    number (``np.round``): 1 mm on a 2 mm grid is the centre voxel alone, on which the
    foramen growth of :mod:`segmentation.lumens` was measured.
    """
    half = np.round(radius_mm / np.asarray(spacing, dtype=float)).astype(int)
    grids = np.ogrid[tuple(slice(-h, h + 1) for h in half)]
    return sum((g / max(h, 1)) ** 2 for g, h in zip(grids, half)) <= 1.0


# Squared distances are exact in float32 up to 2**24; the ball's own squared radius stays far below.
_MAX_BALL_SQUARED = 2 ** 20


def ball_metric(radius_mm: float, spacing: np.ndarray) -> tuple[tuple[int, ...], int] | None:
    """Integer axis weights and squared radius under which :func:`ball` is a sphere.

    The ball holds the offsets ``g`` with ``sum((g_i / h_i) ** 2) <= 1`` (``h`` its radius in
    voxels per axis). With ``L`` the least common multiple of ``h``, that is
    ``sum((g_i * L / h_i) ** 2) <= L ** 2``: integers throughout, so a squared distance
    transform with those weights tells exactly which voxels the ball reaches. None when an
    axis has no reach (``h_i = 0``) or the squared radius is too large to be exact.
    """
    half = np.round(radius_mm / np.asarray(spacing, dtype=float)).astype(int)
    if half.min() < 1:
        return None
    lcm = int(np.lcm.reduce(half))
    if lcm * lcm > _MAX_BALL_SQUARED:
        return None
    return tuple(lcm // int(h) for h in half), lcm * lcm


def squared_depth(mask: np.ndarray, weights: tuple[int, ...]) -> np.ndarray:
    """Squared distance (float32, axis ``weights`` per voxel step) from each voxel of ``mask`` to
    the nearest voxel outside it or outside the array: ``mask`` eroded by the ball of
    :func:`ball_metric` is ``squared_depth(mask, weights) > squared + 0.5``."""
    return squared_distance(np.pad(np.asarray(mask, dtype=bool), 1), weights)[1:-1, 1:-1, 1:-1]


def eroded_by_ball(mask: np.ndarray, radius_mm: float, spacing: np.ndarray) -> np.ndarray:
    """``ndimage.binary_erosion(mask, ball(radius_mm, spacing))`` (the array's outside empty),
    by one exact squared distance transform instead of a sweep of the ball (a 10 mm ball on a
    1 mm grid holds 4,000 voxels)."""
    metric = ball_metric(radius_mm, spacing)
    if metric is None:
        return ndimage.binary_erosion(mask, structure=ball(radius_mm, spacing))
    weights, squared = metric
    return squared_depth(mask, weights) > squared + 0.5


def dilated_by_ball(mask: np.ndarray, radius_mm: float, spacing: np.ndarray) -> np.ndarray:
    """``ndimage.binary_dilation(mask, ball(radius_mm, spacing))``, by one exact squared distance
    transform (see :func:`ball_metric`)."""
    metric = ball_metric(radius_mm, spacing)
    if metric is None:
        return ndimage.binary_dilation(mask, structure=ball(radius_mm, spacing))
    weights, squared = metric
    return squared_distance(~np.asarray(mask, dtype=bool), weights) <= squared + 0.5


def opening(mask: np.ndarray, radius_mm: float, spacing: np.ndarray) -> np.ndarray:
    """``ndimage.binary_opening(mask, ball(radius_mm, spacing))`` (the array's outside empty), by
    :func:`eroded_by_ball` and :func:`dilated_by_ball`."""
    return dilated_by_ball(eroded_by_ball(mask, radius_mm, spacing), radius_mm, spacing)


def bone_above(mask: np.ndarray, top: int, spacing: np.ndarray, midline_i: float, half_width_mm: float,
               height_mm: float, rows: slice = slice(None)) -> float:
    """ml of ``mask`` (canonical axes L, P, S) in the slab ``height_mm`` high above slice ``top``,
    within ``half_width_mm`` of the midline (index ``midline_i`` on the first axis) and over ``rows``
    of the second axis: where the next vertebra up would lie."""
    central = np.abs(np.arange(mask.shape[0]) - midline_i) * spacing[0] <= half_width_mm
    above = mask[central, rows, top + 1:top + 1 + int(np.ceil(height_mm / spacing[2]))]
    return float(above.sum() * np.prod(spacing) / 1000.0)


def expanded_labels(labels: np.ndarray, distance: float, spacing: np.ndarray) -> np.ndarray:
    """:func:`skimage.segmentation.expand_labels` (each voxel within ``distance`` mm of a label
    takes the nearest one), computed in the labels' bounding box widened by ``distance``: the
    same labels, since every voxel that can take one lies in that box, without a distance
    transform (with the nearest voxel's indices) of the whole array."""
    out = np.zeros_like(labels)
    if not labels.any():
        return out
    spacing = np.asarray(spacing, dtype=float)
    box = bounding_box(labels > 0, np.ceil(distance / spacing).astype(int) + 1)
    out[box] = expand_labels(labels[box], distance=distance, spacing=spacing)
    return out


def dilated(mask: np.ndarray, structure: np.ndarray) -> np.ndarray:
    """:func:`scipy.ndimage.binary_dilation` of ``mask`` by a centred (odd-sized) ``structure``,
    computed in the mask's bounding box widened by the structure's half size: the same voxels,
    in a fraction of the time when the mask is small in a large grid (one foramen level in the
    sacral crop)."""
    out = np.zeros_like(mask, dtype=bool)
    if mask.any():
        box = bounding_box(mask, np.asarray(structure.shape) // 2)
        out[box] = ndimage.binary_dilation(mask[box], structure=structure)
    return out


def fill_holes(mask: np.ndarray, max_voxels: int | None = None) -> np.ndarray:
    """``mask`` with its holes filled: :func:`scipy.ndimage.binary_fill_holes`, by labelling.

    The background pieces (face connected) that touch no face of the array are holes. One
    labelling pass gives the same result as scipy's flood from the border, several times faster.
    With ``max_voxels`` only the holes of at most that many voxels are filled.

    Only the mask's bounding box is labelled: every hole lies in it, and a piece of background that
    touches a face of the box touches the array's face there, or the background outside the box,
    each voxel of which reaches the array's face straight along an axis on which it lies outside.
    """
    if not mask.any():
        return mask.copy()
    out = mask.copy()
    box = bounding_box(mask)
    out[box] = _filled(mask[box], max_voxels)
    return out


def _filled(mask: np.ndarray, max_voxels: int | None) -> np.ndarray:
    """:func:`fill_holes` on the whole of ``mask``'s array."""
    pieces, count = ndimage.label(~mask)
    if not count:
        return mask.copy()
    hole = np.ones(count + 1, dtype=bool)
    for axis in range(mask.ndim):
        for end in (0, -1):
            hole[np.take(pieces, end, axis=axis)] = False
    if max_voxels is not None:
        hole &= np.bincount(pieces.reshape(-1), minlength=count + 1) <= max_voxels
    hole[0] = True
    return hole[pieces]


def fill_slice_holes(mask: np.ndarray, axis: int) -> np.ndarray:
    """``mask`` with the holes of each of its 2-D slices across ``axis`` filled (all slices at once).

    The background is labelled with in-slice face connectivity; a piece is a hole unless it
    touches the slice's edge (a face of the array other than the two across ``axis``).
    """
    structure = np.zeros((3, 3, 3), dtype=bool)
    centre = [1, 1, 1]
    for other in range(3):
        if other != axis:
            for step in (0, 2):
                index = list(centre)
                index[other] = step
                structure[tuple(index)] = True
    structure[1, 1, 1] = True
    pieces, count = ndimage.label(~mask, structure=structure)
    hole = np.ones(count + 1, dtype=bool)
    for other in range(3):
        if other != axis:
            for end in (0, -1):
                hole[np.take(pieces, end, axis=other)] = False
    hole[0] = True
    return hole[pieces]


def enclosed_in_slices(mask: np.ndarray) -> np.ndarray:
    """Voxels that ``mask`` (canonical axes L, P, S) encloses in its sagittal sections and in its
    axial or coronal ones.

    A bone whose cortex has gaps (thin osteoporotic cortex, foramina opening into dark fatty
    marrow) encloses little in 3-D, since a fill leaks through any gap; but its marrow is
    enclosed in most 2-D sections through it. The canal runs head to foot near the midline and
    a foramen front to back: both run within the sagittal sections, open at their ends, so
    neither is enclosed there (a coronal section cuts the curved canal, and the foramina, across).
    """
    sagittal = fill_slice_holes(mask, 0)
    return sagittal & (fill_slice_holes(mask, 2) | fill_slice_holes(mask, 1))


def enclosed_in_two_orientations(mask: np.ndarray) -> np.ndarray:
    """Voxels that ``mask`` encloses in the 2-D sections of at least two of its three orientations.

    Unlike :func:`enclosed_in_slices` the sagittal sections need not be among them: a foramen opens
    whole sagittal slabs of an ala, and the marrow beside it is enclosed in its axial and coronal
    sections. The lumens stay open all the same: the canal runs head to foot, open at its ends in
    the sagittal and coronal sections, and a foramen front to back, open in the sagittal and axial ones.
    """
    count = sum(fill_slice_holes(mask, axis).astype(np.uint8) for axis in range(3))
    return count >= 2


NEIGHBOUR_STEPS = tuple((i, j, k) for i in (-1, 0, 1) for j in (-1, 0, 1) for k in (-1, 0, 1)
                        if (i, j, k) != (0, 0, 0))


def open_directions(wall: np.ndarray, free: np.ndarray) -> np.ndarray:
    """For each voxel, in how many of the 26 neighbour directions a straight ray leads out: it runs
    through ``free`` voxels and then meets a voxel that is not ``wall`` (nor ``free``) or the
    array's edge, instead of a ``wall`` voxel.

    A marrow pocket behind a cortex broken by a crack or a foramen is walled in nearly every
    direction, though a 3-D fill leaks out through the gap; a bay of the bone's surface is open
    on its whole outer side. Each direction is one sweep over the array's slices across an axis
    that it moves along (the voxel's ray ends where its next voxel's ends).
    """
    count = np.zeros(wall.shape, dtype=np.uint8)
    for step in NEIGHBOUR_STEPS:
        axis = next(index for index, value in enumerate(step) if value)
        walls = np.moveaxis(wall, axis, 0)
        frees = np.moveaxis(free, axis, 0)
        across = [value for index, value in enumerate(step) if index != axis]
        walled = np.zeros(walls.shape, dtype=bool)
        order = range(walls.shape[0] - 2, -1, -1) if step[axis] > 0 else range(1, walls.shape[0])
        for index in order:
            ahead = index + step[axis]
            walled[index] = _shifted_back(walls[ahead] | (frees[ahead] & walled[ahead]), across)
        count += ~np.moveaxis(walled, 0, axis)
    return count


def _shifted_back(plane: np.ndarray, step: list[int]) -> np.ndarray:
    """``out[p] = plane[p + step]`` for a 2-D ``plane`` (False beyond its edge)."""
    out = np.zeros_like(plane)
    target = tuple(slice(max(-s, 0), n - max(s, 0)) for s, n in zip(step, plane.shape))
    source = tuple(slice(max(s, 0), n - max(-s, 0)) for s, n in zip(step, plane.shape))
    out[target] = plane[source]
    return out


def closing(mask: np.ndarray, radius_mm: float, spacing: np.ndarray) -> np.ndarray:
    """Binary closing by ``ball(radius_mm, spacing)`` with the outside taken as empty, computed
    only on ``mask``'s box.

    The same as ``ndimage.binary_closing(mask, ball(radius_mm, spacing), border_value=0)``: the
    box is widened by the ball's reach, beyond which the dilation adds nothing.
    """
    out = np.zeros_like(mask, dtype=bool)
    if not mask.any():
        return out
    box = bounding_box(mask, np.round(radius_mm / np.asarray(spacing, dtype=float)).astype(int) + 1)
    out[box] = eroded_by_ball(dilated_by_ball(mask[box], radius_mm, spacing), radius_mm, spacing)
    return out


SMOOTH_MM = 0.7


def smooth_hu(hu: np.ndarray, spacing: np.ndarray, sigma_mm: float = SMOOTH_MM) -> np.ndarray:
    """CT smoothed with a Gaussian of ``sigma_mm`` (float32)."""
    return ndimage.gaussian_filter(hu.astype(np.float32), sigma=sigma_mm / np.asarray(spacing))


def largest_piece(mask: np.ndarray, structure: np.ndarray | None = None) -> np.ndarray:
    """The largest connected piece of ``mask`` (face connectivity unless ``structure`` says otherwise)."""
    labels, count = ndimage.label(mask, structure=structure)
    if count <= 1:
        return mask
    sizes = np.bincount(labels.reshape(-1), minlength=count + 1)[1:]
    return labels == 1 + int(np.argmax(sizes))


def piece_sizes_and_heights(pieces: np.ndarray, count: int) -> tuple[np.ndarray, np.ndarray]:
    """Voxel count and mean index along the last axis (S) of pieces ``1..count`` of a label array.

    One bincount over the labelled voxels each (``ndimage.sum_labels`` and ``center_of_mass``
    walk every piece's index list: seconds on a 1 mm sacral region with thousands of specks).
    """
    flat = pieces.reshape(-1)
    index = np.flatnonzero(flat)
    labels = flat[index]
    sizes = np.bincount(labels, minlength=count + 1)[1:]
    z = (index % pieces.shape[-1]).astype(np.float64)
    sums = np.bincount(labels, weights=z, minlength=count + 1)[1:]
    return sizes, sums / np.maximum(sizes, 1)


def piece_maxima(values: np.ndarray, pieces: np.ndarray, count: int) -> np.ndarray:
    """The largest of ``values`` over each of pieces ``1..count`` of a label array (-inf for none)."""
    flat = pieces.reshape(-1)
    index = np.flatnonzero(flat)
    out = np.full(count + 1, -np.inf)
    np.maximum.at(out, flat[index], np.broadcast_to(values, pieces.shape).reshape(-1)[index])
    return out[1:]


def body_mask(hu: np.ndarray) -> np.ndarray:
    """The patient's body: the largest connected region above -400 HU, holes filled."""
    return fill_holes(largest_piece(hu > BODY_HU))


CORTEX_THRESHOLDS_HU = (250.0, 200.0, 160.0, 130.0)
MIN_FILL_RATIO = 2.0


def solid_bone(smooth: np.ndarray, spacing: np.ndarray, *, close_mm: float = 2.0) -> tuple[np.ndarray, float]:
    """The solid bone enclosed by the cortical shell, and the cortex threshold used.

    The shell of osteoporotic bone is thin and dim, and a threshold too high leaves
    gaps through which the filling leaks. Thresholds are tried from high to low;
    the first whose filled volume is at least twice the shell's own volume (the
    shell really encloses trabecular bone) is used, else the one enclosing most.

    Parameters
    ----------
    smooth : array
        Smoothed CT in HU.
    spacing : array
        Voxel size in mm.
    close_mm : float
        Radius of the closing that seals cracks (fracture lines, thin cortex).
    """
    best = None
    for threshold in CORTEX_THRESHOLDS_HU:
        cortex = smooth > threshold
        closed = closing(cortex, close_mm, spacing)
        solid = fill_holes(closed | cortex)
        ratio = solid.sum() / max(int(cortex.sum()), 1)
        if ratio >= MIN_FILL_RATIO:
            return solid, threshold
        if best is None or ratio > best[0]:
            best = (ratio, solid, threshold)
    return best[1], best[2]
