"""Parts of and around the sacral bone: alae, anterior cortex band, SI joints, L5-S1 disc,
fracture lines and lytic lesions (canonical axes: x left, y posterior, z superior)."""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from segmentation.bone import SMOOTH_MM, dilated_by_ball, opening
from trajplan.distance import distance_mm
from trajplan.volume import bounding_box

CORTEX_BAND_MM = 2.0
CORTEX_CONTRAST_HU = 50.0                # a cortex is this much brighter than the bone behind it,
BEHIND_CORTEX_MM = (3.0, 10.0)           # measured this far behind the anterior cortex band
BRIGHT_BEHIND_HU = 200.0                 # what lies behind an uncorticated surface of contrast-filled bowel,
FLUID_SD_HU = 25.0                       # as even as a fluid there (smoothed; trabecular bone: 40-65 HU)
ALA_BEYOND_FORAMEN_MM = 2.0              # the ala begins this far lateral to a foramen's lumen
JOINT_REACH_MM = 4.0
JOINT_HALF_WIDTH_MM = 1.5
DISC_REACH_MM = 12.0
FRACTURE_SHEET_MM = 4.0                  # averaging within the plane of a fracture line
FRACTURE_ACROSS_MM = 1.0                 # and across it
FRACTURE_SIDE_MM = 5.0                   # compared with the bone this far to each side
FRACTURE_NOISE_K = 4.0
FRACTURE_THRESHOLD_HU = (50.0, 100.0)    # the contrast threshold stays within these
FRACTURE_GROW = 0.6
FRACTURE_INSET_MM = 1.0
FRACTURE_MIN_HEIGHT_MM = 15.0
FRACTURE_MAX_TOP_MM = 60.0               # a line reaches up into the S1-S2 ala: its top this near the alae's top
LESION_MIN_ML = 0.3
OPEN_REACH_MM = 10.0                      # a lesion's dark region followed this far, to see whether it opens outside
LESION_MIN_TRABECULAR_HU = 100.0          # darker trabecular bone's texture alone looks like lesions
LESION_SMOOTH_MM = 1.5                   # lesions are also sought on the CT averaged over this in the bone
LESION_CORE_MM = 3.0                     # where a ball of this radius fits in the dark (no fracture sheet)


def alae(bone: np.ndarray, foramina: dict[str, list[np.ndarray]], spacing: np.ndarray,
         midline_i: float, beyond_mm: float = ALA_BEYOND_FORAMEN_MM) -> dict[str, np.ndarray]:
    """Sacral bone lateral to the line through the lateral margins of the foramina, per side.

    The margin of each found foramen is ``beyond_mm`` (ALA_BEYOND_FORAMEN_MM) lateral to its most lateral
    lumen voxel: the line through the rims of the foramina's openings runs lateral to the
    channels' last dark voxels (by 2-2.5 mm on the phantoms, whatever the voxel size), and
    starting the ala there keeps the needle targets it offers off the foramina. The margins
    are interpolated over height between the foramina and held constant above the first and
    below the last.
    """
    x = np.arange(bone.shape[0])
    out = {}
    for side, sign in (("left", 1.0), ("right", -1.0)):
        levels = []
        for mask in foramina.get(side, []):
            idx = np.argwhere(mask)
            lateral = np.max(sign * (idx[:, 0] - midline_i)) + beyond_mm / spacing[0]
            levels.append((idx[:, 2].mean(), lateral))
        if not levels:
            bone_idx = np.argwhere(bone)
            width = np.max(np.abs(bone_idx[:, 0] - midline_i))
            levels = [(bone_idx[:, 2].mean(), 0.4 * width)]
        levels.sort()
        z = np.arange(bone.shape[2])
        margin = np.interp(z, [lv[0] for lv in levels], [lv[1] for lv in levels])
        lateral = sign * (x[:, None] - midline_i) > margin[None, :]                # (x, z)
        out[side] = bone & lateral[:, None, :]
    return out


AXIS_SMOOTH_MM = 10.0                    # the canal's course is smoothed over this height
END_FACE_COS = 0.6                       # a surface whose normal is within 53 degrees of the axis is an end face


def sacral_axis(canal: np.ndarray, spacing: np.ndarray) -> np.ndarray:
    """Unit vector (y, z) up the sacral canal at each height, shape (nz, 2).

    The canal's centre (posterior position y, mm) is smoothed over AXIS_SMOOTH_MM of
    height and differentiated; above and below the canal its end directions hold.
    Without a canal the axis is vertical.
    """
    nz = canal.shape[2]
    heights = np.flatnonzero(canal.any(axis=(0, 1)))
    if len(heights) < 3:
        return np.tile([0.0, 1.0], (nz, 1))
    centre_y = np.array([np.argwhere(canal[:, :, z])[:, 1].mean() for z in heights]) * spacing[1]
    z_mm = heights * spacing[2]
    centre_y = ndimage.gaussian_filter1d(np.interp(np.arange(heights[0], heights[-1] + 1) * spacing[2], z_mm,
                                                   centre_y), AXIS_SMOOTH_MM / spacing[2], mode="nearest")
    slope = np.gradient(centre_y, spacing[2])                # mm of y per mm of height
    slope = np.interp(np.arange(nz), np.arange(heights[0], heights[-1] + 1), slope)
    up = np.stack([slope, np.ones(nz)], axis=1)
    return up / np.linalg.norm(up, axis=1, keepdims=True)


def anterior_cortex(envelope: np.ndarray, bone: np.ndarray, spacing: np.ndarray, up: np.ndarray) -> np.ndarray:
    """Band of bone CORTEX_BAND_MM deep (the whole number of voxels nearest it) on the pelvic surface.

    The pelvic surface is what a ray from the front (along +y) meets first in each
    left-right x height column, where the surface does not face along the sacral axis
    ``up`` ((y, z) unit vector per height, :func:`sacral_axis`): the S1 endplate, the
    tops of the alae and the apex's face to the coccyx are not pelvic surface, however
    far the sacrum is tilted.
    """
    first = np.argmax(envelope, axis=1)                                     # (x, z)
    hit = envelope.any(axis=1)
    y = np.arange(envelope.shape[1])[None, :, None]
    depth = y - first[:, None, :]                                           # voxels behind the surface
    layers = max(int(round(CORTEX_BAND_MM / spacing[1])), 1)                # the whole voxels nearest the band
    smooth = ndimage.gaussian_filter(envelope.astype(np.float32), sigma=1.5 / np.asarray(spacing))
    xs, zs = np.nonzero(hit)
    ys = first[xs, zs]                                                      # the surface voxel of each column
    grad = np.stack([g[xs, ys, zs] for g in np.gradient(smooth)], axis=0) / np.asarray(spacing)[:, None]
    norm = np.maximum(np.linalg.norm(grad, axis=0), 1e-6)
    along = -(grad[1] * up[zs, 0] + grad[2] * up[zs, 1]) / norm             # outward normal . up
    facing = np.abs(along) <= END_FACE_COS
    reach = hit[:, None, :] & (depth >= 0) & (depth < layers)
    keep_column = np.zeros_like(hit)
    keep_column[xs[facing], zs[facing]] = True
    return bone & reach & keep_column[:, None, :]


def uncorticated_fraction(cortex: np.ndarray, bone: np.ndarray, smooth: np.ndarray, spacing: np.ndarray) -> float:
    """The fraction of the anterior ``cortex`` band's columns (along y) that show no cortex.

    A column shows none where the band's brightest voxel is less than CORTEX_CONTRAST_HU above
    the mean of the ``bone`` BEHIND_CORTEX_MM behind the band, that mean is at least
    BRIGHT_BEHIND_HU, and that bone is as even as a fluid (standard deviation below FLUID_SD_HU):
    what is joined to the sacrum there is as bright as dense bone but has no cortex of its own
    and no trabecular texture (contrast-filled bowel). A thin cortex over dark osteoporotic bone
    is dim but is no such thing (real sacra: 42-75 % of their columns without the second
    condition), nor is a thin cortex over dense trabecular bone (real sacra at 2 mm: 44 and 58 %
    without the third; their bone there varies by 49-66 HU). Columns with no bone that deep are
    not counted; 0 when none is left. Only meaningful where the voxels resolve a cortex (see
    ``sacral.CORTEX_RESOLVED_MM``).
    """
    y = np.arange(cortex.shape[1])[None, :, None]
    band = cortex.any(axis=1)                                               # (x, z)
    brightest = np.where(cortex, smooth, -np.inf).max(axis=1)
    back = np.where(cortex, y, -1).max(axis=1)                              # the band's deepest row
    behind_mm = (y - back[:, None, :]) * spacing[1]
    behind = bone & (behind_mm > BEHIND_CORTEX_MM[0]) & (behind_mm <= BEHIND_CORTEX_MM[1]) & band[:, None, :]
    count = behind.sum(axis=1)
    counted = band & (count > 0)
    if not counted.any():
        return 0.0
    values = np.where(behind, smooth, 0.0).astype(np.float64)
    mean_behind = values.sum(axis=1)[counted] / count[counted]
    sd_behind = np.sqrt(np.maximum((values ** 2).sum(axis=1)[counted] / count[counted] - mean_behind ** 2, 0.0))
    return float(np.mean((brightest[counted] - mean_behind < CORTEX_CONTRAST_HU) & (mean_behind >= BRIGHT_BEHIND_HU)
                         & (sd_behind < FLUID_SD_HU)))


def distances_where_both_near(a: np.ndarray, b: np.ndarray, spacing: np.ndarray,
                              reach_mm: float) -> tuple[np.ndarray, np.ndarray]:
    """Distances (mm) to the nearest voxel of ``a`` and of ``b``, exact wherever both are within ``reach_mm``.

    Only the box where both can be that near (each mask's box widened by the reach, the two
    overlapped), widened again by the reach to hold the nearest voxels, is computed; elsewhere
    the distances are ``inf``. Any distance up to ``reach_mm`` that either map shows is exact, so a
    test ``d <= r`` with ``r <= reach_mm`` reads them as it would the full transforms.
    """
    d_a = np.full(a.shape, np.inf)
    d_b = np.full(b.shape, np.inf)
    if not a.any() or not b.any():
        return d_a, d_b
    pad = np.ceil(reach_mm / np.asarray(spacing)).astype(int) + 1
    box_a, box_b = bounding_box(a, pad), bounding_box(b, pad)
    lower = [max(p.start, q.start) for p, q in zip(box_a, box_b)]
    upper = [min(p.stop, q.stop) for p, q in zip(box_a, box_b)]
    if any(lo >= up for lo, up in zip(lower, upper)):
        return d_a, d_b
    box = tuple(slice(max(lo - w, 0), min(up + w, n)) for lo, up, w, n in zip(lower, upper, pad, a.shape))
    for mask, out in ((a, d_a), (b, d_b)):
        if mask[box].any():
            out[box] = distance_mm(~mask[box], spacing)
    return d_a, d_b


def joints(sacrum: np.ndarray, ilium: np.ndarray, solid: np.ndarray, spacing: np.ndarray) -> np.ndarray:
    """Sacroiliac joint: the sheet where the sacrum meets this ilium, and the gaps beside it.

    The bone split puts the sacrum-ilium border on the darkest sheet between the two
    bones, which is the joint space; but a narrow joint is inside the solid bone (its
    cortices are sealed together), so the joint is the band of JOINT_HALF_WIDTH_MM on
    either side of that border, plus the non-bone voxels within JOINT_REACH_MM of both
    bones (a joint space wide enough to stay open).
    """
    near = max(JOINT_HALF_WIDTH_MM, float(np.max(spacing)) + 0.01)     # at least the neighbouring voxel
    d_sac, d_il = distances_where_both_near(sacrum, ilium, spacing, max(near, JOINT_REACH_MM))
    border = (sacrum | ilium) & (d_sac <= near) & (d_il <= near)
    return border | (~solid & (d_sac <= JOINT_REACH_MM) & (d_il <= JOINT_REACH_MM))


def disc(sacrum: np.ndarray, l5: np.ndarray, solid: np.ndarray, smooth: np.ndarray,
         spacing: np.ndarray, midline_i: float) -> np.ndarray:
    """L5-S1 disc: soft-tissue voxels between L5 and the sacrum, near the midline.

    Between means with sacral bone below and L5 above in the same head-to-foot column, each
    within DISC_REACH_MM: dark bone inside the sacrum near L5's articular processes (dark
    marrow the solid bone left out) is not disc.
    """
    d_sac, d_l5 = distances_where_both_near(sacrum, l5, spacing, DISC_REACH_MM)
    x = np.arange(sacrum.shape[0])[:, None, None]
    central = np.abs(x - midline_i) * spacing[0] < 30.0
    near = (~solid & central & (d_sac <= DISC_REACH_MM) & (d_l5 <= DISC_REACH_MM)
            & (d_sac + d_l5 <= DISC_REACH_MM * 1.3) & (smooth > -100) & (smooth < 250))
    reach = max(int(np.ceil(DISC_REACH_MM / spacing[2])), 1)
    return near & _within_below(sacrum, reach) & _within_below(l5[:, :, ::-1], reach)[:, :, ::-1]


def _within_below(mask: np.ndarray, steps: int) -> np.ndarray:
    """Voxels with ``mask`` at most ``steps`` voxels below them (lower index along the last axis)."""
    total = np.cumsum(mask, axis=2, dtype=np.int32)
    padded = np.concatenate([np.zeros(mask.shape[:2] + (steps + 1,), np.int32), total], axis=2)
    # padded[..., k + steps + 1] is the count up to slice k; the window is slices z - steps .. z - 1
    z = np.arange(mask.shape[2])
    return (padded[:, :, z + steps] - padded[:, :, z]) > 0


def fracture_lines(smooth: np.ndarray, ala_mask: np.ndarray, spacing: np.ndarray) -> np.ndarray:
    """Fracture lines in the alae: thin near-sagittal sheets brighter or darker than the bone beside them.

    Denis zone I insufficiency fractures run through the ala roughly parallel to the SI
    joint; on CT they show as a thin line, dark (the crack) or bright (its sclerotic
    margins), in trabecular bone whose texture is as strong as the line itself. The line
    is a sheet, so the CT is averaged within near-sagittal planes (Gaussian of
    FRACTURE_SHEET_MM along y and z, FRACTURE_ACROSS_MM along x; only ala voxels count)
    and each voxel is compared with the averages FRACTURE_SIDE_MM to its left and right.
    Where it stands out from both by more than the threshold (FRACTURE_NOISE_K x the
    robust spread of that contrast over the ala, kept within FRACTURE_THRESHOLD_HU), at
    least FRACTURE_INSET_MM inside the ala, the sheet is seeded; it is grown through the
    ala where the contrast exceeds FRACTURE_GROW x the threshold. Near the ala's edge (the
    SI joint, the foramina), where only one side lies in the ala, the line is followed
    where the average is lowest (or highest) across it and differs from that side by as
    much: a slope towards the edge is no line. A piece is kept only if a connected part of it
    compared on both sides spans FRACTURE_MIN_HEIGHT_MM cranio-caudally (one-sided growth
    does not join short pieces into a tall one). The averaging widens the sheet, so
    only its ridge (the contrast's maximum along x) and one voxel either side are kept.
    Everything is computed in the alae's bounding box, widened by the averaging's reach and
    the side distance: the same result as on the whole array, unless that margin meets the
    array's left or right edge (where the sideways comparison wraps round either way).

    Last, a line is kept only where it reaches up into the S1-S2 ala, its top no more than
    FRACTURE_MAX_TOP_MM below the top of ``ala_mask`` (:func:`_reaching_the_upper_ala`).
    """
    out = np.zeros_like(ala_mask)
    if not ala_mask.any():
        return out
    sigma = (FRACTURE_ACROSS_MM / spacing[0], FRACTURE_SHEET_MM / spacing[1], FRACTURE_SHEET_MM / spacing[2])
    shift = max(int(round(FRACTURE_SIDE_MM / spacing[0])), 1)
    reach = np.array([int(4.0 * s + 0.5) for s in sigma]) + shift + 2     # scipy's Gaussian truncates at 4 sigma
    box = bounding_box(ala_mask, reach)
    out[box] = _fracture_sheets(smooth[box], ala_mask[box], spacing, sigma, shift)
    return _reaching_the_upper_ala(out, ala_mask, spacing)


def _reaching_the_upper_ala(lines: np.ndarray, ala_mask: np.ndarray, spacing: np.ndarray) -> np.ndarray:
    """The pieces of ``lines`` (26-connected) whose top lies no more than FRACTURE_MAX_TOP_MM below
    the top of ``ala_mask`` (canonical z up).

    The insufficiency fractures that sacroplasty treats run down through the ala from S1 (Denis
    zone I, S1-S3; the phantom's lines run from its top to 55 % of its height: on the 15 fractured
    phantoms of a 20-phantom cohort (seed 100, 1-2 mm) the pieces found start 1-17 mm below the
    alae's top, one 44 mm). A sheet found wholly below that is a cortical wall of the lower sacrum
    that the averaging makes look like a line: on real case 001 (intact), the medial wall of its
    left sacral cornu beside the hiatus, 72-83 mm below the alae's top, was labelled ``fracture`` at
    2 mm, 3 mm and with its bone darkened (0.2-1.8 ml), and short-axis needles aimed at it ended
    outside the bone.
    """
    if not lines.any():
        return lines
    top = int(np.flatnonzero(ala_mask.any(axis=(0, 1))).max())
    pieces, count = ndimage.label(lines, structure=np.ones((3, 3, 3)))
    keep = np.zeros(count + 1, dtype=bool)
    for i, box in enumerate(ndimage.find_objects(pieces), start=1):
        keep[i] = (top - (box[2].stop - 1)) * spacing[2] <= FRACTURE_MAX_TOP_MM
    return keep[pieces]


def _fracture_sheets(smooth: np.ndarray, ala_mask: np.ndarray, spacing: np.ndarray, sigma: tuple[float, ...],
                     shift: int) -> np.ndarray:
    """:func:`fracture_lines` in a box that holds the alae with a margin (``sigma`` of the
    in-plane averaging in voxels, ``shift`` voxels to the bone compared on each side)."""
    out = np.zeros_like(ala_mask)
    mean, cover = _mean_within(smooth, ala_mask, sigma)
    left, right = np.roll(mean, shift, axis=0), np.roll(mean, -shift, axis=0)
    contrast = np.maximum(mean - np.maximum(left, right), np.minimum(left, right) - mean)
    has_left, has_right = np.roll(cover, shift, axis=0) > 0.3, np.roll(cover, -shift, axis=0) > 0.3
    measurable = ala_mask & has_left & has_right
    one_sided = ala_mask & (has_left ^ has_right)        # near the ala's edge: one side to compare with
    side = np.where(has_left, left, right)
    before, after = np.roll(mean, 1, axis=0), np.roll(mean, -1, axis=0)
    lowest, highest = (mean <= before) & (mean <= after), (mean >= before) & (mean >= after)
    contrast = np.where(one_sided, np.where(lowest, side - mean, np.where(highest, mean - side, 0.0)), contrast)
    inset = max(int(round(FRACTURE_INSET_MM / float(np.min(spacing)))), 1)
    inner = measurable & ndimage.binary_erosion(ala_mask, structure=np.ones((3, 3, 3)), iterations=inset)
    if not inner.any():
        return out
    values = contrast[inner]
    spread = 1.4826 * float(np.median(np.abs(values - np.median(values))))
    threshold = float(np.clip(FRACTURE_NOISE_K * spread, *FRACTURE_THRESHOLD_HU))
    seeds = inner & (contrast > threshold)
    sheet = ndimage.binary_propagation(seeds, mask=(measurable | one_sided) & (contrast > FRACTURE_GROW * threshold),
                                       structure=np.ones((3, 3, 3)))
    # A piece is kept when a part of it compared on both sides is tall enough on its own.
    tall = np.zeros_like(sheet)
    cores, _ = ndimage.label(sheet & measurable, structure=np.ones((3, 3, 3)))
    for i, box in enumerate(ndimage.find_objects(cores), start=1):
        if box is not None and (box[2].stop - box[2].start) * spacing[2] >= FRACTURE_MIN_HEIGHT_MM:
            tall[box] |= cores[box] == i
    out = ndimage.binary_propagation(tall, mask=sheet, structure=np.ones((3, 3, 3)))
    ridge = (contrast >= np.roll(contrast, 1, axis=0)) & (contrast >= np.roll(contrast, -1, axis=0))
    ridge |= np.roll(ridge, 1, axis=0) | np.roll(ridge, -1, axis=0)
    return out & ridge


def lesions(smooth: np.ndarray, bone: np.ndarray, lumens: np.ndarray, spacing: np.ndarray,
            dark_hu: float, smooth_mm: float = SMOOTH_MM) -> np.ndarray:
    """Lytic lesions: compact dark regions (>= LESION_MIN_ML) inside the sacral bone, off the lumens.

    The voxels below ``dark_hu`` in ``smooth`` that an opening by a 3-voxel cube keeps (thin
    cracks do not survive it). A lesion keeps the trabecular texture of the bone it replaced, so
    on a coarse scan its dark voxels are speckled and the opening can take it all: the same is
    done on ``smooth`` averaged within the bone over LESION_SMOOTH_MM where a ball of
    LESION_CORE_MM fits (no fracture sheet), and what that finds is grown by LESION_SMOOTH_MM
    through the dark voxels (the averaging pulls its rim in). Not for trabecular bone darker
    than LESION_MIN_TRABECULAR_HU: its texture alone gives dark blobs of a lesion's size.
    ``smooth`` is the CT smoothed by ``smooth_mm``.
    """
    inside = bone & ~lumens
    dark = inside & (smooth < dark_hu)
    cube = np.ones((3, 3, 3), dtype=bool)
    opened = ndimage.binary_opening(dark, structure=cube)
    sigma = np.sqrt(max(LESION_SMOOTH_MM ** 2 - smooth_mm ** 2, 0.0)) / np.asarray(spacing)
    mean, _ = _mean_within(smooth, inside, sigma)
    found = opening(inside & (mean < dark_hu), LESION_CORE_MM, spacing)
    grow = max(int(round(LESION_SMOOTH_MM / float(np.min(spacing)))), 1)
    found = opened | (ndimage.binary_dilation(found, structure=cube, iterations=grow) & (found | dark))
    return _lesion_pieces(found, inside, spacing)


def closed_lesions(lytic: np.ndarray, smooth: np.ndarray, bone: np.ndarray, walled: np.ndarray,
                   spacing: np.ndarray, dark_hu: float) -> tuple[np.ndarray, float]:
    """The pieces of ``lytic`` whose dark region stays inside the bone, and the ml of those dropped.

    A lytic lesion is walled in by the bone it destroys. A dark piece whose dark voxels (``smooth``
    below ``dark_hu``, not in ``walled``: the lumens and SI joints found, dark by nature) lead,
    within OPEN_REACH_MM of it, to at least as much dark volume outside ``bone`` as the piece holds
    is a gap in the bone that opens into the soft tissue (a foramen that the lumen search missed,
    taken into the sacrum), not a lesion: real sacrum 001 with its trabecular bone darkened, on
    two of three noise draws, had 0.6-1.0 ml of its left S3 foramen labelled lesion, and the
    planner aimed short-axis needles at it, 3-7 mm outside the bone.
    """
    labels, count = ndimage.label(lytic)
    free = (smooth < dark_hu) & ~walled
    pad = np.ceil(OPEN_REACH_MM / np.asarray(spacing)).astype(int) + 1
    out = lytic.copy()
    for i, box in enumerate(ndimage.find_objects(labels), start=1):
        wide = tuple(slice(max(b.start - p, 0), b.stop + p) for b, p in zip(box, pad))
        piece = labels[wide] == i
        reach = free[wide] & dilated_by_ball(piece, OPEN_REACH_MM, spacing)
        grown = ndimage.binary_propagation(piece, mask=reach | piece)
        if np.count_nonzero(grown & ~bone[wide]) >= np.count_nonzero(piece):
            out[wide] &= ~piece
    return out, float(np.count_nonzero(lytic & ~out) * np.prod(spacing) / 1000.0)


def _mean_within(values: np.ndarray, mask: np.ndarray, sigma) -> tuple[np.ndarray, np.ndarray]:
    """Gaussian average (``sigma`` in voxels) of ``values`` over ``mask`` voxels only, and the
    mask's own smoothed cover (the weight behind each average)."""
    weight = mask.astype(np.float32)
    cover = ndimage.gaussian_filter(weight, sigma)
    return ndimage.gaussian_filter(values * weight, sigma) / np.maximum(cover, 1e-3), cover


def _lesion_pieces(found: np.ndarray, inside: np.ndarray, spacing: np.ndarray) -> np.ndarray:
    """The pieces of ``found`` of at least LESION_MIN_ML, each dilated by a voxel within ``inside``."""
    labels, count = ndimage.label(found)
    out = np.zeros_like(found)
    voxel_ml = float(np.prod(spacing)) / 1000.0
    sizes = np.bincount(labels.ravel(), minlength=count + 1)
    for i, box in enumerate(ndimage.find_objects(labels), start=1):
        if sizes[i] * voxel_ml >= LESION_MIN_ML:
            wide = tuple(slice(max(b.start - 1, 0), b.stop + 1) for b in box)     # room for the dilation
            out[wide] |= ndimage.binary_dilation(labels[wide] == i) & inside[wide]
    return out
