"""Split the solid bone into sacrum, ilia, L5 and coccyx.

The bones touch only through thin bridges (joints, discs, partial volume). Eroding
the solid bone breaks the bridges; the eroded pieces are named by anatomy (in
canonical L, P, S axes: the sacrum is the lowest wide bone on the midline with an
ilium on each side; L5 the central bone just above it; the coccyx a small central
bone below it; the ilia the large lateral bones beside it), and grown back into
the solid bone by a watershed on the distance to its surface, so the borders fall
at the narrow necks: the sacroiliac joints, the L5-S1 disc, the sacrococcygeal joint.

Bone whose trabecular bone is as dark as muscle has a cortex too dim to enclose it at
any threshold; there the trabecular compartments between the cortical walls are the
pieces that are eroded and named (see :func:`_walls`).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
from scipy import ndimage
from skimage.segmentation import watershed

from segmentation.bone import (
    SMOOTH_MM,
    ball_metric,
    closing,
    eroded_by_ball,
    expanded_labels,
    fill_holes,
    opening,
    squared_depth,
)
from trajplan.distance import distance_mm
from trajplan.errors import NoSacrumError
from trajplan.volume import bounding_box

EROSION_STEPS_MM = (1.5, 3.0, 4.5, 6.0, 8.0, 10.0)
MIN_PIECE_ML = 0.5
MIN_SACRUM_WIDTH_MM = 55.0
MAX_SACRUM_WIDTH_MM = 135.0
CENTRAL_MM = 30.0
MAX_ANTERIOR_MM = 20.0       # the sacrum lies behind the ilia's centres; the pubic symphysis far in front
FRAGMENT_REACH_MM = 25.0
FRAGMENT_BELOW_MM = 15.0     # an ala cut off by the foramina in dark marrow can reach this far below the sacral seed
JOINT_MM = 12.0
MAX_COCCYX_WIDTH_MM = 45.0       # a real coccyx is at most about 35 mm wide at its base
MAX_COCCYX_FRACTION = 0.15       # and a few ml against a sacrum of 150-300 ml
COCCYGEAL_JOINT_MM = 2.0         # the sacrococcygeal and intercoccygeal joints (and the thin S4-S5) at most
MIN_L5_ML = 30.0                 # a whole L5 (body and arch) holds 50-90 ml
SI_CONTACT_MM = 6.0              # sacral bone this near an ilium meets it at the sacroiliac joint
SI_CONTACT_FRACTION = 0.25       # the joint's top: the highest slice with this share of its median contact
SACRAL_MARK_MM = 20.0            # bone this far below the joints' top is sacrum,
LUMBAR_MARK_MM = 10.0            # central bone this far above it is lumbar


@dataclass(frozen=True)
class Bones:
    """Masks of the named bones (canonical grid) and what was noticed on the way."""

    sacrum: np.ndarray
    ilium_left: np.ndarray
    ilium_right: np.ndarray
    L5: np.ndarray
    coccyx: np.ndarray
    notes: tuple[str, ...]
    lumens_filled: bool = False      # the sacrum holds its canal and foramina (split from enclosed volumes)
    caveat: str = ""                 # why the split is less reliable than usual (flags the result partial)
    fatty_marrow: bool = False       # split by marrow compartments darker than the lumens (split_bones_by_marrow)


@dataclass(frozen=True)
class _Piece:
    label: int
    volume_ml: float
    centre: np.ndarray       # mm in grid coordinates (index * spacing)
    lo: np.ndarray
    hi: np.ndarray

    @property
    def width(self) -> float:
        return float(self.hi[0] - self.lo[0])


def _pieces(mask: np.ndarray, spacing: np.ndarray) -> tuple[np.ndarray, list[_Piece]]:
    """The face-connected pieces of ``mask`` (label array) and those of at least MIN_PIECE_ML.

    Sizes and centres come from one bincount each over the labelled voxels, so a noisy mask
    with many specks costs no more than a clean one. The pieces are labelled in the mask's
    bounding box (the same numbers: the box keeps the raster order of the voxels).
    """
    labels = np.zeros(mask.shape, dtype=np.int32)
    pieces: list[_Piece] = []
    if not mask.any():
        return labels, pieces
    box = bounding_box(mask)
    start = np.array([b.start for b in box])
    sub, count = ndimage.label(mask[box])
    labels[box] = sub
    voxel_ml = float(np.prod(spacing)) / 1000.0
    flat = sub.reshape(-1)
    sizes = np.bincount(flat, minlength=count + 1)
    kept = np.flatnonzero(sizes * voxel_ml >= MIN_PIECE_ML)
    kept = kept[kept > 0]
    if not len(kept):
        return labels, pieces
    index = np.nonzero(flat)[0]
    coordinates = [c + offset for c, offset in zip(np.unravel_index(index, sub.shape), start)]
    sums = [np.bincount(flat[index], weights=c, minlength=count + 1) for c in coordinates]
    boxes = ndimage.find_objects(sub)
    for i in kept:
        piece_box = boxes[i - 1]
        centre = np.array([total[i] for total in sums]) / sizes[i]
        lo = (np.array([b.start for b in piece_box]) + start) * spacing
        hi = (np.array([b.stop - 1 for b in piece_box]) + start) * spacing
        pieces.append(_Piece(int(i), float(sizes[i] * voxel_ml), centre * spacing, lo, hi))
    return labels, pieces


def _gap_mm(labels: np.ndarray, a: _Piece, b: _Piece, spacing: np.ndarray) -> float:
    """Smallest distance (mm) between two pieces, measured inside their joint bounding box."""
    lo = (np.minimum(a.lo, b.lo) / spacing).astype(int)
    hi = (np.maximum(a.hi, b.hi) / spacing).astype(int) + 1
    box = tuple(slice(start, stop) for start, stop in zip(lo, hi))
    sub = labels[box]
    if not (sub == b.label).any():
        return np.inf
    dist = distance_mm(sub != a.label, spacing)
    return float(dist[sub == b.label].min())


def _front_mm(ilia) -> float:
    """How far forward (mm, on the P axis) the sacrum and coccyx may lie: MAX_ANTERIOR_MM in front of
    the foremost centre of ``ilia`` (pieces; -inf for none)."""
    return min((p.centre[1] for p in ilia), default=-np.inf) - MAX_ANTERIOR_MM


def _name_pieces(pieces: list[_Piece], midline_mm: float, labels: np.ndarray | None = None,
                 spacing: np.ndarray | None = None, reach_mm: float = np.inf) -> dict[str, _Piece] | None:
    """Sacrum, ilia, L5, coccyx among the eroded pieces, or None if no sacrum is recognisable.

    The sacrum is the lowest wide central piece with an ilium on each side whose centre is
    no more than MAX_ANTERIOR_MM in front of both ilia's centres: the pubic symphysis of a
    whole pelvis is wide, central and lower, but far in front of them (a real pelvis at 2 mm
    had it named sacrum, and the coccyx is sought behind that line too). A piece wider than a
    sacrum lower than the candidate (the sacrum still fused with the ilia) means erode more,
    unless it is that far in front (the pubic arch).
    With ``labels`` the sacrum must come within ``reach_mm`` of both ilia (it meets them
    at the sacroiliac joints; a lumbar vertebra does not).
    """
    central = [p for p in pieces if abs(p.centre[0] - midline_mm) < CENTRAL_MM]
    lateral = [p for p in pieces if abs(p.centre[0] - midline_mm) >= CENTRAL_MM]
    wide = [p for p in central if MIN_SACRUM_WIDTH_MM <= p.width <= MAX_SACRUM_WIDTH_MM]
    merged = [p for p in central if p.width > MAX_SACRUM_WIDTH_MM]
    for sacrum in sorted(wide, key=lambda p: p.centre[2]):   # lowest first
        beside = {}
        for side, sign in (("ilium_left", 1.0), ("ilium_right", -1.0)):
            cands = [p for p in lateral if sign * (p.centre[0] - midline_mm) > 0
                     and p.hi[2] >= sacrum.lo[2] and p.lo[2] <= sacrum.hi[2]]
            if cands:
                beside[side] = max(cands, key=lambda p: p.volume_ml)
        front = _front_mm(beside.values())
        if any(m.centre[2] < sacrum.centre[2] and m.centre[1] >= front for m in merged):
            return None   # the sacrum is still fused with the ilia below this piece: erode more
        if len(beside) < 2 or sacrum.centre[1] < front:
            continue
        if labels is not None and any(_gap_mm(labels, sacrum, ilium, spacing) > reach_mm
                                      for ilium in beside.values()):
            continue
        above = [p for p in central if p.centre[2] > sacrum.hi[2] - 5.0 and p is not sacrum]
        below = [p for p in central if p.centre[2] < sacrum.lo[2] + 10.0 and p is not sacrum
                 and p.width < MIN_SACRUM_WIDTH_MM and p.centre[1] >= front]
        named = {"sacrum": sacrum, **beside}
        if above:
            named["L5"] = min(above, key=lambda p: p.centre[2])
        if below:
            named["coccyx"] = max(below, key=lambda p: p.centre[2])
        return named
    return None


class _Erosions:
    """``seeds`` eroded by balls of growing radius (:func:`segmentation.bone.ball`), as asked.

    A voxel survives erosion by a ball exactly when no voxel outside ``seeds`` (nor the array's
    outside) lies within it, which one squared distance transform tells for every ball of the
    same shape in voxels (:func:`segmentation.bone.ball_metric`): each transform is computed
    once and serves every deeper erosion of that shape (a 10 mm ball on a 1 mm grid holds 4,000
    voxels, and the bone split tries up to six depths for each of eight seeds).
    """

    def __init__(self, seeds: np.ndarray, spacing: np.ndarray):
        self.seeds, self.spacing = seeds, np.asarray(spacing, dtype=float)
        self._depths: dict[tuple[int, ...], np.ndarray] = {}

    def __call__(self, depth_mm: float) -> np.ndarray:
        metric = ball_metric(depth_mm, self.spacing)
        if metric is None:
            return eroded_by_ball(self.seeds, depth_mm, self.spacing)
        weights, squared = metric
        if weights not in self._depths:
            self._depths[weights] = squared_depth(self.seeds, weights)
        return self._depths[weights] > squared + 0.5


def _named_at(erosions: _Erosions, depth: float, spacing: np.ndarray,
              midline_mm: float) -> tuple[np.ndarray, list[_Piece], dict[str, _Piece] | None]:
    """The pieces of the seeds eroded by ``depth`` mm (labels, pieces) and the bones named among them."""
    labels, pieces = _pieces(erosions(depth), spacing)
    return labels, pieces, _name_pieces(pieces, midline_mm, labels, spacing, reach_mm=2 * depth + JOINT_MM)


def _split_off_L5(seeds: np.ndarray, depth: float, spacing: np.ndarray,
                  midline_mm: float) -> tuple[np.ndarray, np.ndarray, float] | None:
    """Sacral and L5 seeds from a deeper erosion, when erosion by ``depth`` left L5 joined to the sacrum.

    A thin or narrow L5-S1 disc (or bright bridging across it) keeps L5 in the sacral
    piece at the first depth that names the sacrum and both ilia. Eroding deeper breaks
    the bridge: the first deeper depth that still names a sacrum with both ilia and shows
    a central piece above it no wider than a lumbar body (an upper sacral segment split
    off would carry the alae) gives (sacral seed, L5 seed, that depth); otherwise None.
    """
    erosions = _Erosions(seeds, spacing)
    for deeper in (d for d in EROSION_STEPS_MM if d > depth):
        labels, _, named = _named_at(erosions, deeper, spacing, midline_mm)
        if named is None:
            return None
        if "L5" in named and named["L5"].width < MIN_SACRUM_WIDTH_MM:
            return labels == named["sacrum"].label, labels == named["L5"].label, deeper
    return None


# (cortex threshold HU, closing radius mm), tried in this order: the first that shows a
# plausible sacrum wins. Without a closing the joints stay open; thin osteoporotic cortex
# needs a lower threshold or a closing to enclose its trabecular bone.
SOLID_SETTINGS = ((250.0, 0.0), (200.0, 0.0), (150.0, 0.0), (200.0, 1.0), (150.0, 1.0), (120.0, 1.0),
                  (200.0, 2.0), (150.0, 2.0))


# Osteoporotic bone whose trabecular bone is as dark as muscle (see _walls).
COMPARTMENT_CORTEX_HU = 100.0
COMPARTMENT_CLOSE_MM = 3.0
WALL_SIGMA_MM = 1.0
WALL_HU = 150.0
SURFACE_MM = 1.5
MISSED_THICK_MM = 2.0
MISSED_FRACTION = 0.5
SPECKLE_MM3 = 100.0
MARROW_WALL_HU = 200.0           # fatty marrow: the cortex between the bones' compartments (split_bones_by_marrow)
DIM_CORTEX_CAVEAT = ("the cortex is too dim to enclose the trabecular bone (as dark as muscle): the bones were "
                     "split by their trabecular compartments, and the canal and foramina, as dark as that bone, "
                     "may be incomplete: check them on the images")
FATTY_MARROW_CAVEAT = ("the marrow is darker than soft tissue and hides the joints: the bones were split by their "
                       "marrow compartments, and the canal and foramina were sought outside the bone the cortex "
                       "encloses; the sacrum's borders and its lumens are less precise: check them on the images")


@dataclass(frozen=True)
class _Named:
    """Seeds whose eroded pieces named the bones, and how to grow them back."""

    seeds: np.ndarray
    how: str
    depth: float
    labels: np.ndarray
    pieces: list[_Piece]
    named: dict[str, _Piece]


def _enclosed(smooth: np.ndarray, spacing: np.ndarray) -> np.ndarray:
    """The volume a dim cortex encloses: above COMPARTMENT_CORTEX_HU, closed by COMPARTMENT_CLOSE_MM, filled."""
    return fill_holes(closing(smooth > COMPARTMENT_CORTEX_HU, COMPARTMENT_CLOSE_MM, spacing))


def _walls(smooth: np.ndarray, spacing: np.ndarray, smooth_mm: float) -> np.ndarray:
    """The cortical walls between the trabecular compartments of bone under a dim cortex.

    Where trabecular bone is as dark as muscle only the cortex marks bone, and a shell
    thinner than a voxel is too dim and broken to be filled at the thresholds of
    SOLID_SETTINGS. A lower threshold (COMPARTMENT_CORTEX_HU) closed by COMPARTMENT_CLOSE_MM
    encloses every bone (:func:`_enclosed`), but bridges the joints between them too.
    The bones' trabecular compartments are still apart: a joint runs between two cortical
    walls, above WALL_HU once smoothed to WALL_SIGMA_MM (``smooth`` is smoothed by ``smooth_mm``
    already; no more where that is as much). The enclosed voxels off the walls,
    less a SURFACE_MM layer at the enclosure's surface (the dim partial volume outside the
    cortex), seed the bones, which are grown back into :func:`_filled_in`.
    """
    extra = np.sqrt(max(WALL_SIGMA_MM ** 2 - smooth_mm ** 2, 0.0)) / np.asarray(spacing)
    return ndimage.gaussian_filter(smooth, sigma=extra) > WALL_HU


def _first_named(candidates, spacing: np.ndarray, midline_mm: float) -> _Named | None:
    """The first of ``candidates`` ((seeds, how they were made), tried in order) whose pieces,
    eroded by one of EROSION_STEPS_MM (shallowest first), name the bones."""
    for seeds, how in candidates:
        erosions = _Erosions(seeds, spacing)
        for depth in EROSION_STEPS_MM:
            labels, pieces, named = _named_at(erosions, depth, spacing, midline_mm)
            if named is not None:
                return _Named(seeds, how, depth, labels, pieces, named)
            if not pieces:          # each deeper piece lies in one of these: none is large enough either
                break
    return None


def _shell_candidates(smooth: np.ndarray, spacing: np.ndarray):
    """The filled cortical shells at each of SOLID_SETTINGS, as candidates for :func:`_first_named`."""
    for threshold, close_mm in SOLID_SETTINGS:
        cortex = smooth > threshold
        if close_mm:
            cortex = closing(cortex, close_mm, spacing)
        yield fill_holes(cortex), f"bones seeded from cortex > {threshold:g} HU" + (
            f" closed by {close_mm:g} mm" if close_mm else "")


def _missed(enclosed: np.ndarray, held: np.ndarray, spacing: np.ndarray) -> np.ndarray:
    """The parts of ``enclosed`` that ``held`` misses, thicker than 2 x MISSED_THICK_MM (trabecular
    bone under a cortex too dim for ``held``, and the canal; not the joints a closing bridged)."""
    return opening(enclosed & ~held, MISSED_THICK_MM, spacing)


def _filled_in(enclosed: np.ndarray, solid: np.ndarray, spacing: np.ndarray) -> np.ndarray:
    """The solid bone of a dim cortex: ``solid`` with the thick parts of ``enclosed`` it missed, and
    the holes of at most SPECKLE_MM3 left between them (dark trabecular speckle, not lumens)."""
    return fill_holes(solid | _missed(enclosed, solid, spacing), int(SPECKLE_MM3 / np.prod(spacing)))


def _misses_the_sacrum(bones: Bones, enclosed: np.ndarray, solid: np.ndarray, spacing: np.ndarray) -> bool:
    """Whether the bones grown from the shells missed much of the sacrum: the parts of ``enclosed``
    that neither they nor the solid bone hold (:func:`_missed`), and that touch the sacrum, hold
    more than MISSED_FRACTION of its volume."""
    held = solid | bones.sacrum | bones.ilium_left | bones.ilium_right | bones.L5 | bones.coccyx
    missed = _missed(enclosed, held, spacing)
    pieces, _ = ndimage.label(missed)
    touching = np.unique(pieces[ndimage.binary_dilation(bones.sacrum) & missed])
    return np.isin(pieces, touching[touching > 0]).sum() > MISSED_FRACTION * bones.sacrum.sum()


def split_bones(smooth: np.ndarray, solid: np.ndarray, spacing: np.ndarray, midline_mm: float, *,
                dim_cortex: bool = False, smooth_mm: float = SMOOTH_MM) -> Bones:
    """Name and separate the bones of the sacral region (canonical axes L, P, S).

    The cortical shells are filled at each of SOLID_SETTINGS in turn, and eroded deeper
    and deeper until the bones are named. With ``dim_cortex``, when none names them, or
    only the deepest erosion does (the filled shells bridge the joints deeply), or the bones
    grown from them miss much of the sacrum (:func:`_misses_the_sacrum`), the trabecular
    compartments of a dim cortex are tried (:func:`_walls`), and win if they name the bones.

    Parameters
    ----------
    smooth : array
        Smoothed CT (HU); bones are seeded from its cortical shell.
    solid : array
        The solid bone (cracks sealed) that the named bones are grown into.
    dim_cortex : bool
        Whether to try the compartments of a dim cortex (a fallback: a CT cropped to the
        sacral region cuts the ilia open, and is better segmented whole).
    smooth_mm : float
        The sigma (mm) of the Gaussian that made ``smooth``.

    Raises
    ------
    NoSacrumError
        When no seeds tried show a wide central bone with an ilium on each side.
    """
    spacing = np.asarray(spacing, dtype=float)
    found = _first_named(_shell_candidates(smooth, spacing), spacing, midline_mm)
    bones = None if found is None else _grown(found, solid, smooth, spacing, midline_mm)
    if dim_cortex:
        enclosed = _enclosed(smooth, spacing)
        if bones is None or found.depth >= EROSION_STEPS_MM[-1] or _misses_the_sacrum(bones, enclosed, solid, spacing):
            inner = eroded_by_ball(enclosed, SURFACE_MM, spacing)
            how = f"bones seeded from their trabecular compartments between walls > {WALL_HU:g} HU"
            dim = _first_named([(inner & ~_walls(smooth, spacing, smooth_mm), how)], spacing, midline_mm)
            if dim is not None:
                bones = _grown(dim, _filled_in(enclosed, solid, spacing), smooth, spacing, midline_mm, dim_cortex=True)
    if bones is None:
        raise NoSacrumError(_no_sacrum_found(solid, spacing, midline_mm))
    return bones


def split_bones_by_marrow(smooth: np.ndarray, solid: np.ndarray, spacing: np.ndarray, midline_mm: float) -> Bones:
    """Name and separate the bones by their marrow compartments: the fallback for fatty marrow.

    Marrow darker than soft tissue hides the joints: the bones' shells, filled, join across
    them, and no erosion parts the sacrum from the ilia. Each bone's marrow is still walled off
    from its neighbour's by two cortical plates. ``solid`` (the bone its cortex encloses in its
    sections) less a SURFACE_MM layer and less the cortex above MARROW_WALL_HU seeds the bones,
    eroded and named as in :func:`split_bones`, and grown back into ``solid``.

    Raises
    ------
    NoSacrumError
        When the compartments show no wide central bone with an ilium on each side.
    """
    spacing = np.asarray(spacing, dtype=float)
    seeds = eroded_by_ball(solid, SURFACE_MM, spacing) & ~(smooth > MARROW_WALL_HU)
    how = f"bones seeded from their marrow compartments between walls > {MARROW_WALL_HU:g} HU"
    found = _first_named([(seeds, how)], spacing, midline_mm)
    if found is None:
        raise NoSacrumError(_no_sacrum_found(solid, spacing, midline_mm))
    return replace(_grown(found, solid, smooth, spacing, midline_mm), fatty_marrow=True, caveat=FATTY_MARROW_CAVEAT)


def _no_sacrum_found(solid: np.ndarray, spacing: np.ndarray, midline_mm: float) -> str:
    """Why no sacrum was named, from the pieces of ``solid``: no wide central bone (a field without
    a sacrum), or one piece wider than a sacrum across the midline (the sacrum may be in it, joined
    to the ilia where the CT shows no joint between them: marrow as dark as the joints, real sacra
    with their marrow made fatty were refused so)."""
    _, pieces = _pieces(solid, spacing)
    widest = max(pieces, key=lambda p: p.width, default=None)
    if widest is not None and widest.width > MAX_SACRUM_WIDTH_MM and widest.lo[0] < midline_mm < widest.hi[0]:
        return (f"no sacrum in the field of view was told apart from the other bones: one bone piece "
                f"{widest.width:.0f} mm wide ({widest.volume_ml:.0f} ml) spans the midline; the sacrum may be in it, "
                "joined to the ilia where the CT shows no joint between them (marrow as dark as soft tissue "
                "hides the joints): check the CT, or give the sacrum's mask with --sacrum-mask")
    width = 0.0 if widest is None else widest.width
    return (f"no sacrum in the field of view: found {len(pieces)} bone pieces (widest {width:.0f} mm) "
            "but no wide bone on the midline with an ilium on each side")


def _implausible_coccyx(coccyx: np.ndarray, sacrum: np.ndarray, spacing: np.ndarray) -> str:
    """Why the bone grown from a coccyx seed cannot be a coccyx (wider than MAX_COCCYX_WIDTH_MM
    or more than MAX_COCCYX_FRACTION of the sacrum's volume: it took the lower sacrum), or ''."""
    if not coccyx.any():
        return ""
    xs = np.flatnonzero(coccyx.any(axis=(1, 2)))
    width = float(xs[-1] - xs[0] + 1) * spacing[0]
    fraction = coccyx.sum() / max(int(sacrum.sum()), 1)
    if width > MAX_COCCYX_WIDTH_MM or fraction > MAX_COCCYX_FRACTION:
        return f"{width:.0f} mm wide and {fraction:.0%} of the sacrum's volume"
    return ""


def _implausible_L5(l5: np.ndarray, spacing: np.ndarray) -> str:
    """Why the bone grown from an L5 seed cannot be L5 (less than MIN_L5_ML, yet not cut by the top
    of the field of view: a fragment of the upper sacrum split off by a fracture), or ''."""
    if not l5.any() or l5[:, :, -1].any():
        return ""
    volume = float(l5.sum() * np.prod(spacing)) / 1000.0
    return f"only {volume:.0f} ml and whole in the field of view" if volume < MIN_L5_ML else ""


def _joints_top(contacts: tuple[np.ndarray, np.ndarray]) -> int | None:
    """The highest slice (index along S) at which the sacrum meets both ilia, or None if it misses one.

    ``contacts`` are the sacral voxels within SI_CONTACT_MM of each ilium. A slice meets an ilium
    where it holds at least SI_CONTACT_FRACTION of the median count of such voxels over the slices
    that have any (a lumbar transverse process that comes near the iliac crest holds far fewer).
    """
    tops = []
    for contact in contacts:
        count = contact.sum(axis=(0, 1)).astype(float)
        if not count.any():
            return None
        tops.append(int(np.flatnonzero(count >= SI_CONTACT_FRACTION * np.median(count[count > 0])).max()))
    return min(tops)


def _lumbar_part(sacrum: np.ndarray, ilia: tuple[np.ndarray, np.ndarray], spacing: np.ndarray,
                 midline_mm: float) -> np.ndarray | None:
    """The lumbar spine (L5 and above) inside a sacral mask that took it in, or None.

    When no erosion parted L5 from the sacrum (a thin disc whose oblique end plates enclose it
    in axial sections, so the dark-marrow fill makes it bone; post-mortem or degenerate
    discs), the sacroiliac joints still tell the levels apart: the sacrum meets both ilia, the
    lumbar spine does not. Bone more than SACRAL_MARK_MM below the joints' top
    (:func:`_joints_top`) and the bone at the joints seed the sacrum, bone within CENTRAL_MM of
    the midline more than LUMBAR_MARK_MM above it the lumbar spine, and a watershed on the
    distance to the mask's surface parts them at the narrowest neck between: the L5-S1 disc and
    the facet joints. None when the joints are not found or less than MIN_L5_ML of central bone
    lies that high. All of it is computed in the sacrum's box (widened by SI_CONTACT_MM).
    """
    if not sacrum.any() or not all(ilium.any() for ilium in ilia):
        return None
    box = bounding_box(sacrum, np.ceil(SI_CONTACT_MM / spacing).astype(int) + 1)
    sac = sacrum[box]
    contacts = tuple(sac & (distance_mm(~ilium[box], spacing) <= SI_CONTACT_MM)
                     if ilium[box].any() else np.zeros_like(sac) for ilium in ilia)
    top = _joints_top(contacts)
    if top is None:
        return None
    z = np.arange(sac.shape[2])[None, None, :] * spacing[2]
    x = (np.arange(sac.shape[0]) + box[0].start) * spacing[0]
    central = (np.abs(x - midline_mm) <= CENTRAL_MM)[:, None, None]
    lumbar = sac & central & (z >= top * spacing[2] + LUMBAR_MARK_MM)
    if lumbar.sum() * np.prod(spacing) / 1000.0 < MIN_L5_ML:
        return None
    markers = np.zeros(sac.shape, dtype=np.int32)
    at_joints = (contacts[0] | contacts[1]) & (z <= top * spacing[2])
    markers[(sac & (z <= top * spacing[2] - SACRAL_MARK_MM)) | at_joints] = 1
    markers[lumbar] = 2
    depth = distance_mm(sac, spacing)
    out = np.zeros_like(sacrum)
    out[box] = watershed(-depth, markers, mask=sac) == 2
    return out


class _JoinedBefore:
    """Which named seeds a piece of ``found`` was joined to before the erosion (the seeds are
    labelled once, when first asked, and each piece's parts of them looked up once)."""

    def __init__(self, found: _Named, spacing: np.ndarray):
        self.found, self.spacing = found, np.asarray(spacing, dtype=float)
        self._joined: np.ndarray | None = None
        self._held: dict[int, set[int]] = {}

    def _parts(self, piece: _Piece) -> set[int]:
        if piece.label not in self._held:
            if self._joined is None:
                self._joined = ndimage.label(self.found.seeds)[0]
            box = tuple(slice(int(round(a)), int(round(b)) + 1)
                        for a, b in zip(piece.lo / self.spacing, piece.hi / self.spacing))
            self._held[piece.label] = set(np.unique(self._joined[box][self.found.labels[box] == piece.label]).tolist())
        return self._held[piece.label]

    def ilium_of(self, piece: _Piece) -> str:
        """The ilium whose seed ``piece`` was joined to, when it was not joined to the sacral seed
        (a part of that ilium that the erosion cut off at a thin neck: its auricular part beside
        the lower sacrum of a wide phantom), else ''."""
        named = self.found.named
        held = self._parts(piece)
        if held & self._parts(named["sacrum"]):
            return ""
        return next((side for side in ("ilium_left", "ilium_right")
                     if side in named and held & self._parts(named[side])), "")


def _beside_sacrum(piece: _Piece, named: dict[str, _Piece], midline_mm: float, depth: float) -> bool:
    """Whether an unnamed eroded piece is a part of the sacrum cut off from its seed.

    An ala fragment cut off by a fracture line lies beside the sacral seed, within its height;
    the lower sacrum cut off by a fracture (or at the thin S2-S4) reaches up into that height
    from below; a piece on the midline that reaches up to L5's seed is the L5-S1 disc.
    """
    sacrum = named["sacrum"]
    disc = ("L5" in named and piece.lo[0] < midline_mm < piece.hi[0]
            and piece.hi[2] >= named["L5"].lo[2] - 2 * depth)
    return (piece.lo[0] >= sacrum.lo[0] - FRAGMENT_REACH_MM and piece.hi[0] <= sacrum.hi[0] + FRAGMENT_REACH_MM
            and (piece.lo[2] >= sacrum.lo[2] - FRAGMENT_BELOW_MM or piece.hi[2] >= sacrum.lo[2])
            and piece.hi[2] <= sacrum.hi[2] + 5.0
            and piece.volume_ml < 0.5 * sacrum.volume_ml and not disc)


def _chained_below_coccyx(pieces: list[_Piece], named: dict[str, _Piece], midline_mm: float, depth: float,
                          spacing: np.ndarray) -> list[_Piece]:
    """The central pieces no wider than a coccyx, behind the ilia's front as the coccyx's seed
    (:func:`_name_pieces`), that hang below that seed: each top within the gap two erosions by
    ``depth`` open across a joint of COCCYGEAL_JOINT_MM (and a voxel) of the lowest bottom of the
    seed and the pieces above it.

    The thin lower sacrum and the coccyx's segments erode into a column of small pieces, and only
    the highest is named coccyx: the rest were left out of every bone (real case 001 at 3 mm: 39 ml
    of its lower sacrum). They grow with the coccyx's seed, whose bone is taken as sacrum when it is
    too large for a coccyx (:func:`_implausible_coccyx`).
    """
    if "coccyx" not in named:
        return []
    gap_mm = 2 * depth + float(np.max(spacing)) + COCCYGEAL_JOINT_MM
    front = _front_mm(named[side] for side in ("ilium_left", "ilium_right"))
    chain, bottom = [], named["coccyx"].lo[2]
    central = [p for p in pieces if abs(p.centre[0] - midline_mm) < CENTRAL_MM and p.width < MAX_COCCYX_WIDTH_MM
               and p.centre[1] >= front and p.hi[2] < named["coccyx"].lo[2] + gap_mm]
    for piece in sorted(central, key=lambda p: -p.hi[2]):
        if piece.hi[2] >= bottom - gap_mm:
            chain.append(piece)
            bottom = min(bottom, piece.lo[2])
    return chain


def _grown(found: _Named, solid: np.ndarray, smooth: np.ndarray, spacing: np.ndarray, midline_mm: float, *,
           dim_cortex: bool = False) -> Bones:
    """The bones named in ``found``, grown back into ``solid`` (``dim_cortex``: seeded from a dim
    cortex's trabecular compartments, whose solid bone holds the lumens)."""
    named, labels, depth = found.named, found.labels, found.depth
    order = ("sacrum", "ilium_left", "ilium_right", "L5", "coccyx")
    markers = np.zeros(solid.shape, dtype=np.int32)
    for value, name in enumerate(order, start=1):
        if name in named:
            markers[labels == named[name].label] = value
    deeper = None if "L5" in named else _split_off_L5(found.seeds, depth, spacing, midline_mm)
    if deeper is not None:
        # L5 was joined to the sacral seed: the deeper seeds of both split it at its narrowest
        # neck (a watershed on the distance to its surface, as the bones are split below).
        sacral_seed, l5_seed, depth_l5 = deeper
        joined = markers == 1
        depth_in = distance_mm(joined, spacing)
        split = watershed(-depth_in, sacral_seed + 2 * l5_seed.astype(np.int32), mask=joined)
        markers[split == 2] = order.index("L5") + 1
    other = len(order) + 1
    known = {p.label for p in named.values()}
    joined_before = _JoinedBefore(found, spacing)
    rest = [piece for piece in found.pieces if piece.label not in known]
    beside = {piece.label for piece in rest if _beside_sacrum(piece, named, midline_mm, depth)}
    below = {piece.label for piece in _chained_below_coccyx([p for p in rest if p.label not in beside], named,
                                                            midline_mm, depth, spacing)}
    for piece in rest:
        # Beside the sacrum may also lie a part of an ilium that the erosion cut off at a thin neck:
        # it was joined to that ilium's seed, not to the sacrum's, before the erosion.
        ilium = joined_before.ilium_of(piece) if piece.label in beside else ""
        value = (order.index(ilium) + 1 if ilium else 1 if piece.label in beside
                 else order.index("coccyx") + 1 if piece.label in below else other)
        markers[labels == piece.label] = value
    # Grow each seed back by the depth it was eroded (borders midway across the gaps between
    # bones), then let a watershed through bright bone first give the rest (thin parts that the
    # erosion removed) to the nearest bone across the least dark path.
    reach = depth + float(np.max(spacing))
    grown = expanded_labels(markers, reach, spacing) * (solid | (markers > 0))
    grown = watershed(-np.clip(smooth, -200.0, 1500.0), grown, mask=solid | (markers > 0))
    masks = {name: grown == value for value, name in enumerate(order, start=1)}
    notes = [f"{found.how}, eroded {depth:g} mm"]
    too_large = _implausible_coccyx(masks["coccyx"], masks["sacrum"], spacing)
    if too_large:
        masks["sacrum"] = masks["sacrum"] | masks["coccyx"]
        masks["coccyx"] = np.zeros_like(masks["coccyx"])
        notes.append(f"the bone below the sacral seed grew {too_large}: too large for a coccyx, taken as sacrum")
    too_small = _implausible_L5(masks["L5"], spacing)
    if too_small:
        masks["sacrum"] = masks["sacrum"] | masks["L5"]
        masks["L5"] = np.zeros_like(masks["L5"])
        notes.append(f"the bone above the sacral seed grew {too_small}: too small for L5, taken as sacrum")
    if deeper is not None:
        notes.append(f"L5 and the sacrum seeded apart by eroding {depth_l5:g} mm")
    elif "L5" not in named:
        lumbar = _lumbar_part(masks["sacrum"], (masks["ilium_left"], masks["ilium_right"]), spacing, midline_mm)
        if lumbar is None:
            notes.append("no L5 found")
        else:
            masks["sacrum"] = masks["sacrum"] & ~lumbar
            masks["L5"] = lumbar
            notes.append(f"the lumbar spine ({lumbar.sum() * np.prod(spacing) / 1000.0:.0f} ml), joined to the "
                         "sacrum, parted from it above the sacroiliac joints: L5 and any vertebra above it are "
                         "labelled L5")
    if "coccyx" not in named:
        notes.append("no coccyx found")
    return Bones(notes=tuple(notes), lumens_filled=dim_cortex, caveat=DIM_CORTEX_CAVEAT if dim_cortex else "",
                 **masks)
