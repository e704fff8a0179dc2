"""The sacral canal and the sacral foramina: dark channels walled by the sacral bone.

Canal: in each axial slice it is the hole on the midline that the sacral bone
encloses once the foramen openings are closed (a 2-D closing wider than a foramen,
narrower than the canal); its width is an opening of the per-slice width profile
(the largest minimum over the windows of slices that hold a slice), which takes off the
slices where the foramina widen the hole however many there are, and it ends in front
where the hole ends on the midline (the back of the vertebral bodies; running
median too): the foramina leave the canal laterally and run forward, so the parts
of the hole in front of that line and beside the midline are foramina. At its open
ends (the upper opening above the S1 body, the hiatus) the last full section is carried
on while bone walls it in behind and on both sides.

Foramina: the dark voxels (below half the trabecular HU) inside the closed sacral
envelope that connect to the canal, in pieces that reach out beyond the canal's side
wall (the pieces that do not are the canal's own corners, given back to it, as are
the pieces below the canal: its hiatus); grouped by height into levels per side
(without the voxels right beside the canal, which would join one level to the next),
named S1..S4 from the top, and each grown by FORAMEN_GROW_MM inside the envelope (the
smoothed bright walls pull the threshold edge into the lumen). A level that stops short of
the dorsal surface takes the dorsal branch that a search on a less smoothed CT finds or, in
dim bone whose speckle that search joins, the branch traced as the path of least contrast.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage
from skimage.graph import MCP_Geometric

from segmentation.bone import (
    ball,
    closing,
    dilated,
    fill_holes,
    piece_maxima,
    piece_sizes_and_heights,
    smooth_hu,
)
from trajplan.distance import distance_mm
from trajplan.volume import bounding_box

CANAL_SEARCH_MM = 12.0
MIDLINE_BAND_MM = 2.0
ENVELOPE_CLOSE_MM = 5.0
LEVEL_GAP_MM = 8.0
MIN_LEVEL_ML = 0.02
MIN_REACH_MM = 4.0
MAX_LEVEL_ML = 4.0      # a foramen channel holds about 0.3-2 ml
MIN_DARK_HU = 10.0
FORAMEN_LEVELS = 4      # S1-S4 on each side
FORAMEN_GROW_MM = 1.0   # smoothing against the bright walls shrinks a thresholded lumen by about this
DORSAL_GAP_MM = 1.5     # a foramen ending this far (plus a voxel) inside the dorsal surface has lost its dorsal branch
SHARP_SMOOTH_MM = 0.5   # the CT for narrow channels is smoothed this little (segmentation.bone.SMOOTH_MM: 0.7)
TRACE_PAD_MM = 5.0      # the traced dorsal branch stays within its channel's height and lateral range plus this
TRACE_FLOOR = 0.01      # the least cost of a millimetre of traced path (a lumen voxel's)
DIM_BONE_HU = 100.0     # in trabecular bone darker than this, dark voxels join through corners too
                        # (see _foramina_below)
FULL_SECTION = 0.8      # a canal section this fraction of the median is carried through the open ends
CANAL_PIECE_ML = 1.0    # a piece of the canal's axial holes this large, apart from the largest ...
CANAL_PIECE_GAP_MM = 10.0   # ... no farther than this above or below it (across an interlaminar gap) ...
CANAL_PIECE_OFFSET_MM = 10.0    # ... and centred this near it left to right is the canal too


def _disk(radius_mm: float, spacing: np.ndarray) -> np.ndarray:
    return ball(radius_mm, np.asarray(spacing[:2]))


def find_canal(sacrum: np.ndarray, spacing: np.ndarray, midline_i: float) -> np.ndarray:
    """The sacral canal (canonical axes), from axial holes of the sacrum near the midline."""
    canal = np.zeros_like(sacrum)
    disk = _disk(ENVELOPE_CLOSE_MM, spacing)
    half_widths = np.full(sacrum.shape[2], np.nan)
    fronts = np.full(sacrum.shape[2], np.nan)      # the hole's most anterior row on the midline
    x = np.arange(sacrum.shape[0])
    for z in range(sacrum.shape[2]):
        section = sacrum[:, :, z]
        if not section.any():
            continue
        closed = ndimage.binary_closing(section, structure=disk, border_value=0)
        holes = fill_holes(closed) & ~section
        labels, count = ndimage.label(holes)
        if not count:
            continue
        near = labels[np.abs(x - midline_i) * spacing[0] <= CANAL_SEARCH_MM, :]
        ids = np.unique(near[near > 0])
        if not len(ids):
            continue
        hole = np.isin(labels, ids)
        canal[:, :, z] = hole
        xs = np.flatnonzero(hole.any(axis=1))
        half_widths[z] = max(abs(xs.min() - midline_i), abs(xs.max() - midline_i)) + 0.5
        on_midline = np.flatnonzero(hole[np.abs(x - midline_i) * spacing[0] <= MIDLINE_BAND_MM].any(axis=0))
        if len(on_midline):
            fronts[z] = on_midline.min()
    valid = np.flatnonzero(~np.isnan(half_widths))
    if not len(valid):
        return canal
    window = max(int(round(10.0 / spacing[2])), 2)
    # The canal narrows smoothly from S1 to the hiatus, but a slice where foramina join its
    # hole is wider over the foramen's height, and low down, where the foramina crowd, such
    # slices are most of any window. An opening of the half-width profile (per slice, the
    # largest minimum of a window of 2 * window + 1 slices that holds it) takes off every bump
    # shorter than that window, however many of the slices around it are bumps too.
    limits = ndimage.grey_opening(half_widths[valid], size=2 * window + 1, mode="nearest")
    y = np.arange(sacrum.shape[1])
    for z, limit in zip(valid, limits):
        canal[:, :, z] &= (np.abs(x - midline_i) <= limit)[:, None]
        front = fronts[max(z - window, 0): z + window + 1]
        if np.isfinite(front).any():
            canal[:, :, z] &= (y >= np.nanmedian(front) - 0.5)[None, :]
    return _canal_pieces(canal, spacing)


def _canal_pieces(holes: np.ndarray, spacing: np.ndarray) -> np.ndarray:
    """The pieces of the canal's axial ``holes`` (corner connectivity) that make the canal: the largest,
    and each piece of at least CANAL_PIECE_ML wholly above or below the canal so far, no farther than
    CANAL_PIECE_GAP_MM, and centred within CANAL_PIECE_OFFSET_MM of it left to right.

    The canal's ring is open posteriorly between the laminae of two segments (and at a
    spina bifida occulta), so its axial holes stop there for a slice or more: on the real sacrum
    001 at 2 mm its whole S1 segment (4.1 ml, 71 % of it in the reference's axial holes and none in
    its bone) lay above such a gap and was left out, then filled as a marrow pocket walled in by
    the sacrum (step 10a) and labelled bone. A piece beside the canal (its heights overlapping the
    canal's) is not its continuation: on a phantom of osteoporosis 1.0 at 1 mm a dark compartment in
    front of it (1.2 ml) was taken in, and the foramina named from that canal fell from Dice 0.83 to 0.20.
    """
    labels, count = ndimage.label(holes, structure=np.ones((3, 3, 3)))
    if count <= 1:
        return holes
    sizes = np.bincount(labels.reshape(-1), minlength=count + 1)
    x_sums = np.bincount(labels.reshape(-1), weights=np.broadcast_to(
        np.arange(holes.shape[0])[:, None, None], holes.shape).reshape(-1), minlength=count + 1)
    boxes = ndimage.find_objects(labels)
    largest = 1 + int(np.argmax(sizes[1:]))
    kept = {largest}
    low, high = boxes[largest - 1][2].start, boxes[largest - 1][2].stop - 1
    big = [i for i in range(1, count + 1) if sizes[i] * np.prod(spacing) / 1000.0 >= CANAL_PIECE_ML]
    added = True
    while added:
        added = False
        centre = sum(x_sums[i] for i in kept) / sum(sizes[i] for i in kept)
        for i in big:
            if i in kept:
                continue
            z0, z1 = boxes[i - 1][2].start, boxes[i - 1][2].stop - 1
            gap = max(z0 - high, low - z1) * spacing[2]      # not beside the canal: above or below it
            offset = abs(x_sums[i] / sizes[i] - centre) * spacing[0]
            if 0 < gap <= CANAL_PIECE_GAP_MM and offset <= CANAL_PIECE_OFFSET_MM:
                kept.add(i)
                low, high, added = min(low, z0), max(high, z1), True
    return np.isin(labels, sorted(kept))


def find_foramina(smooth: np.ndarray, sacrum: np.ndarray, canal: np.ndarray, spacing: np.ndarray,
                  midline_i: float, dark_hu: float, hu: np.ndarray | None = None, *,
                  lower: bool = True) -> tuple[dict[str, list[np.ndarray]], np.ndarray, float]:
    """Foramen channels per side, each a list of masks ordered from the top (S1) down.

    Dark pieces joined to the canal that reach less than MIN_REACH_MM beyond its side wall are
    the canal's own corners (where its width limit cut it, its wider upper opening): they are
    returned apart, as ``canal_corners``.

    When a level comes out larger than MAX_LEVEL_ML (dark osteoporotic bone or a fracture
    line joined the channel), the search is repeated with the threshold halved, down to
    MIN_DARK_HU (unless ``lower`` is False: bone darker than the lumens, which a lower
    threshold would lose first). A level that the lower threshold loses altogether (a narrow channel that the
    smoothing lifts above it) is searched again at the threshold that last found it no larger
    than MAX_LEVEL_ML, on a side left with fewer than FORAMEN_LEVELS.

    Every foramen opens on the dorsal surface, but a narrow channel between bright walls (the
    dorsal branch of a small S4 foramen) is a dark line one or two voxels wide that the
    smoothing of ``smooth`` lifts above the threshold, and in dim bone the branch is barely
    darker than the bone. When ``hu`` is given and a level's channel (its part MIN_REACH_MM
    beyond the canal's side wall) stops more than DORSAL_GAP_MM plus a voxel short of the
    dorsal surface, the search is repeated on ``hu`` smoothed by only SHARP_SMOOTH_MM, at the
    same threshold, and the level takes the channels found there that it overlaps (see
    :func:`_extension`). Where a level of that search is larger than MAX_LEVEL_ML (trabecular
    speckle of dim bone, which ``smooth`` evens out, joined the channels), the level takes
    instead the branch traced from it to the dorsal surface as the darkest way out (see
    :func:`_traced_branch`). Only such levels change: elsewhere the sharper search would widen
    the channels that FORAMEN_GROW_MM already sizes.

    Parameters
    ----------
    smooth : array
        The CT smoothed (HU).
    dark_hu : float
        Lumen threshold (below it a voxel can be a lumen): about half the trabecular HU.
    hu : array, optional
        The CT itself (HU, unsmoothed), for that sharper search.
    lower : bool
        Whether to halve the threshold where a level is too large.

    Returns
    -------
    foramina : dict
        ``"left"`` / ``"right"`` -> masks, top level first.
    canal_corners : array
        Lumen beside ``canal`` that belongs to it.
    lumen_hu : float
        The lowest threshold used (``dark_hu`` or lower).
    """
    envelope = fill_holes(closing(sacrum | canal, ENVELOPE_CLOSE_MM, spacing))
    if not envelope.any():
        return _foramina_in_box(smooth, envelope, canal, spacing, midline_i, dark_hu, hu, lower)
    # Everything below looks no further than this beyond the envelope: the same result in its box.
    reach_mm = max(TRACE_PAD_MM, DORSAL_GAP_MM + float(np.max(spacing)), 4.0 * SHARP_SMOOTH_MM)
    box = bounding_box(envelope, np.ceil(reach_mm / np.asarray(spacing, dtype=float)).astype(int) + 2)
    found, corners, lumen_hu = _foramina_in_box(smooth[box], envelope[box], canal[box], spacing,
                                                midline_i - box[0].start, dark_hu,
                                                None if hu is None else hu[box], lower)

    def whole(mask: np.ndarray) -> np.ndarray:
        out = np.zeros(sacrum.shape, dtype=bool)
        out[box] = mask
        return out

    return {side: [whole(m) for m in masks] for side, masks in found.items()}, whole(corners), lumen_hu


def _foramina_in_box(smooth: np.ndarray, envelope: np.ndarray, canal: np.ndarray, spacing: np.ndarray,
                     midline_i: float, dark_hu: float, hu: np.ndarray | None,
                     lower: bool) -> tuple[dict[str, list[np.ndarray]], np.ndarray, float]:
    """:func:`find_foramina` in the box of the sacral ``envelope`` (the sacrum and canal closed)."""
    bone_hu = 2.0 * dark_hu                     # the trabecular bone's HU, before any halving
    threshold = np.full(smooth.shape, dark_hu, dtype=np.float32)
    found, corners = _foramina_below(smooth, envelope, canal, spacing, midline_i, threshold, bone_hu)
    higher: list[tuple[float, dict[str, list[np.ndarray]]]] = []
    while lower and _any_too_large(found, spacing) and dark_hu / 2 >= MIN_DARK_HU:
        higher.append((dark_hu, found))
        dark_hu /= 2
        threshold[:] = dark_hu
        found, corners = _foramina_below(smooth, envelope, canal, spacing, midline_i, threshold, bone_hu)
    # A level that a lower threshold lost altogether (a narrow S3 or S4 channel, which the
    # smoothing lifts above it) is searched at the lowest threshold that found it no larger
    # than MAX_LEVEL_ML, on a side left with fewer than FORAMEN_LEVELS.
    for hu_then, found_then in reversed(higher):
        restored = False
        for side, masks in found_then.items():
            if len(found[side]) >= FORAMEN_LEVELS:
                continue
            for level in masks:
                if not _too_large(level, spacing) and not any((level & m).any() for m in found[side]):
                    threshold[level] = hu_then
                    restored = True
        if restored:
            found, corners = _foramina_below(smooth, envelope, canal, spacing, midline_i, threshold, bone_hu)
    if hu is None or _any_too_large(found, spacing) or not canal.any():
        return found, corners, dark_hu
    beyond = _beyond_side_wall(canal, spacing, midline_i)
    outside = _dorsal_outside(envelope, canal, beyond)
    gap = distance_mm(~outside, spacing)
    reach = DORSAL_GAP_MM + spacing.max()

    def short(level: np.ndarray) -> bool:
        # The channel's own gap: not the strip up the canal's side wall that a level takes in,
        # which can reach the dorsal surface at the hiatus.
        channel = level & beyond
        return bool(gap[channel if channel.any() else level].min() > reach)

    flags = {side: [short(m) for m in masks] for side, masks in found.items()}
    if not any(any(f) for f in flags.values()):
        return found, corners, dark_hu
    sharp = smooth_hu(hu, spacing, SHARP_SMOOTH_MM)
    sharp_found, _ = _foramina_below(sharp, envelope, canal, spacing, midline_i, threshold, bone_hu)
    sharp_ok = not _any_too_large(sharp_found, spacing)
    claimed = np.zeros_like(canal)
    for masks in found.values():
        for level in masks:
            claimed |= level
    out: dict[str, list[np.ndarray]] = {}
    for side, masks in found.items():
        out[side] = []
        for level, flag in zip(masks, flags[side]):
            if flag:
                if sharp_ok:
                    added = _extension(level, masks, sharp_found[side], spacing) & ~claimed
                else:
                    # The level's lumen HU from its voxels under the threshold that found it:
                    # its growth by FORAMEN_GROW_MM takes in the bright walls' partial volume,
                    # which in a narrow channel is most of it.
                    core = level & (smooth < threshold)
                    lumen_hu = float(np.median(smooth[core if core.any() else level]))
                    added = _traced_branch(level, level & beyond, claimed | canal | corners, smooth,
                                           envelope, outside, spacing, lumen_hu, bone_hu)
                level = level | added
                claimed |= added
            out[side].append(level)
    return out, corners & ~claimed, dark_hu


def _traced_branch(level: np.ndarray, channel: np.ndarray, taken: np.ndarray, smooth: np.ndarray,
                   envelope: np.ndarray, outside: np.ndarray, spacing: np.ndarray, lumen_hu: float,
                   bone_hu: float) -> np.ndarray:
    """The dorsal branch of a foramen ``level`` that no threshold found, traced as the darkest way out.

    Every sacral foramen opens on the dorsal surface, so the branch is there even where it is
    barely darker than the bone around it (dim osteoporotic bone, whose speckle the sharper
    search joins). The path of least cost from the level's ``channel`` (its part beyond the
    canal's side wall) to the dorsal ``outside`` is taken, within the channel's height and
    lateral range plus TRACE_PAD_MM, where a millimetre costs ``((HU - lumen_hu) / (bone_hu -
    lumen_hu)) ** 2`` (TRACE_FLOOR at least, and in the level): a path sums the contrast along
    its whole length, which no voxel's threshold can, and it leaves the bone where the dorsal
    cortex is open. The path's part outside the level, widened to the level's own radius (the
    largest distance from its voxels to its edge, less the half voxel by which that overstates
    it; at least a voxel: a dorsal foramen is no wider than its channel), inside ``envelope``
    and not in ``taken`` (the canal, the levels), is the branch. Nothing is returned when
    ``lumen_hu`` (the level's lumen) is not darker than ``bone_hu`` by MIN_DARK_HU, when no way
    out is found, or when that part is shorter than DORSAL_GAP_MM (the level's lumen beside the
    channel already reaches the surface there).
    """
    nothing = np.zeros_like(level)
    if bone_hu - lumen_hu < MIN_DARK_HU:
        return nothing
    core = channel if channel.any() else level
    zs = np.flatnonzero(core.any(axis=(0, 1)))
    xs = np.flatnonzero(core.any(axis=(1, 2)))
    pad = np.ceil(TRACE_PAD_MM / spacing).astype(int)
    box = (slice(max(xs[0] - pad[0], 0), xs[-1] + pad[0] + 1), slice(None),
           slice(max(zs[0] - pad[2], 0), zs[-1] + pad[2] + 1))
    inside, start, exits = envelope[box], level[box], outside[box]
    mouth = exits & ndimage.binary_dilation(inside, structure=np.ones((3, 3, 3)))
    if not mouth.any():
        return nothing
    contrast = np.clip(smooth[box] - lumen_hu, 0.0, None) / (bone_hu - lumen_hu)
    cost = np.maximum(contrast ** 2, TRACE_FLOOR)
    cost[start | mouth] = TRACE_FLOOR
    cost[(~inside & ~mouth) | (taken[box] & ~start)] = np.inf
    router = MCP_Geometric(cost, sampling=tuple(spacing))
    costs, _ = router.find_costs(np.argwhere(core[box]), np.argwhere(mouth), find_all_ends=False)
    ends = np.where(mouth, costs, np.inf)
    if not np.isfinite(ends).any():
        return nothing
    trace = np.asarray(router.traceback(np.unravel_index(int(np.argmin(ends)), ends.shape)))
    new = ~start[tuple(trace.T)] & inside[tuple(trace.T)]          # the path's steps out of the level
    steps = np.linalg.norm(np.diff(trace, axis=0) * spacing, axis=1)
    if steps[new[1:]].sum() < DORSAL_GAP_MM:          # the level's own lumen (not its channel) reaches out
        return nothing
    path = np.zeros_like(start)
    path[tuple(trace[new].T)] = True
    inscribed = float(distance_mm(np.pad(level[bounding_box(level)], 1), spacing).max())
    radius = max(inscribed - 0.5 * float(spacing.max()), float(spacing.max()))
    branch = nothing.copy()
    branch[box] = (distance_mm(~path, spacing) <= radius) & inside & ~start
    return branch & ~taken


def _beyond_side_wall(canal: np.ndarray, spacing: np.ndarray, midline_i: float) -> np.ndarray:
    """Whether a voxel lies MIN_REACH_MM or more beyond the canal's side wall in its axial slice
    (slices without canal take the nearest ones'), per x and slice: shape (nx, 1, nz)."""
    offset = np.abs(np.arange(canal.shape[0]) - midline_i) * spacing[0]
    return offset[:, None, None] >= _side_wall_mm(canal, offset)[None, None, :] + MIN_REACH_MM


def _dorsal_outside(envelope: np.ndarray, canal: np.ndarray, beyond: np.ndarray) -> np.ndarray:
    """Outside the sacral ``envelope``, behind the canal's back wall and ``beyond`` its side wall
    (:func:`_beyond_side_wall`) in each axial slice (slices without canal take the nearest
    ones'): where the foramina open dorsally, lateral to the canal (not its hiatus)."""
    heights = np.flatnonzero(canal.any(axis=(0, 1)))
    back = np.array([np.flatnonzero(canal[:, :, z].any(axis=0)).max() for z in heights], dtype=float)
    back = np.interp(np.arange(canal.shape[2]), heights, back)
    behind = np.arange(canal.shape[1])[None, :, None] > back[None, None, :]
    return ~envelope & behind & beyond


def _extension(level: np.ndarray, levels: list[np.ndarray], sharp_levels: list[np.ndarray],
               spacing: np.ndarray) -> np.ndarray:
    """The channel that the sharp search found beyond ``level`` (its lost dorsal branch).

    That is: of the sharp search's level that overlaps ``level`` most, the pieces that ``level``
    overlaps (not the speckle its height grouping took in, nor a channel of the next level
    that a dark bridge joins), less the other ``levels``' voxels; and of those, the parts more
    than FORAMEN_GROW_MM plus a voxel away from ``level`` with what joins them to it (the
    sharp search's edge along ``level`` itself only widens it).
    """
    overlaps = [int((level & m).sum()) for m in sharp_levels]
    if not overlaps or max(overlaps) == 0:
        return np.zeros_like(level)
    pieces, _ = ndimage.label(sharp_levels[int(np.argmax(overlaps))], structure=np.ones((3, 3, 3)))
    hit = np.unique(pieces[level])
    taken = np.zeros_like(level)
    for other in levels:
        if other is not level:
            taken |= other
    beyond = np.isin(pieces, hit[hit > 0]) & ~taken & ~level
    if not beyond.any():
        return beyond
    reach = FORAMEN_GROW_MM + spacing.max()
    # Both distances are read at ``beyond`` only, and ``level`` and ``far`` lie in its box with it.
    box = bounding_box(beyond | level)
    far = beyond[box] & (distance_mm(~level[box], spacing) > reach)
    out = np.zeros_like(level)
    if not far.any():
        return out
    out[box] = beyond[box] & (distance_mm(~far, spacing) <= reach)
    return out


def _too_large(level: np.ndarray, spacing: np.ndarray) -> bool:
    """Whether a foramen level is larger than MAX_LEVEL_ML."""
    return bool(level.sum() > MAX_LEVEL_ML * 1000.0 / float(np.prod(spacing)))


def _any_too_large(found: dict[str, list[np.ndarray]], spacing: np.ndarray) -> bool:
    """Whether any foramen level in ``found`` is larger than MAX_LEVEL_ML."""
    return any(_too_large(m, spacing) for masks in found.values() for m in masks)


def _foramina_below(smooth: np.ndarray, envelope: np.ndarray, canal: np.ndarray, spacing: np.ndarray,
                    midline_i: float, dark_hu: float | np.ndarray,
                    bone_hu: float) -> tuple[dict[str, list[np.ndarray]], np.ndarray]:
    """:func:`find_foramina` at one lumen threshold (HU, or per voxel), inside the closed sacral
    ``envelope``, in trabecular bone of ``bone_hu``."""
    dark = (smooth < dark_hu) & envelope & ~canal
    touching = dilated(canal, np.ones((3, 3, 3), dtype=bool)) & ~canal
    # In bone brighter than DIM_BONE_HU the threshold stays at half its HU, and a tenth of a 2 mm
    # scan's trabecular voxels fall below it: joined through voxel corners, that speckle
    # percolates (it joined the S1 and S2 foramina of validation phantom 119 through its ala), so
    # there dark voxels join through faces and edges only. In dimmer bone the threshold is
    # lowered until no level is too large, which needs the speckle joined into large pieces to
    # see it: joined through faces and edges only, it stayed in pieces under 4 ml that took the
    # levels' names (held-out phantoms 503 and 507).
    bright = bone_hu >= DIM_BONE_HU
    labels, count = ndimage.label(dark, structure=ndimage.generate_binary_structure(3, 2 if bright else 3))
    connected = np.unique(labels[touching & dark])
    channels = np.isin(labels, connected[connected > 0])
    x = np.arange(smooth.shape[0])[:, None, None]
    reaching = _reaching_out(channels, canal, spacing, midline_i)
    corners = channels & ~reaching
    channels &= reaching
    # The channel voxels right beside the canal (left or right of it) are left out when the
    # channels are grouped into levels: where the canal's width limit falls a voxel short of
    # its wall, they form a strip up the canal's side that would join one foramen to the next.
    # Each then goes to a level it touches; the rest are the canal's.
    rim = channels & dilated(canal, np.ones((3, 1, 1), dtype=bool))
    hiatus = _below_canal(channels & ~rim, canal, spacing, midline_i)
    grow = ball(FORAMEN_GROW_MM, spacing)
    claimed = canal | (channels & ~rim)
    # A foramen opens on the bone's surface. In bright bone a level above every level that comes
    # within a voxel of it is dark bone beside the upper canal (trabecular speckle of the S1
    # body), which would take the name S1 (phantom 119); lower down, a level short of the surface
    # is a foramen whose openings were lost, and stays. (In dim bone the lowered threshold clears
    # that speckle; there, dropping such a level made the alae of 2 mm phantoms of osteoporosis
    # 0.9-1 worse: Dice 0.59 -> 0.42 on held-out 504.)
    out: dict[str, list[np.ndarray]] = {}
    for side, sign in (("left", 1.0), ("right", -1.0)):
        out[side] = []
        for level in _levels(channels & ~rim & ~hiatus & (sign * (x - midline_i) > 0), spacing):
            level = level | (rim & dilated(level, np.ones((3, 3, 3), dtype=bool)) & ~claimed)
            grown = level | (dilated(level, grow) & envelope & ~claimed)
            if bright and not out[side] and not _opens_on_surface(grown, envelope, spacing):
                continue
            claimed |= grown
            out[side].append(grown)
    return out, corners | hiatus | (rim & ~claimed)


def _opens_on_surface(level: np.ndarray, envelope: np.ndarray, spacing: np.ndarray) -> bool:
    """Whether ``level`` comes within a voxel (the largest spacing) of the outside of ``envelope``
    (measured in the level's box, widened by that reach)."""
    reach = float(spacing.max())
    box = bounding_box(level, np.ceil(reach / spacing).astype(int) + 1)
    if envelope[box].all():                   # no outside within reach (and nothing to measure to)
        return False
    near = distance_mm(envelope[box], spacing) <= reach
    return bool((level[box] & near).any())


def _below_canal(channels: np.ndarray, canal: np.ndarray, spacing: np.ndarray, midline_i: float) -> np.ndarray:
    """The channel voxels of the pieces centred below the canal's lowest slice that lie within
    MIN_REACH_MM beyond its side wall there: its hiatus, not a foramen.

    The hiatus is open behind, so it is not found as the canal; the S4 foramina lie above it,
    and where a piece joins them to it, its voxels further out are theirs.
    (The canal's upper end is no such guide: its upper opening is not closed all round either,
    so the canal found can stop below the centre of the S1 foramina.)
    """
    pieces, count = ndimage.label(channels, structure=np.ones((3, 3, 3)))
    if not count or not canal.any():
        return np.zeros_like(channels)
    lowest = np.flatnonzero(canal.any(axis=(0, 1)))[0]
    _, heights = piece_sizes_and_heights(pieces, count)
    offset = np.abs(np.arange(canal.shape[0]) - midline_i) * spacing[0]
    central = (offset <= _side_wall_mm(canal, offset)[lowest] + MIN_REACH_MM)[:, None, None]
    return np.concatenate([[False], heights < lowest])[pieces] & central


def _side_wall_mm(canal: np.ndarray, offset: np.ndarray) -> np.ndarray:
    """Per axial slice, the canal's farthest ``offset`` (mm from the midline, per x); slices
    without canal take the value interpolated from the nearest ones (held beyond its ends)."""
    wall = np.where(canal.any(axis=1), offset[:, None], 0.0).max(axis=0)
    walled = np.flatnonzero(canal.any(axis=(0, 1)))
    return np.interp(np.arange(canal.shape[2]), walled, wall[walled])


def _reaching_out(channels: np.ndarray, canal: np.ndarray, spacing: np.ndarray, midline_i: float) -> np.ndarray:
    """The channel pieces that reach MIN_REACH_MM beyond the canal's side wall in their slices.

    A foramen runs from the canal out to the bone surface; a dark corner of the canal itself
    left over by the canal's width limit does not reach out.
    """
    offset = np.abs(np.arange(canal.shape[0]) - midline_i) * spacing[0]
    pieces, count = ndimage.label(channels, structure=np.ones((3, 3, 3)))
    if not count:
        return channels
    # Above and below the canal the wall of its nearest slice holds: a dark pocket beside the
    # canal's end (its upper opening, the disc) reaches no further out than the canal does.
    wall = _side_wall_mm(canal, offset)
    reach = np.broadcast_to((offset[:, None] - wall[None, :])[:, None, :], channels.shape)
    farthest = piece_maxima(reach, pieces, count)
    return np.concatenate([[False], farthest >= MIN_REACH_MM])[pieces]


def _levels(channels: np.ndarray, spacing: np.ndarray, *, max_levels: int = FORAMEN_LEVELS) -> list[np.ndarray]:
    """Group one side's channel fragments into foramen levels by height, top (S1) first.

    Fragments are taken largest first; one within LEVEL_GAP_MM of a level's height joins
    it, another of at least MIN_LEVEL_ML starts a new level (smaller ones are dropped).
    While there are more than ``max_levels``, two neighbouring levels merge: those for which
    the gap between their height ranges (plus one voxel) times the smaller one's size is
    least. Small fragments close to a level join it, and a tall S1 foramen whose dorsal part
    lies well above its anterior part stays one level, however far apart the centres of its
    two fragments.
    """
    pieces, count = ndimage.label(channels, structure=np.ones((3, 3, 3)))
    if not count:
        return []
    sizes, heights = piece_sizes_and_heights(pieces, count)
    heights = heights * spacing[2]
    spans = [(box[2].start * spacing[2], (box[2].stop - 1) * spacing[2]) for box in ndimage.find_objects(pieces)]
    levels: list[tuple[float, float, list[int], float, float]] = []     # height, weight, piece ids, z range
    least = MIN_LEVEL_ML * 1000.0 / float(np.prod(spacing))
    for i in np.argsort(-sizes):
        if sizes[i] < 2:
            continue
        near = [k for k, level in enumerate(levels) if abs(level[0] - heights[i]) <= LEVEL_GAP_MM]
        if not near and sizes[i] < least:
            continue                                           # a crumb (e.g. a canal corner) is no foramen
        piece = (heights[i], sizes[i], [i + 1], *spans[i])
        if near:
            levels[near[0]] = _merged(levels[near[0]], piece)
        else:
            levels.append(piece)
    levels.sort(key=lambda lv: -lv[0])
    while len(levels) > max_levels:
        costs = [(max(upper[3] - lower[4], 0.0) + spacing[2]) * min(upper[1], lower[1])
                 for upper, lower in zip(levels[:-1], levels[1:])]
        k = int(np.argmin(costs))
        levels[k:k + 2] = [_merged(levels[k], levels[k + 1])]
    return [np.isin(pieces, ids) for _, _, ids, _, _ in levels]


def _merged(a: tuple, b: tuple) -> tuple:
    """Two levels (height, weight, piece ids, lowest z, highest z) as one."""
    weight = a[1] + b[1]
    return ((a[0] * a[1] + b[0] * b[1]) / weight, weight, a[2] + b[2], min(a[3], b[3]), max(a[4], b[4]))


def carry_open_ends(canal: np.ndarray, bone: np.ndarray) -> np.ndarray:
    """The canal carried on through its open ends, slice by slice, while bone walls it in.

    At its upper opening (in front of the S1 lamina, above the body's endplate) and at the
    hiatus the canal is not enclosed in an axial slice, so :func:`find_canal` loses it. From
    the last slice at each end whose canal holds at least FULL_SECTION x the median section,
    that section is carried to the next slice, less its bone and the voxels that have no bone
    behind them (posterior) and on both sides (left and right) in that slice, until nothing is left.
    """
    out = canal.copy()
    area = canal.sum(axis=(0, 1))
    heights = np.flatnonzero(area)
    if len(heights) < 3:
        return out
    full = np.flatnonzero(area >= FULL_SECTION * np.median(area[heights]))
    for step, start in ((1, full[-1]), (-1, full[0])):
        section = canal[:, :, start]
        z = start + step
        while 0 <= z < canal.shape[2]:
            walls = bone[:, :, z]
            behind = np.maximum.accumulate(walls[:, ::-1], axis=1)[:, ::-1]
            on_one_side = np.maximum.accumulate(walls, axis=0)
            on_other_side = np.maximum.accumulate(walls[::-1], axis=0)[::-1]
            section = section & ~walls & behind & on_one_side & on_other_side
            if not section.any():
                break
            out[:, :, z] |= section
            z += step
    return out
