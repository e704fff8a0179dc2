"""Sacrum, ilia and L5 separated by random walks on a 3 mm grid: the fallback bone split.

On a coarse scan of osteoporotic bone the sacrum's trabecular bone is darker than any
cortex threshold, so its alae are open shells (the foramina break them) that no hole
filling closes, and the erosion of :mod:`segmentation.separation` removes them. The
ilium beside the sacroiliac joint is different: a thick bone closed all round by bright
cortex. This split uses that (canonical axes L, P, S; lengths in mm):

1. bright bone: hysteresis 120/250 HU, holes up to 25 cm² filled in each axial slice;
2. seeds: on each side, the pieces at least 30 mm from the midline after a 4.5 mm erosion
   (an ilium; cut back by further erosion where one comes near the midline: it holds sacrum
   across a bridged joint, or the other pubis); the largest bright piece within 6 mm of the
   midline (the spine);
3. a random walk over the bright bone gives each voxel to the ilia or the spine. It keeps
   the spine off the ilia, but gives the ala shells to the ilia;
4. the core of each ilium (opened by 4.5 mm in each axial slice: the thick bone at the
   joint) bounds the sacrum: in rows (same y, z) that cross the spine, bone medial to it is
   sacral; bone lateral to it and bone within 6 mm of the walk's ilium elsewhere are iliac;
5. bone now also counts dim trabecular bone (CT smoothed at 3 mm above 75 HU, less one voxel
   at its edge); the spine is its piece that holds the spine seed once the ilia are out;
6. the vertebral bodies on the mid-sagittal slab (filled bone above 120 HU, at least
   3 cm², in the front of the spine) are S1 (the lowest), L5 and L4; a second random walk
   over the spine splits it into sacrum (S1, all below, and the spine beside the ilia) and
   the rest, a third splits L5 from L4 and above (with no L4 body found, the whole spine above
   the sacrum is L5). A spine whose top the field of view shows COLUMN_END_MM clear of bone
   above it is not split: a lumbar spine runs on up (L4 lies a disc above L5), so a column that
   ends in the field is all sacrum. Its dark, osteoporotic bodies show only as fragments of
   cortex, two of which were taken for S1 and L5 (real sacrum 001 darkened: 66 ml of its upper
   sacrum labelled L5);
7. on a CT finer than the grid, the bones brought back are settled on its own bone
   (:func:`_refined`).
"""

from __future__ import annotations

import warnings

import numpy as np
from scipy import ndimage
from skimage.filters import apply_hysteresis_threshold
from skimage.segmentation import random_walker

from segmentation.bone import (
    ball,
    bone_above,
    dilated_by_ball,
    eroded_by_ball,
    expanded_labels,
    fill_holes,
    largest_piece,
    smooth_hu,
)
from segmentation.separation import MAX_SACRUM_WIDTH_MM, MIN_SACRUM_WIDTH_MM, Bones
from trajplan.errors import NoSacrumError
from trajplan.volume import Volume, bounding_box

GRID_MM = 3.0
BRIGHT_HU = (120.0, 250.0)
SLICE_HOLE_MM2 = 2500.0
REGION_HOLE_MM2 = 300.0
SEED_EROSION_MM = 4.5
LATERAL_MM = 30.0
SPINE_BAND_MM = 6.0
CORE_OPENING_MM = 4.5
ILIUM_REACH_MM = 6.0
DIM_BONE_HU = 75.0
DIM_SMOOTH_MM = 3.0
BODY_HU = 120.0
MIN_BODY_MM2 = 300.0
BODY_FRONT_MM = 36.0
BETA = 500.0
MIN_ILIUM_ML = 30.0
COLUMN_END_MM = 30.0
WIDTH_PERCENTILE = 0.5
SEED_MIDLINE_MM = 15.0
SPLIT_STEPS = 4


def _fill_slices(mask: np.ndarray, max_mm2: float, spacing: np.ndarray) -> np.ndarray:
    """``mask`` with the holes up to ``max_mm2`` filled in each axial slice."""
    in_slice = np.zeros((3, 3, 3), dtype=bool)
    in_slice[:, :, 1] = ndimage.generate_binary_structure(2, 1)
    gaps, count = ndimage.label(~mask, structure=in_slice)
    area = ndimage.sum_labels(np.ones(mask.shape), gaps, index=np.arange(1, count + 1)) * spacing[0] * spacing[1]
    edge = np.zeros(mask.shape, dtype=bool)
    edge[[0, -1]] = edge[:, [0, -1]] = True
    small = np.zeros(count + 1, dtype=bool)
    small[1:] = area <= max_mm2
    small[np.unique(gaps[edge & (gaps > 0)])] = False       # open to the slice border: not a hole
    return mask | small[gaps]


def _walk(smooth: np.ndarray, markers: np.ndarray) -> np.ndarray:
    """Random-walker labels (markers > 0 seed, -1 outside), edges weighted by smoothed HU."""
    data = np.clip(smooth, -200.0, 1000.0) / 1000.0
    with warnings.catch_warnings():     # the solver's loose tolerance leaves probabilities just outside [0, 1]
        warnings.filterwarnings("ignore", message="The probability range is outside")
        return random_walker(data, markers, beta=BETA, mode="cg_j", tol=1e-2)


def _bodies(smooth: np.ndarray, spine: np.ndarray, spacing: np.ndarray, mid: int) -> list[np.ndarray]:
    """Vertebral bodies on the mid-sagittal slab, from the bottom up: each a (y, z) footprint."""
    half = max(int(round(0.5 * GRID_MM / spacing[0])), 1)
    slab = smooth[mid - half:mid + half + 1].mean(axis=0)
    spine_slab = spine[mid - half:mid + half + 1].any(axis=0)
    blobs = ndimage.binary_opening(fill_holes(slab > BODY_HU))
    blobs &= ndimage.binary_dilation(spine_slab)
    labels, count = ndimage.label(blobs)
    bodies = []
    for value in range(1, count + 1):
        footprint = labels == value
        if footprint.sum() * spacing[1] * spacing[2] < MIN_BODY_MM2:
            continue
        y, z = np.nonzero(footprint)
        front = np.flatnonzero(spine_slab[:, int(round(z.mean()))])
        if front.size and (y.mean() - front[0]) * spacing[1] < BODY_FRONT_MM:
            bodies.append(footprint)
    return sorted(bodies, key=lambda footprint: np.nonzero(footprint)[1].mean())


def _column_ends(spine: np.ndarray, region: np.ndarray, spacing: np.ndarray, midline_i: float) -> bool:
    """Whether the field shows COLUMN_END_MM above the top of ``spine`` free of ``region`` bone
    within 2 SPINE_BAND_MM of the midline, over the spine's front-to-back extent."""
    top = np.flatnonzero(spine.any(axis=(0, 1)))[-1]
    if top + int(np.ceil(COLUMN_END_MM / spacing[2])) >= spine.shape[2]:
        return False
    rows = np.flatnonzero(spine.any(axis=(0, 2)))
    return bone_above(region, top, spacing, midline_i, 2 * SPINE_BAND_MM, COLUMN_END_MM,
                      slice(rows[0], rows[-1] + 1)) == 0.0


def _width_mm(mask: np.ndarray, spacing_x: float) -> float:
    """Left-right extent of ``mask`` (mm) between the WIDTH_PERCENTILE and the 100 - WIDTH_PERCENTILE
    percentile of its voxels' x: a few stray voxels in a joint gap do not widen it."""
    x = np.nonzero(mask.any(axis=(1, 2)))[0]
    if not x.size:
        return 0.0
    counts = mask.sum(axis=(1, 2))[x[0]:x[-1] + 1]
    low, high = np.searchsorted(np.cumsum(counts), [WIDTH_PERCENTILE / 100 * counts.sum(),
                                                    (1 - WIDTH_PERCENTILE / 100) * counts.sum()])
    return float((high - low + 1) * spacing_x)


def _ilium_alone(piece: np.ndarray, midline_i: float, sign: float, spacing: np.ndarray) -> np.ndarray:
    """The part of an ilium's erosion seed that is ilium alone.

    A seed piece that comes within SEED_MIDLINE_MM of the midline holds more than one side's hip
    bone: sacrum across an SI joint bridged once smoothed and filled (or ankylosed), or the other
    pubis across the symphysis. It is eroded one more voxel at a time, up to
    SPLIT_STEPS times, until parts part from it that keep SEED_MIDLINE_MM off the midline with their
    centre at least LATERAL_MM out; those are returned (none: an empty mask).
    """
    def offsets(mask: np.ndarray) -> np.ndarray:
        return sign * (np.nonzero(mask)[0] - midline_i) * spacing[0]

    if offsets(piece).min() >= SEED_MIDLINE_MM:
        return piece
    for _ in range(SPLIT_STEPS):
        piece = ndimage.binary_erosion(piece)
        parts, count = ndimage.label(piece)
        alone = []
        for j in range(1, count + 1):
            off = offsets(parts == j)
            if off.min() >= SEED_MIDLINE_MM and off.mean() >= LATERAL_MM:
                alone.append(j)
        if alone:
            return np.isin(parts, alone)
    return np.zeros_like(piece)


def _split_coarse(hu: np.ndarray, spacing: np.ndarray, midline_i: float) -> dict[str, np.ndarray]:
    """Sacrum, ilia, L5 on a coarse grid (see the module docstring); raises NoSacrumError."""
    smooth = smooth_hu(hu, spacing)
    dim = smooth_hu(hu, spacing, DIM_SMOOTH_MM) > DIM_BONE_HU
    bright = _fill_slices(apply_hysteresis_threshold(smooth, *BRIGHT_HU), SLICE_HOLE_MM2, spacing)
    x = (np.arange(hu.shape[0]) - midline_i)[:, None, None] * spacing[0]
    labels, count = ndimage.label(eroded_by_ball(bright, SEED_EROSION_MM, spacing))
    centres = ndimage.center_of_mass(labels > 0, labels, index=np.arange(1, count + 1))
    markers = np.where(bright, 0, -1).astype(np.int32)
    for value, sign in ((2, 1.0), (3, -1.0)):
        side_name = "left" if sign > 0 else "right"
        lateral = [i for i, c in enumerate(centres, start=1) if sign * (c[0] - midline_i) * spacing[0] >= LATERAL_MM]
        if not lateral:
            raise NoSacrumError(f"no ilium on the {side_name}")
        seed = np.zeros(hu.shape, dtype=bool)
        for i in lateral:
            seed |= _ilium_alone(labels == i, midline_i, sign, spacing)
        if not seed.any():
            raise NoSacrumError(f"no ilium on the {side_name} apart from the midline bone")
        markers[seed] = value
    spine_seed = largest_piece(bright & (np.abs(x) < SPINE_BAND_MM) & (markers == 0))
    if not spine_seed.any():
        raise NoSacrumError("no bone on the midline")
    markers[spine_seed] = 1
    walked = _walk(smooth, markers)

    region = _fill_slices(bright | ndimage.binary_erosion(dim), REGION_HOLE_MM2, spacing)
    spine_rows = (walked == 1).any(axis=0)[None]           # (y, z) rows that cross the spine
    ilia = {}
    taken = np.zeros(hu.shape, dtype=bool)
    for value, sign in ((2, 1.0), (3, -1.0)):
        side = sign * x > 0
        opening = ball(CORE_OPENING_MM, spacing[:2])[:, :, None]
        core = largest_piece(ndimage.binary_opening(walked == value, structure=opening))
        distance = np.where(core, sign * x, np.inf)
        medial = distance.min(axis=0)[None]                  # the core's medial face in each (y, z) row
        in_row = np.isfinite(medial)
        near = dilated_by_ball((walked == value) | core, ILIUM_REACH_MM, spacing)
        ilium = core | (region & side & in_row & (sign * x >= medial)) | ((walked == value) & ~in_row)
        ilium |= region & side & near & ~(in_row & spine_rows & (sign * x < medial))
        ilia[value] = ilium
        taken |= ilium
    free_labels, _ = ndimage.label(region & ~taken)
    spine = free_labels == np.bincount(free_labels[spine_seed]).argmax()

    bodies = _bodies(smooth, spine, spacing, int(round(midline_i)))
    if not bodies:
        raise NoSacrumError("no vertebral body on the midline")
    if len(bodies) == 1 or _column_ends(spine, region, spacing, midline_i):
        return {"sacrum": spine, "ilium_left": ilia[2], "ilium_right": ilia[3], "L5": np.zeros_like(spine)}
    z = np.arange(hu.shape[2])[None, None, :]
    height = [np.flatnonzero(body.any(axis=0))[[0, -1]] for body in bodies]
    band = spine & (np.abs(x) < 2 * SPINE_BAND_MM)
    split = np.where(spine, 0, -1).astype(np.int32)
    split[spine & dilated_by_ball(ilia[2] | ilia[3], GRID_MM, spacing)
          & (z < height[0][1])] = 1                       # the sacrum beside the ilia, below S1's top
    split[spine & (z < height[0][0])] = 1                 # and all below S1
    split[spine & (z > height[1][1])] = 2                 # the spine above L5
    split[band & bodies[0][None]] = 1
    split[band & bodies[1][None]] = 2
    sacrum = spine & (_walk(smooth, split) == 1)
    if len(bodies) == 2:
        return {"sacrum": sacrum, "ilium_left": ilia[2], "ilium_right": ilia[3], "L5": spine & ~sacrum}
    above = spine & ~sacrum                               # L5 and up: L4 and the spine above it go
    split = np.where(above, 0, -1).astype(np.int32)       # to a second walk
    split[above & (z > height[2][1])] = 2
    split[band & above & bodies[1][None]] = 1
    split[band & above & bodies[2][None]] = 2
    return {"sacrum": sacrum, "ilium_left": ilia[2], "ilium_right": ilia[3],
            "L5": above & (_walk(smooth, split) == 1)}


def _refined(back: np.ndarray, hu: np.ndarray, spacing: np.ndarray) -> np.ndarray:
    """The labels brought back (nearest neighbour) from the GRID_MM grid, settled on the finer grid
    of ``hu`` (step 7).

    Brought back so, a label reaches up to half a coarse voxel past the bone's edge into the soft
    tissue, or stops as far short of it (real sacrum 001 darkened, at 0.86 mm: 23 ml of soft tissue
    labelled sacrum, mostly a layer outside the dorsal cortex). Each label keeps its voxels that
    are bone on this grid (bright, or dim as in step 5, less GRID_MM at the dim bone's edge) and
    those deeper than GRID_MM inside it (the dark marrow that the coarse grid's slice filling
    closed in), and grows by up to GRID_MM over this grid's bone.
    """
    box = bounding_box(back > 0, np.ceil(2 * GRID_MM / spacing).astype(int))
    coarse, ct = back[box], hu[box]
    dim = eroded_by_ball(smooth_hu(ct, spacing, DIM_SMOOTH_MM) > DIM_BONE_HU, GRID_MM, spacing)
    bone = apply_hysteresis_threshold(smooth_hu(ct, spacing), *BRIGHT_HU) | dim
    inner = np.zeros_like(coarse)
    for value in np.unique(coarse)[1:]:
        inner[eroded_by_ball(coarse == value, GRID_MM, spacing)] = value
    out = np.zeros_like(back)
    out[box] = np.where(bone | (inner > 0), expanded_labels(np.where(bone, coarse, inner), GRID_MM, spacing), 0)
    return out


def split_bones_by_walker(hu: np.ndarray, spacing: np.ndarray, midline_i: float) -> Bones:
    """Name and separate the bones of the sacral region by random walks on a GRID_MM grid.

    Parameters
    ----------
    hu : array
        CT in HU on canonical axes (L, P, S).
    spacing : array
        Voxel size in mm; finer CTs are resampled to GRID_MM for the split and the
        masks brought back and settled on the CT's own bone (:func:`_refined`).
    midline_i : float
        The body's left-right midline as an index along the first axis.

    Raises
    ------
    NoSacrumError
        When no ilium, spine or vertebral body is found, or the bone found between the ilia
        is not as wide as a sacrum or does not meet both ilia.
    """
    spacing = np.asarray(spacing, dtype=float)
    fine = Volume(hu.astype(np.float32, copy=False), spacing)
    grid = np.maximum(spacing, GRID_MM)
    coarse = fine.resample(grid, fill=float(hu.min())) if np.any(grid > spacing) else fine
    masks = _split_coarse(coarse.array, grid, midline_i * spacing[0] / grid[0])
    sacrum = masks["sacrum"]
    width = _width_mm(sacrum, grid[0])
    if not MIN_SACRUM_WIDTH_MM <= width <= MAX_SACRUM_WIDTH_MM:
        raise NoSacrumError(f"the bone between the ilia is {width:.0f} mm wide")
    reach = dilated_by_ball(sacrum, ILIUM_REACH_MM, grid)
    for name in ("ilium_left", "ilium_right"):
        if masks[name].sum() * np.prod(grid) / 1000.0 < MIN_ILIUM_ML or not (reach & masks[name]).any():
            raise NoSacrumError(f"no {name.replace('_', ' ')} beside the bone on the midline")
    labels = np.zeros(coarse.shape, dtype=np.uint8)
    for value, name in enumerate(("sacrum", "ilium_left", "ilium_right", "L5"), start=1):
        labels[masks[name]] = value
    back = coarse.with_array(labels).resample_onto(fine, interpolator="nearest").array
    if np.any(grid > spacing):
        back = _refined(back, fine.array, spacing)
    return Bones(sacrum=back == 1, ilium_left=back == 2, ilium_right=back == 3, L5=back == 4,
                 coccyx=np.zeros(back.shape, dtype=bool), lumens_filled=True,
                 notes=(f"bones separated by random walks on a {' x '.join(f'{g:g}' for g in grid)} mm grid "
                        "(the cortical shells enclosed no sacrum)",),
                 caveat="the bones were split by the random-walk fallback (the cortical shells enclosed no sacrum): "
                        "its borders with the ilia and L5 are less precise, check them on the images")
