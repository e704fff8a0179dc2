"""The CT guard: read the CT itself along a needle, so that a plan does not rest on its labels alone.

A needle planned on a label map is only as safe as the labels. This module samples
the CT (trilinear) along the needle's axis from its bone entry to its tip and asks
the image two questions that need no label:

- does the axis **leave the bone**: a run of soft-tissue-like HU (the canal, a
  foramen, the SI joint gap, outside the anterior cortex) longer than
  ``MAX_SOFT_RUN_MM`` (3 mm) and 1.5 voxels;
- does it **cross a cortical wall** after the entry: a bright run (cortex) beside a
  dark run (the gap beyond the wall), i.e. the needle exits the bone or re-enters it; or a dark
  dip with a peak on each side (two walls and the gap between them) even where partial volume
  leaves the walls below the cortex threshold and the gap above the soft-tissue one;
- does the **tip lie past a wall in soft tissue**: a wall (``CORTEX_MIN_HU``) past the entry
  zone, then soft-tissue HU (below ``TIP_SOFT_HU``) up to the tip for at least
  ``TIP_SOFT_RUN_MM``: a question that needs no trabecular HU, so it holds in bone too dark or
  too uneven for the soft-tissue threshold above (a foramen labelled bone beyond its wall);
- does a **fracture line at the tip open out of the bone**: a crack runs through bone, so
  straight past the line (beyond the labelled line, ``FAR_SIDE_MM`` of axis) the CT reads bone
  again; soft tissue or fat there (below ``TIP_SOFT_HU`` and the trabecular HU) means the dark
  "line" is the outside of the bone, or leads to it, and cement would follow it.

and, from the skin to the bone entry, a third:

- does the **approach cross bone**: a run of bone-bright HU (``APPROACH_BONE_HU``) at least
  ``APPROACH_BONE_RUN_MM`` long, short of the entry's own cortex: an ilium or a vertebra that
  the labels missed (on a real sacrum, a plate of posterior ilium labelled nothing).

Before those, the planner moves a candidate's labelled bone entry onto the bone's edge in the
CT (:func:`entry_on_bone_edge`): a labelled surface can stand a voxel proud of the bone. An
entry whose edge lies farther in (:func:`bone_edge_mm`) is marked: the labels are off there.

Every threshold is relative to the trabecular HU of the case, because osteoporotic
trabecular bone can be 100 HU or less: the trabecular HU is the larger of the median
on the path (past the entry cortex) and the median of the labelled trabecular bone
near the path. The soft-tissue threshold is 35 % of the way from water-like soft tissue
(20 HU) to that trabecular HU, and at least two robust standard deviations of the
bone's texture below it (measured in that labelled bone, so that a gap on the path
does not widen it; on the path itself when the labels give none); where that leaves it
under 40 HU (dark or very heterogeneous bone) the image cannot tell bone from a gap by HU,
and only the cortical walls are sought. Fracture lines and lesions that the labels give as the target are dark by
nature: they, a voxel around them, and a bright rim beside them are left out.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from trajplan import labels as lt
from trajplan.volume import Volume

SOFT_TISSUE_HU = 20.0            # water-like soft tissue (CSF, nerve, muscle, joint fluid): 0-60 HU
SOFT_FRACTION = 0.35             # a sample is soft below soft + this x (trabecular - soft) ...
SPREADS = 2.0                    # ... and below trabecular - this x the path's robust HU spread;
MIN_SOFT_MARGIN_HU = 20.0        # a threshold under soft + this: soft runs are not sought
CORTEX_ABOVE_TRABECULAR_HU = 300.0
CORTEX_MIN_HU = 400.0            # a cortical wall is brighter than max(trabecular + 300, 400) HU
MAX_SOFT_RUN_MM = 3.0            # a longer soft run after the entry (and longer than 1.5 voxels,
SOFT_RUN_VOXELS = 1.5            # what one dark voxel of noise spans): the needle leaves the bone
WALL_GAP_RUN_MM = 1.0            # the dark run beside a wall is at least this long ...
WALL_GAP_WINDOW_MM = 3.0         # ... and starts or ends within this of the wall
VALLEY_FRACTION = 0.75           # a gap between walls: a dip below soft + this x (trabecular - soft) ...
VALLEY_DEPTH = 1.5               # ... with a peak on each side this x (trabecular - soft) above the dip
VALLEY_SPREADS = 2.0             # ... and this many texture spreads above the trabecular HU
CLEFT_SPREADS = 1.0              # a cleft narrower than the blur: a local minimum below trabecular + this x spread
GAP_SOFT_RUN_MM = 2.0            # a gap between walls by absolute HU: soft tissue (below TIP_SOFT_HU) this long ...
GAP_WALL_HU = 250.0              # ... with bone this bright (a wall under partial volume) within the window each side
ENTRY_ZONE_MM = 3.0              # the entry cortex: at least this, and two voxels, past the entry
SMOOTH_SIGMA_MM = 0.5
REFERENCE_BOX_MM = 10.0          # labelled trabecular bone within this of the path's box
REFERENCE_DEPTH_MM = 3.0         # ... at least this deep in it (the cortical shell is left out)
REFERENCE_VOXELS = 20_000        # at most this many of them are read (evenly strided)
APPROACH_BONE_HU = 200.0         # on the approach, bone: soft tissue, even enhanced, stays below
APPROACH_BONE_RUN_MM = 1.0       # over a run at least this long
EDGE_OUTSIDE_MM = 2.0            # the soft tissue outside the bone entry: this long, a voxel before it
EDGE_PEAK_VOXELS = 3.0           # the cortex is sought this many voxels past the labelled entry
EDGE_MIN_CONTRAST_HU = 100.0     # the bone's edge is sought where its cortex is this much brighter
ENTRY_OFF_BONE_VOXELS = 1.0      # the bone's edge farther than this past the bone entry: the labels stand proud
TIP_SOFT_HU = 70.0               # soft tissue (0-60 HU) with its noise, whatever the bone's HU ...
TIP_SOFT_RUN_MM = 2.5            # ... this long up to the tip, past a wall: the tip is outside the bone
TIP_END_MM = 1.0                 # the run ends within this of the tip
FAR_SIDE_REACH_MM = 10.0         # a tip in a fracture line: its far side sought this far past the tip ...
FAR_SIDE_MM = 5.0                # ... and read over this much of the axis beyond the labelled line
EXPECTED_DARK = ("fracture", "lesion")   # targets that are dark in the image by nature
DARK_IF_LESION_UNCERTAIN = ("fracture",)  # ... when the segmentation marked its lesion uncertain (fatty marrow?)
TRABECULAR = ("sacrum", "ala_left", "ala_right")

REASON_TEXT = {
    "ct_leaves_bone": "the CT shows soft tissue on the path between the bone entry and the tip",
    "ct_crosses_cortex": "the CT shows a cortical wall crossed after the bone entry",
    "ct_bone_on_approach": "the CT shows bone on the approach before the bone entry",
    "ct_entry_off_bone": "the CT shows the bone's edge more than a voxel past the labelled bone entry",
    "ct_tip_past_wall": "the CT shows a cortical wall and then soft tissue up to the tip",
    "ct_fracture_opens_out": "the fracture line at the tip has soft tissue or fat beyond it in the CT, not bone",
}


def sample_ct(ct: Volume, points: np.ndarray) -> np.ndarray:
    """Trilinear HU at world points ``(n, 3)`` (LPS mm); points outside take the nearest edge value."""
    idx = ct.world_to_index(np.asarray(points, dtype=float))
    return ndimage.map_coordinates(ct.array.astype(np.float32, copy=False), idx.T, order=1, mode="nearest")


def smoothed(hu: np.ndarray, step_mm: float) -> np.ndarray:
    """A CT profile sampled every ``step_mm`` along a line, smoothed along it (SMOOTH_SIGMA_MM)."""
    return ndimage.gaussian_filter1d(np.asarray(hu, dtype=float), SMOOTH_SIGMA_MM / step_mm, mode="nearest")


def runs(flags: np.ndarray) -> list[tuple[int, int]]:
    """Maximal runs of True in a 1-D boolean array as (start, stop) index pairs (stop exclusive)."""
    padded = np.concatenate([[False], np.asarray(flags, dtype=bool), [False]])
    edges = np.flatnonzero(np.diff(padded.astype(np.int8)))
    return list(zip(edges[::2].tolist(), edges[1::2].tolist()))


def reference_trabecular(ct: Volume, crop: Volume, points: np.ndarray) -> tuple[float, float] | None:
    """Median and robust spread (1.4826 x median absolute deviation) of the CT HU of the labelled
    trabecular bone (sacrum, alae; at least REFERENCE_DEPTH_MM inside it along each axis) in the
    box of ``points`` +- 10 mm.

    ``crop`` is a label map on the CT's grid (or a crop of it). None when the box holds none.
    """
    lo = np.floor(crop.world_to_index(points.min(axis=0) - REFERENCE_BOX_MM)).astype(int)
    hi = np.ceil(crop.world_to_index(points.max(axis=0) + REFERENCE_BOX_MM)).astype(int)
    lo, hi = np.minimum(lo, hi), np.maximum(lo, hi)
    lo, hi = np.clip(lo, 0, crop.shape), np.clip(hi + 1, 0, crop.shape)
    box = tuple(slice(a, b) for a, b in zip(lo, hi))
    depth = np.maximum(np.ceil(REFERENCE_DEPTH_MM / np.asarray(crop.spacing)).astype(int), 1)
    trabecular = ndimage.minimum_filter(lt.mask(crop.array[box], *TRABECULAR), size=2 * depth + 1,
                                        mode="constant", cval=False)
    idx = np.argwhere(trabecular)
    if not len(idx):
        return None
    idx = idx[::max(len(idx) // REFERENCE_VOXELS, 1)]
    hu = sample_ct(ct, crop.index_to_world(idx + lo))
    median = float(np.median(hu))
    return median, 1.4826 * float(np.median(np.abs(hu - median)))


def _near(run: tuple[int, int], others: list[tuple[int, int]], window: float) -> bool:
    """Whether ``run`` lies within ``window`` samples of one of ``others`` (runs as (start, stop))."""
    return any(a - run[1] <= window and run[0] - b <= window for a, b in others)


def guard_profile(hu: np.ndarray, step_mm: float, expected_dark: np.ndarray, *,
                  reference: tuple[float, float] | None, voxel_mm: float) -> dict:
    """What the CT profile along one needle says, entry (index 0) to tip.

    Parameters
    ----------
    hu : np.ndarray
        CT HU at axis samples ``step_mm`` apart, from the bone entry to the tip.
    step_mm : float
        Distance between samples (mm).
    expected_dark : np.ndarray
        Per sample, True where the labels put a target that is dark by nature (fracture
        line, lytic lesion, and one voxel around them): such samples never count as soft
        tissue and are left out of the path's trabecular median.
    reference : (float, float) or None
        Median HU and robust spread of the labelled trabecular bone near the path
        (:func:`reference_trabecular`; None if unknown: the path's own samples give both).
    voxel_mm : float
        The CT's largest voxel size: the entry cortex zone is at least two voxels long, and
        where no soft run can be sought (low contrast) a bright run within one voxel of the
        tip is the cortex the tip stops short of, not a wall crossed.

    Returns
    -------
    dict
        ``checked`` (True), ``trabecular_hu``, ``cortex_hu`` and ``soft_hu`` (the thresholds;
        ``soft_hu`` null when the contrast is too low), ``leaves_bone_mm`` (the longest soft
        run after the entry zone, mm; null when not sought), ``walls_crossed``, ``tip_soft_mm``
        (:func:`tip_soft_mm`) and ``reasons`` (``ct_leaves_bone``, ``ct_crosses_cortex``,
        ``ct_tip_past_wall``).
    """
    step = max(float(step_mm), 1e-6)
    smooth = smoothed(hu, step)
    start = min(int(np.ceil(max(ENTRY_ZONE_MM, 2.0 * voxel_mm) / step)), max(len(smooth) - 2, 0))
    inner = smooth[start:][~expected_dark[start:]]
    trabecular = float(np.median(inner)) if len(inner) else float(np.median(smooth))
    if reference is not None:
        trabecular = max(trabecular, reference[0])
        spread = reference[1]
    else:
        spread = 1.4826 * float(np.median(np.abs(inner - np.median(inner)))) if len(inner) else 0.0
    cortex_hu = max(trabecular + CORTEX_ABOVE_TRABECULAR_HU, CORTEX_MIN_HU)
    soft_hu = min(SOFT_TISSUE_HU + SOFT_FRACTION * (trabecular - SOFT_TISSUE_HU), trabecular - SPREADS * spread)
    if soft_hu < SOFT_TISSUE_HU + MIN_SOFT_MARGIN_HU:
        soft_hu = None                     # the bone's own texture reaches soft-tissue HU

    window = WALL_GAP_WINDOW_MM / step
    targets = runs(expected_dark)
    bright_runs = [r for r in runs(smooth >= cortex_hu) if r[0] >= start and not _near(r, targets, window)]
    leaves = None
    if soft_hu is not None:
        soft = (smooth < soft_hu) & ~expected_dark
        soft[:start] = False
        soft_runs = runs(soft)
        leaves = round(max(((b - a) * step for a, b in soft_runs), default=0.0), 2)
        gaps = [(a, b) for a, b in soft_runs if (b - a) * step >= WALL_GAP_RUN_MM]
        walls = sum(1 for r in bright_runs if _near(r, gaps, window))
    else:                                  # no gap is seen: a wall is a bright run short of the tip
        walls = sum(1 for _, b in bright_runs if (len(smooth) - b) * step > voxel_mm)
    walls = max(walls, 2 * _gaps_between_walls(smooth, start, expected_dark, trabecular, spread, step),
                2 * _soft_gaps_between_walls(smooth, start, expected_dark, trabecular, step, voxel_mm))
    tip_soft = tip_soft_mm(smooth, start, expected_dark, step)
    reasons = []
    if leaves is not None and leaves > max(MAX_SOFT_RUN_MM, SOFT_RUN_VOXELS * voxel_mm):
        reasons.append("ct_leaves_bone")
    if walls:
        reasons.append("ct_crosses_cortex")
    if tip_soft >= TIP_SOFT_RUN_MM:
        reasons.append("ct_tip_past_wall")
    return {
        "checked": True,
        "trabecular_hu": round(trabecular, 1),
        "cortex_hu": round(cortex_hu, 1),
        "soft_hu": round(soft_hu, 1) if soft_hu is not None else None,
        "leaves_bone_mm": leaves,
        "walls_crossed": int(walls),
        "tip_soft_mm": round(tip_soft, 2),
        "reasons": reasons,
    }


def tip_soft_mm(smooth: np.ndarray, start: int, expected_dark: np.ndarray, step: float) -> float:
    """How long (mm) the profile ``smooth`` (entry to tip, ``step`` mm apart) stays below TIP_SOFT_HU
    up to the tip (within TIP_END_MM of it) after its last wall past the entry zone (``start``); 0
    without such a wall. Samples of a labelled dark target (``expected_dark``) do not count as soft.

    The thresholds are absolute: soft tissue is 0-60 HU whatever the bone, and a wall of
    CORTEX_MIN_HU is cortex in any bone. So this holds where the bone is too dark or too uneven for
    the relative soft-tissue threshold (real sacrum 001 with its trabecular bone darkened, 0.86 mm,
    on one noise draw: six short-axis needles crossed the dorsal cortex, 4-5 mm of bone at 90-200 HU
    and a second wall of 470-550 HU, to end 3-7 mm into an unlabelled foramen at 14-64 HU labelled
    lesion; the bone's texture spread too wide for a soft-tissue threshold, that wall under the
    relative cortex threshold of 512 HU).
    """
    walls = [r for r in runs(smooth >= CORTEX_MIN_HU) if r[0] >= start]
    if not walls:
        return 0.0
    after = walls[-1][1]
    soft = (smooth[after:] < TIP_SOFT_HU) & ~expected_dark[after:]
    ends = [(a, b) for a, b in runs(soft) if (len(soft) - b) * step <= TIP_END_MM]
    return max(((b - a) * step for a, b in ends), default=0.0)


def _gaps_between_walls(smooth: np.ndarray, start: int, expected_dark: np.ndarray, trabecular: float,
                        spread: float, step: float) -> int:
    """How many dark dips after the entry zone lie between two walls of the profile ``smooth``.

    A gap between two cortical plates (a groove of the bone's surface that the labels bridge, a
    joint, a foramen's opening) narrower than the scan's blur shows neither plate at the cortex
    threshold nor the gap at the soft-tissue one (real sacrum 001 with its trabecular bone darkened,
    0.86 mm: a 2 mm groove read at 74 HU between walls of 300 and 420 HU, in bone of 135 HU). Its
    shape still tells it: a run below soft + VALLEY_FRACTION x (trabecular - soft), not a labelled
    dark target, that ends before the tip, with a peak within WALL_GAP_WINDOW_MM of each of its ends
    (past the entry zone) that stands at least VALLEY_DEPTH x (trabecular - soft) above the run's
    minimum and VALLEY_SPREADS texture spreads above the trabecular HU: trabecular texture does not
    swing that far within a few millimetres. The window is counted from the run's ends, not from its
    minimum, so that a wider gap counts too (the same darkened case: a 4.5 mm gap at 30-65 HU between
    the dorsal crest at 250 HU and the ala's cortex at 420 HU, its minimum 4.5 mm from that cortex).

    A cleft narrower still reads no darker than the bone around it, and is counted as well: a local
    minimum below the trabecular HU plus CLEFT_SPREADS texture spreads with such peaks within
    WALL_GAP_WINDOW_MM of it on each side (the same darkened case: a 1.5 mm cleft between two
    cortical plates, 9 mm into the right ala, read at 103 HU between walls of 300 and 390 HU in bone of
    104 HU; a short-axis needle called safe crossed it).
    """
    window = int(round(WALL_GAP_WINDOW_MM / step))
    contrast = trabecular - SOFT_TISSUE_HU
    if contrast < MIN_SOFT_MARGIN_HU:      # bone as dark as soft tissue: a dip's depth tells nothing
        return 0
    dark = (smooth < SOFT_TISSUE_HU + VALLEY_FRACTION * contrast) & ~expected_dark
    dark[:start + 1] = False
    count = 0
    counted = np.zeros(len(smooth), dtype=bool)

    def between_walls(lo: int, hi: int, dip: float) -> bool:
        peak = _lower_wall(smooth, lo, hi, window, start)
        return (peak is not None and peak - dip >= VALLEY_DEPTH * contrast
                and peak >= trabecular + VALLEY_SPREADS * spread)

    for a, b in runs(dark):
        if between_walls(a, b, float(smooth[a:b].min())):
            count += 1
            counted[a:b] = True
    inner = np.arange(start + 1, len(smooth) - 1)
    minima = inner[(smooth[inner] <= smooth[inner - 1]) & (smooth[inner] < smooth[inner + 1])
                   & (smooth[inner] < trabecular + CLEFT_SPREADS * spread) & ~expected_dark[inner] & ~counted[inner]]
    last = -window - 1
    for i in minima:
        if i - last > window and between_walls(int(i), int(i) + 1, float(smooth[i])):
            count += 1
            last = i
    return count


def _soft_gaps_between_walls(smooth: np.ndarray, start: int, expected_dark: np.ndarray, trabecular: float,
                             step: float, voxel_mm: float) -> int:
    """How many runs of soft tissue after the entry zone lie between two walls of the profile ``smooth``,
    read by absolute HU, whatever the bone's texture.

    A run below TIP_SOFT_HU (soft tissue, 0-60 HU, with its noise; and MIN_SOFT_MARGIN_HU below the
    trabecular HU), not a labelled dark target, at least GAP_SOFT_RUN_MM and one voxel long, ending
    before the tip, with bone of GAP_WALL_HU or more within WALL_GAP_WINDOW_MM of each of its ends (the
    entry cortex counts as the first wall). Bone whose texture is too spread for the relative
    thresholds hides such a gap from :func:`guard_profile`'s soft runs and from
    :func:`_gaps_between_walls` (real sacrum 001 with soft tissue added, 0.86 mm: a short-axis needle
    crossed a dorsal crest of 300 HU, 3 mm of soft tissue at 30-41 HU and the ala's cortex at 410 HU,
    3.4 mm outside the bone, in bone of 156 HU whose texture spread of 114 HU left the soft-tissue
    threshold unset and the valley's peaks short of the trabecular HU plus two spreads).
    """
    window = int(round(WALL_GAP_WINDOW_MM / step))
    soft = (smooth < min(TIP_SOFT_HU, trabecular - MIN_SOFT_MARGIN_HU)) & ~expected_dark
    soft[:start] = False
    count = 0
    for a, b in runs(soft):
        if (b - a) * step < max(GAP_SOFT_RUN_MM, voxel_mm) or b >= len(smooth):
            continue
        wall = _lower_wall(smooth, a, b, window, 0)
        if wall is not None and wall >= GAP_WALL_HU:
            count += 1
    return count


def _lower_wall(smooth: np.ndarray, lo: int, hi: int, window: int, first: int) -> float | None:
    """The lower of the brightest samples of ``smooth`` within ``window`` samples before ``lo`` (from
    index ``first`` on) and within ``window`` after ``hi``: the fainter of the walls beside the run
    ``lo:hi``; None where either side has no sample."""
    before, after = smooth[max(first, lo - window):lo], smooth[hi:hi + window]
    return min(float(before.max()), float(after.max())) if before.size and after.size else None


def bone_edge_mm(ct: Volume, entry: np.ndarray, tip: np.ndarray, step_mm: float = 0.25) -> float | None:
    """How far past the labelled bone ``entry``, along the axis to ``tip``, the bone's edge lies in
    the CT (mm, >= 0; 0 when the entry is on or past it), or None where the CT shows no edge.

    The edge is where the CT, smoothed along the axis, first reaches half way from the soft tissue
    outside the entry (the median of EDGE_OUTSIDE_MM of axis, one voxel before the entry) to the
    brightest point within EDGE_PEAK_VOXELS voxels past it (the cortex: the entry can be a voxel
    proud, and a voxel's partial volume spreads the edge over two more). None when that cortex is
    not EDGE_MIN_CONTRAST_HU brighter than the outside (another bone or dim bone there).
    """
    entry, tip = np.asarray(entry, float), np.asarray(tip, float)
    voxel_mm = float(np.max(ct.spacing))
    direction = (tip - entry) / float(np.linalg.norm(tip - entry))
    along = np.arange(-voxel_mm - EDGE_OUTSIDE_MM, EDGE_PEAK_VOXELS * voxel_mm + 1e-9, step_mm)
    hu = smoothed(sample_ct(ct, entry + along[:, None] * direction), step_mm)
    outside = float(np.median(hu[along <= -voxel_mm]))
    peak = float(hu[along >= 0.0].max())
    if peak - outside < EDGE_MIN_CONTRAST_HU:
        return None
    return float(along[np.flatnonzero((along >= 0.0) & (hu >= 0.5 * (outside + peak)))[0]])


def entry_on_bone_edge(ct: Volume, entry: np.ndarray, tip: np.ndarray, step_mm: float = 0.25) -> np.ndarray:
    """The labelled bone entry moved along the axis onto the bone's edge in the CT (LPS mm).

    A labelled bone surface can stand up to a voxel proud of the bone: partial volume lifts the
    voxel outside the cortex above the bone threshold (real sacra at 2-3 mm: 20-30 ml of such
    voxels, a median 150 HU against 220 for the true surface voxels). The entry moves forward onto
    the edge (:func:`bone_edge_mm`) when that lies at most one voxel (the CT's largest) and a quarter
    of the path in; otherwise it stays where it is (the guard marks an entry whose edge lies more
    than ENTRY_OFF_BONE_VOXELS in: the labels stand too proud there to be moved onto the bone).
    """
    entry, tip = np.asarray(entry, float), np.asarray(tip, float)
    length = float(np.linalg.norm(tip - entry))
    reach = min(float(np.max(ct.spacing)), 0.25 * length)
    if reach < step_mm:
        return entry
    edge = bone_edge_mm(ct, entry, tip, step_mm)
    if edge is None or edge > reach:
        return entry
    return entry + edge * (tip - entry) / length


def approach_bone_mm(ct: Volume, skin: np.ndarray, entry: np.ndarray, step_mm: float = 0.25) -> float:
    """The longest run of bone-bright CT (smoothed HU >= APPROACH_BONE_HU) on the approach from
    ``skin`` to the bone ``entry`` (LPS mm), short of the entry's own cortex (the last
    ENTRY_ZONE_MM, and two voxels, before the entry, which partial volume brightens)."""
    voxel_mm = float(np.max(ct.spacing))
    reach = float(np.linalg.norm(entry - skin)) - max(ENTRY_ZONE_MM, 2.0 * voxel_mm)
    if reach <= 0.0:
        return 0.0
    along = np.arange(0.0, reach, step_mm)
    direction = (entry - skin) / np.linalg.norm(entry - skin)
    hu = sample_ct(ct, skin[None, :] + along[:, None] * direction[None, :])
    smooth = smoothed(hu, step_mm)
    return round(max(((b - a) * step_mm for a, b in runs(smooth >= APPROACH_BONE_HU)), default=0.0), 2)


def fracture_far_side_hu(ct: Volume, labels: Volume, entry: np.ndarray, tip: np.ndarray,
                         step_mm: float = 0.25) -> float | None:
    """The median CT HU on the far side of the fracture line a needle's tip lies in: over FAR_SIDE_MM
    of the axis straight past the tip, from where the labels past the tip stop being ``fracture``
    (sought up to FAR_SIDE_REACH_MM past the tip). None where the line runs on along the axis
    that far (the needle lies in its plane: no far side to read).

    VHF pelvis at 1 mm (no fracture): a right short-axis needle called safe had its tip in a false
    fracture line at the front of the S1 body-ala junction, just past 6 mm of cortex at 700-840 HU;
    beyond it the CT read 13 to -167 HU (fat) for 5 mm, which the line's dark-by-nature excuse hid.
    """
    entry, tip = np.asarray(entry, float), np.asarray(tip, float)
    direction = (tip - entry) / float(np.linalg.norm(tip - entry))
    along = np.arange(step_mm, FAR_SIDE_REACH_MM + FAR_SIDE_MM + 1e-9, step_mm)
    points = tip[None, :] + along[:, None] * direction[None, :]
    line = labels.values_at(points) == lt.value("fracture")
    beyond = np.flatnonzero(~line & (along <= FAR_SIDE_REACH_MM))
    if not len(beyond):
        return None
    start = along[beyond[0]]
    window = (along >= start) & (along < start + FAR_SIDE_MM)
    return float(np.median(sample_ct(ct, points[window])))


def trusted_dark(lesion_uncertain: bool) -> tuple[str, ...]:
    """The labels the guard trusts to be dark by nature: EXPECTED_DARK, or DARK_IF_LESION_UNCERTAIN where
    the segmentation marked its lesion uncertain (dark fatty marrow looks alike and has no bright rim)."""
    return DARK_IF_LESION_UNCERTAIN if lesion_uncertain else EXPECTED_DARK


def ct_guard(ct: Volume | None, crop: Volume, axis_pts: np.ndarray, step_mm: float,
             label_at: np.ndarray, skin: np.ndarray | None = None,
             dark_targets: tuple[str, ...] = EXPECTED_DARK) -> dict:
    """The CT guard of one needle (``axis_pts``: entry to tip, ``label_at``: their labels; ``skin``:
    where the approach starts, if known; ``dark_targets``: the labels trusted to be dark by nature,
    EXPECTED_DARK unless the segmentation marked its lesion uncertain).

    Without a CT: ``{"checked": False, "reasons": []}``. See :func:`guard_profile`; with a skin
    point, ``approach_bone_mm`` (:func:`approach_bone_mm`) is added, and the reason
    ``ct_bone_on_approach`` when it reaches APPROACH_BONE_RUN_MM; ``entry_edge_mm``
    (:func:`bone_edge_mm`, None where the CT shows no edge), and the reason ``ct_entry_off_bone``
    when it is more than ENTRY_OFF_BONE_VOXELS. Where the tip lies in a ``fracture`` label,
    ``fracture_far_side_hu`` (:func:`fracture_far_side_hu`), and the reason ``ct_fracture_opens_out``
    when it is below TIP_SOFT_HU and MIN_SOFT_MARGIN_HU below the trabecular HU.
    """
    if ct is None:
        return {"checked": False, "reasons": []}
    voxel_mm = float(np.max(ct.spacing))
    expected = np.isin(label_at, [lt.value(n) for n in dark_targets])
    if expected.any():                     # and their partial volume, one voxel either side
        expected = ndimage.binary_dilation(expected, iterations=int(np.ceil(voxel_mm / max(step_mm, 1e-6))))
    guard = guard_profile(sample_ct(ct, axis_pts), step_mm, expected,
                          reference=reference_trabecular(ct, crop, axis_pts),
                          voxel_mm=voxel_mm)
    if "fracture" in dark_targets and label_at[-1] == lt.value("fracture"):
        far = fracture_far_side_hu(ct, crop, axis_pts[0], axis_pts[-1])
        guard["fracture_far_side_hu"] = None if far is None else round(far, 1)
        if far is not None and far < min(TIP_SOFT_HU, guard["trabecular_hu"] - MIN_SOFT_MARGIN_HU):
            guard["reasons"].append("ct_fracture_opens_out")
    if skin is not None:
        guard["approach_bone_mm"] = approach_bone_mm(ct, np.asarray(skin, float), np.asarray(axis_pts[0], float))
        if guard["approach_bone_mm"] >= APPROACH_BONE_RUN_MM:
            guard["reasons"].append("ct_bone_on_approach")
    edge = bone_edge_mm(ct, axis_pts[0], axis_pts[-1])
    guard["entry_edge_mm"] = None if edge is None else round(edge, 2)
    if edge is not None and edge > ENTRY_OFF_BONE_VOXELS * voxel_mm:
        guard["reasons"].append("ct_entry_off_bone")
    return guard
