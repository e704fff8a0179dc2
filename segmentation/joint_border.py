"""The sacrum-ilium border moved onto the sacroiliac joint's dark sheet (step 3c).

The bone split (:mod:`segmentation.separation`) grows its seeds back by a watershed through
bright bone first. Where an erosion seed of an ilium still holds part of the ala (the joint
bridged at its top by partial volume) or the ala's fatty marrow is darker than the joint, the
border it leaves runs through the ala instead of the joint. The joint itself is a thin dark
sheet between two cortical plates: across it the intensity curves up strongly, along it hardly
at all. Measured so (a Hessian "valley sheetness", after Krcah et al., ISBI 2011, who enhance
the bright plates instead), it stands out from the marrow, which is dark but not a sheet.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage
from skimage.segmentation import watershed

from segmentation.bone import closing, dilated_by_ball
from segmentation.parts import distances_where_both_near
from trajplan.distance import distance_mm
from trajplan.volume import block_means, bounding_box

VALLEY_SIGMA_MM = 2.0        # the scale of the joint gap (2-4 mm wide with its partial volume)
BORDER_BAND_MM = 15.0        # the border may move this far into either bone (at 20 a fracture line
                             # beside the joint was taken for it: real case 003, 6 ml of its ala to the ilium)
MAX_SPACING_MM = 2.0         # coarser voxels blur the gap into its plates: the search runs on a grid
FINE_MM = 1.0                # refined to this (linear interpolation of the CT), and the border is brought back
PLATE_MM = 3.0               # the cortical plates either side of a joint gap lie within this of it
CLEAR_GAP_HU = 100.0         # a border this much darker than both plates lies on a joint gap: it stays there ...
FAINT_GAP_HU = 60.0          # ... and one this much darker, unless the moved one is too (grids of 2 mm or finer)
MOVE_REACH_MM = 4.0          # a move is judged on the borders within this of the voxels it gives again
PASS_CLOSE_MM = 15.0         # the sacrum's flood passes through what the two bones close over within this
CUT_REACH_MM = 11.0          # on coarse grids, the ilium's bone this near that passage, cut off from the
CUT_SHEET = 0.5              # ilium's main piece by sheets at least this strong, is given again too
CUT_MIN_SPACING_MM = 2.0     # (finer grids show sheets in the ilium's own trabecular texture)


def valley_sheetness(image: np.ndarray, spacing: np.ndarray, sigma_mm: float = VALLEY_SIGMA_MM) -> np.ndarray:
    """How much each voxel lies on a dark sheet (HU / mm^2, float32, >= 0).

    The largest eigenvalue of the Hessian (Gaussian derivatives at ``sigma_mm``, in mm) less
    the magnitude of the middle one: large across a dark sheet (a joint gap, a fracture line),
    small in a dark tube (a foramen: two large curvatures) and in uniform marrow.

    Parameters
    ----------
    image : np.ndarray
        Intensities (HU) on a grid of ``spacing``.
    spacing : np.ndarray
        Voxel size (mm) per axis.
    sigma_mm : float
        Scale of the derivatives (mm).
    """
    image = np.asarray(image, dtype=np.float32)
    sigma = sigma_mm / np.asarray(spacing, dtype=float)
    second = []                                  # the Hessian's elements 11, 22, 33, 12, 13, 23
    for i, j in ((0, 0), (1, 1), (2, 2), (0, 1), (0, 2), (1, 2)):
        order = [0, 0, 0]
        order[i] += 1
        order[j] += 1
        second.append(ndimage.gaussian_filter(image, sigma, order=order) / (spacing[i] * spacing[j]))
    _, middle, largest = symmetric_eigenvalues(*second)
    return np.clip(largest - np.abs(middle), 0.0, None).astype(np.float32)


def symmetric_eigenvalues(a11: np.ndarray, a22: np.ndarray, a33: np.ndarray, a12: np.ndarray, a13: np.ndarray,
                          a23: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The eigenvalues of symmetric 3 x 3 matrices given element-wise, smallest, middle, largest.

    In closed form (the trigonometric solution of the characteristic cubic, O. K. Smith,
    Comm. ACM 1961), in float64: a batched ``np.linalg.eigvalsh`` over every voxel of a
    Hessian took 4 of the 36 s of segmenting a real sacrum at 0.86 mm; this takes a tenth of
    that, and agrees with LAPACK's to a billionth of the largest eigenvalue.

    Parameters
    ----------
    a11, a22, a33, a12, a13, a23 : np.ndarray
        The matrices' upper-triangle elements, arrays of one shape.
    """
    a11, a22, a33, a12, a13, a23 = (np.asarray(a, dtype=np.float64) for a in (a11, a22, a33, a12, a13, a23))
    mean = (a11 + a22 + a33) / 3.0
    b11, b22, b33 = a11 - mean, a22 - mean, a33 - mean          # the matrix less its mean eigenvalue
    scale = np.sqrt((b11 * b11 + b22 * b22 + b33 * b33 + 2.0 * (a12 * a12 + a13 * a13 + a23 * a23)) / 6.0)
    safe = np.where(scale > 0, scale, 1.0)                        # a multiple of the identity: all equal
    half_det = (b11 * (b22 * b33 - a23 * a23) - a12 * (a12 * b33 - a23 * a13)
                + a13 * (a12 * a23 - b22 * a13)) / (2.0 * safe ** 3)
    angle = np.arccos(np.clip(half_det, -1.0, 1.0)) / 3.0
    largest = mean + 2.0 * scale * np.cos(angle)
    smallest = mean + 2.0 * scale * np.cos(angle + 2.0 * np.pi / 3.0)
    return smallest, 3.0 * mean - largest - smallest, largest


def border_on_joint(sacrum: np.ndarray, ilium: np.ndarray, smooth: np.ndarray,
                    spacing: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``sacrum`` and ``ilium`` with the border between them moved onto the darkest sheet.

    The voxels of either bone within BORDER_BAND_MM of the other are given again, by a watershed
    on :func:`valley_sheetness` seeded by the rest of each bone: the two sides flood through bone
    and marrow alike and meet on the strongest dark sheet between them, the joint. The sacrum's
    flood may also pass through the voxels of neither bone that the two close over (a closing by
    a ball of PASS_CLOSE_MM): the fatty marrow that the bone step left out of an ala otherwise cuts
    the ala's rim off from the sacrum's seed, so that the rim stays with the ilium whatever lies
    between (real case 001 at 3 mm: 38 % of its left ala beside the joint labelled ilium, 37 % left
    out as marrow of 22 HU). A voxel is the sacrum's where its flood reaches it first either way:
    the passage only ever gives the sacrum more. Let the ilium's flood through as well, and it
    reaches the ala through the joint gap and the bays beside it (real 001 at 3 mm, another draw
    of its noise: 15 ml of ala to the ilium and the joint, Dice 0.888 -> 0.828); an ilium beside
    the joint is thick bone in bright cortex, with no such marrow to pass. Nothing outside the two
    bones changes, and neither bone grows beyond their union. On voxels coarser than
    MAX_SPACING_MM on any axis the search runs on the band refined to FINE_MM
    (:func:`_on_refined_grid`): a 3 mm voxel holds a 2-4 mm gap only as a dip between brighter
    neighbours, which the Hessian at VALLEY_SIGMA_MM cannot resolve on the coarse grid itself
    (run there, real case 003 at 3 mm lost 0.02 of sacral Dice; refined, it gained 0.02 and 001 0.04).

    On grids of CUT_MIN_SPACING_MM or coarser, the ilium's bone within CUT_REACH_MM of that
    passage, beyond the band, is given again too where dark sheets (valley sheetness of CUT_SHEET or
    more) cut it off from the ilium's main piece (:func:`_cut_off`). An ala whose fatty marrow the bone
    step left out keeps its lateral plate, across the joint from the ilium, more than BORDER_BAND_MM
    from the sacrum's label, and the split seeds that plate with the ilium: real case 003 at 2 mm had
    25 ml of its right ala labelled ilium (16 ml so). Deeper in the ilium its own marrow is cut off
    by sheets too, and the sacrum's flood took 7 ml of it (003 tilted, `tilt_b`; 4 ml within
    CUT_REACH_MM). On finer grids the ilium's trabecular texture shows such sheets everywhere (003 at 1
    mm: 60 ml of each ilium cut off, and the sacrum took 8 ml of the left one). On coarser grids it runs
    on the refined one, over the band and the ilium near the passage: 003 at 3 mm got its plate back
    too (0.744 -> 0.824; slices 3 mm thick at its own pixels, 0.805 -> 0.842). It waited for the
    planner to pass over a lesion marked uncertain (planning step 3): two right short-axis needles
    called safe had aimed at the 9.7 ml of dark marrow then walled in there, lying in a hole of the
    reference, and ended 4.5 mm outside the reference bone, where the CT guard cannot read soft tissue
    at 3 mm.

    One pass; the pipeline runs a second one from the first one's border (30 mm in all, see
    :func:`segmentation.pipeline._borders_on_joints`).

    Parameters
    ----------
    sacrum, ilium : np.ndarray
        Boolean masks of the two bones (disjoint) on a grid of ``spacing``.
    smooth : np.ndarray
        The (smoothed) CT in HU on the same grid.
    spacing : np.ndarray
        Voxel size (mm) per axis.
    """
    spacing = np.asarray(spacing, dtype=float)
    cut_off = CUT_MIN_SPACING_MM <= np.max(spacing)
    return _border_on_joint(sacrum, ilium, smooth, spacing, None, cut_off=bool(cut_off))


def _border_on_joint(sacrum: np.ndarray, ilium: np.ndarray, smooth: np.ndarray, spacing: np.ndarray,
                     passable: np.ndarray | None, *, cut_off: bool) -> tuple[np.ndarray, np.ndarray]:
    """:func:`border_on_joint`, the sacrum's flood passing through ``passable`` (:func:`_closed_over` when
    None); with ``cut_off``, the ilium's cut-off bone near that passage given again too."""
    band = _band(sacrum, ilium, spacing)
    if not band.any():
        return sacrum, ilium
    if passable is None:
        passable = _closed_over(sacrum | ilium, band, spacing)
    near = _near_passage(ilium & ~band, passable, spacing) if cut_off and passable.any() else np.zeros_like(band)
    if np.max(spacing) > MAX_SPACING_MM:
        return _on_refined_grid(sacrum, ilium, smooth, spacing, band | near, passable, cut_off=cut_off)
    box = bounding_box(band | near, np.ceil(2 * VALLEY_SIGMA_MM / spacing).astype(int) + 1)
    sheet = valley_sheetness(smooth[box], spacing)
    given_again = band[box]
    if near.any():
        given_again = given_again | (near[box] & _cut_off(ilium[box] & ~band[box], ilium[box] & (sheet < CUT_SHEET)))
    markers = np.zeros(given_again.shape, dtype=np.int32)
    markers[sacrum[box] & ~given_again] = 1
    markers[ilium[box] & ~given_again] = 2
    if not (markers == 1).any() or not (markers == 2).any():
        return sacrum, ilium
    union = (sacrum | ilium)[box]
    given = watershed(sheet, markers, mask=union)
    passed = watershed(sheet, markers, mask=union | passable[box]) == 1
    sacrum, ilium = sacrum.copy(), ilium.copy()
    moved = given_again & ((given > 0) | passed)
    sacral = (given == 1) | passed
    sacrum[box][moved] = sacral[moved]
    ilium[box][moved] = ~sacral[moved]
    return sacrum, ilium


def _near_passage(bone: np.ndarray, passable: np.ndarray, spacing: np.ndarray) -> np.ndarray:
    """The voxels of ``bone`` within CUT_REACH_MM of ``passable`` (non-empty), measured in the box of
    ``passable`` widened by that reach (the same answer: nothing farther out is that near)."""
    box = bounding_box(passable, np.ceil(CUT_REACH_MM / spacing).astype(int) + 1)
    out = np.zeros_like(bone)
    out[box] = bone[box] & (distance_mm(~passable[box], spacing) <= CUT_REACH_MM)
    return out


def _cut_off(seed: np.ndarray, joined: np.ndarray) -> np.ndarray:
    """The voxels of ``seed`` outside the piece of ``joined`` (face connectivity) that holds most of ``seed``."""
    pieces, _ = ndimage.label(joined)
    counts = np.bincount(pieces[seed])
    counts[0] = 0
    return seed & (pieces != counts.argmax()) if counts.any() else seed


def _band(sacrum: np.ndarray, ilium: np.ndarray, spacing: np.ndarray) -> np.ndarray:
    """The voxels of either bone within BORDER_BAND_MM of the other."""
    d_sac, d_il = distances_where_both_near(sacrum, ilium, spacing, BORDER_BAND_MM)
    return (sacrum & (d_il <= BORDER_BAND_MM)) | (ilium & (d_sac <= BORDER_BAND_MM))


def _closed_over(union: np.ndarray, band: np.ndarray, spacing: np.ndarray) -> np.ndarray:
    """The voxels outside ``union`` that its closing by a ball of PASS_CLOSE_MM fills, around ``band``
    (exact within the sheets' reach of it: the closing is taken on a box twice the ball's reach wider)."""
    reach = np.ceil((2 * PASS_CLOSE_MM + 2 * VALLEY_SIGMA_MM) / spacing).astype(int) + 2
    box = bounding_box(band, reach)
    out = np.zeros_like(union)
    out[box] = closing(union[box], PASS_CLOSE_MM, spacing) & ~union[box]
    return out


def _on_refined_grid(sacrum: np.ndarray, ilium: np.ndarray, smooth: np.ndarray, spacing: np.ndarray,
                     region: np.ndarray, passable: np.ndarray, *, cut_off: bool) -> tuple[np.ndarray, np.ndarray]:
    """:func:`border_on_joint` on a coarse grid: the box of ``region`` (the band, and with ``cut_off`` the
    ilium near the sacrum's passage; with room for each bone's seed beyond it) is refined by a whole
    factor per axis to FINE_MM or finer (the CT by linear interpolation, the bones and ``passable`` by
    repetition), the border is moved there, and each coarse voxel of the two bones goes to the bone
    that holds most of its fine voxels."""
    factor = np.ceil(spacing / FINE_MM).astype(int)
    box = bounding_box(region, np.ceil(2 * VALLEY_SIGMA_MM / spacing).astype(int) + 2)

    def refined(mask: np.ndarray) -> np.ndarray:
        return mask[box].repeat(factor[0], 0).repeat(factor[1], 1).repeat(factor[2], 2)

    image = ndimage.zoom(smooth[box].astype(np.float32), factor, order=1, mode="nearest", grid_mode=True)
    fine_sacrum, _ = _border_on_joint(refined(sacrum), refined(ilium), image, spacing / factor, refined(passable),
                                      cut_off=cut_off)
    share = block_means(fine_sacrum, factor)
    union = (sacrum | ilium)[box]
    sacrum, ilium = sacrum.copy(), ilium.copy()
    sacrum[box] = union & (share >= 0.5)
    ilium[box] = union & (share < 0.5)
    return sacrum, ilium


def leaves_a_clear_gap(before: tuple[np.ndarray, np.ndarray], after: tuple[np.ndarray, np.ndarray],
                       smooth: np.ndarray, spacing: np.ndarray) -> bool:
    """Whether moving the sacrum-ilium border from ``before`` to ``after`` takes it off a clear joint gap.

    Judged where the border moved (within MOVE_REACH_MM of the voxels given again): if the border
    there lay on a gap darker than both its plates by CLEAR_GAP_HU or more (:func:`gap_contrast`)
    and the moved one lies on none as clear, the move left the joint. A joint gap narrower than
    the Hessian's scale can be missed by :func:`valley_sheetness`: varied phantom 114 at 2 mm shows
    its 3 mm joint as one dark voxel between two cortices (480, 100, 480 HU), which the Gaussian at
    2 mm averages into one bright slab, and step 3c moved the left border 3-4 voxels into the ilium,
    onto the valley between its cortex and its marrow (contrast there 24 HU, on the joint 210 HU);
    three short-axis needles called safe came within 0.7-1.8 mm of the true joint. Where the split had
    left the border in an ala instead (the real sacra at 1-3 mm), it lay on no such gap (-3 to 50 HU
    on 001 and 003 at 2 and 3 mm) and the move stands. A border on a fainter gap, FAINT_GAP_HU or
    more, is kept off a border below that: on real case 003 at 2 mm the first pass put the left
    border on the joint (68 HU) and the second moved it onto the ilium's cortex-marrow valley (6 HU),
    giving the sacrum 11 ml of the ilium. Not on grids coarser than MAX_SPACING_MM, where a voxel
    holds the gap only as a dip between its plates: real 003 at 3 mm (second noise draw) kept a
    split's border inside the ilium, on its cortex-marrow edge, and 2.1 % of its sacral bone there.

    Parameters
    ----------
    before, after : tuple of np.ndarray
        (sacrum, ilium) boolean masks before and after the move, each pair disjoint, same union.
    smooth : np.ndarray
        The (smoothed) CT in HU on the same grid.
    spacing : np.ndarray
        Voxel size (mm) per axis.
    """
    changed = before[0] ^ after[0]
    if not changed.any():
        return False
    spacing = np.asarray(spacing, dtype=float)
    box = bounding_box(changed, np.ceil((MOVE_REACH_MM + PLATE_MM) / spacing).astype(int) + 2)
    near = dilated_by_ball(changed[box], MOVE_REACH_MM, spacing)
    was = gap_contrast(before[0][box], before[1][box], smooth[box], spacing, near)
    now = gap_contrast(after[0][box], after[1][box], smooth[box], spacing, near)
    levels = (FAINT_GAP_HU, CLEAR_GAP_HU) if np.max(spacing) <= MAX_SPACING_MM else (CLEAR_GAP_HU,)
    return any(was >= level > now for level in levels)


def gap_contrast(sacrum: np.ndarray, ilium: np.ndarray, smooth: np.ndarray, spacing: np.ndarray,
                 where: np.ndarray | None = None) -> float:
    """How much darker the border between two bones is than the bone on both sides of it (HU).

    A border on a joint lies on a dark gap between two cortical plates; one inside a bone lies in
    its marrow, or beside its cortex, with bone as dark (or darker) on one side at least. The border
    is the voxels of either bone within one voxel of the other; the plates are each bone's voxels
    beyond that and within PLATE_MM more. The contrast is the lower of the plates' median HU less the
    border's median HU, over ``where`` if given (``-inf`` where the bones do not touch there).

    Parameters
    ----------
    sacrum, ilium : np.ndarray
        Boolean masks of the two bones (disjoint) on a grid of ``spacing``.
    smooth : np.ndarray
        The (smoothed) CT in HU on the same grid.
    spacing : np.ndarray
        Voxel size (mm) per axis.
    where : np.ndarray, optional
        Boolean mask of the voxels to measure on.
    """
    near = float(np.max(spacing)) + 0.01
    d_sac, d_il = distances_where_both_near(sacrum, ilium, spacing, near + PLATE_MM)
    border = (sacrum & (d_il <= near)) | (ilium & (d_sac <= near))
    plates = (sacrum & (d_il > near) & (d_il <= near + PLATE_MM), ilium & (d_sac > near) & (d_sac <= near + PLATE_MM))
    if where is not None:
        border = border & where
        plates = tuple(p & where for p in plates)
    if not border.any() or not all(p.any() for p in plates):
        return -np.inf
    return min(float(np.median(smooth[p])) for p in plates) - float(np.median(smooth[border]))
