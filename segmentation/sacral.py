"""Steps 4-10 of the segmentation (docs/segmentation.md): the parts of the sacral region.

The bones are split (steps 1-3, :mod:`segmentation.pipeline`); here, in the region around the
sacrum, its lumens (canal, foramina), the dim bone of a coarse grid, the alae, the anterior
cortex, the sacroiliac joints, the L5-S1 disc, fracture lines and lytic lesions are found and
written into one label array of the region.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from segmentation.bone import (
    dilated_by_ball,
    eroded_by_ball,
    expanded_labels,
    fill_holes,
    fill_slice_holes,
    open_directions,
    opening,
)
from segmentation.lumens import FORAMEN_LEVELS, carry_open_ends, find_canal, find_foramina
from segmentation.parts import (
    FRACTURE_SIDE_MM,
    LESION_MIN_TRABECULAR_HU,
    alae,
    anterior_cortex,
    closed_lesions,
    disc,
    fracture_lines,
    joints,
    lesions,
    sacral_axis,
    uncorticated_fraction,
)
from segmentation.region import Region
from segmentation.separation import Bones
from trajplan import labels as lt
from trajplan.distance import distance_mm
from trajplan.volume import bounding_box

DIM_BONE_HU = 110.0
DIM_BONE_REACH_MM = 30.0
DIM_BONE_MIN_SPACING_MM = 2.0     # finer grids resolve the cortex that encloses the dim bone
FRACTURE_CLEAR_MM = 2.0              # fracture lines are sought this far from the SI joints
FORAMEN_OPENING_MM = 2.0             # foramina continue this far out of the bone surface
LUMEN_OPENING_MM = 1.5               # the canal in bones split from enclosed volumes: dark lumps this thick,
CANAL_RUN_MM = 11.0                  # or dark runs this long head to foot (see _lumens)
MAX_UNCORTICATED = 0.35              # more of the pelvic surface without a cortex is flagged (a bright organ joined)
CORTEX_RESOLVED_MM = 2.0             # where voxels (antero-posterior) are at most this, a cortex shows in the band
POCKET_CLEAR_MM = 2.5                # marrow pockets (step 10a) lie deeper than this from the unlabelled outside
POCKET_SACRAL_SHARE = 0.6            # and are bounded at least this much by sacral bone
POCKET_OPEN_MM = 15.0                # soft tissue this far from bone is outside the pockets
POCKET_OPEN_DIRECTIONS = 1           # a pocket voxel leads out in at most this many of 26 directions,
POCKET_OPEN_DIRECTIONS_COARSE = 2    # or this many, a voxel clear of those that lead out in more, where
COARSE_POCKET_MM = 2.5               # a voxel side is at least this
POCKET_OTHER_CLEAR_MM = 6.0          # walled voxels nearer the sacrum than other bones, this far from them
POCKET_OPEN_CLEAR_MM = 1.5           # farther than this from the unlabelled voxels that lead out in more
POCKET_LUMEN_CLEAR_MM = 2.0          # and lies farther than this from the canal and foramina
FATTY_LUMEN_HU = 60.0                # bones split by fatty marrow compartments: lumens (soft tissue) below this
POCKET_NEAREST_PAD = 10              # voxels around the pockets searched first for their nearest sacral bone


@dataclass(frozen=True)
class SacralParts:
    """The label array of the sacral region and what was found and noticed on the way."""

    labels: np.ndarray
    trabecular_hu: float
    foramina_found: dict[str, int]
    notes: list[str]
    partial: list[str]


@dataclass(frozen=True)
class _Lumens:
    canal: np.ndarray
    foramina: dict[str, list[np.ndarray]]
    lumen: np.ndarray            # canal and foramina
    canal_axis: np.ndarray       # the canal's core's axis (before its rim is added)
    region: Region               # with its midline at the canal's centre


def label_sacral_region(region: Region, bones: Bones, solid: np.ndarray, cortex_solid: np.ndarray, cortex_hu: float,
                        *, external_sacrum: bool, dark_marrow: bool = False) -> SacralParts:
    """Steps 4-10a in ``region`` (the sacral crop): ``bones``, ``solid`` (the bone the split grew
    into) and ``cortex_solid`` (the bone the cortex encloses above ``cortex_hu``) are cropped to it
    already. ``external_sacrum``: the sacrum came from a given mask, taken as it is (no dim-bone
    growth, no marrow pockets). ``dark_marrow``: step 2a took dark fatty marrow as bone, so the
    marrow pockets are filled on coarse grids too."""
    notes: list[str] = []
    partial: list[str] = []
    spacing, sm = region.spacing, region.smooth
    sac = bones.sacrum
    neighbours = bones.L5 | bones.ilium_left | bones.ilium_right | bones.coccyx
    interior = eroded_by_ball(sac, 3.0, spacing)
    trabecular = float(np.median(sm[interior])) if interior.any() else 150.0
    dark_hu = float(np.clip(0.5 * trabecular, 15.0, 150.0))
    found = _lumens(region, bones, cortex_solid, cortex_hu, dark_hu, notes, partial)
    region, lumen = found.region, found.lumen
    if not external_sacrum and spacing.max() >= DIM_BONE_MIN_SPACING_MM:
        sac = _with_dim_bone(sac, sm, neighbours, lumen, spacing)
        solid = solid | sac
    labels = _parts(region, bones, sac, solid, found, trabecular, dark_hu, notes, partial)
    if not external_sacrum and (dark_marrow or spacing.max() < DIM_BONE_MIN_SPACING_MM):
        pockets = marrow_pockets(labels, spacing)
        if pockets.any():
            labels = _given_to_nearest_sacral_label(labels, pockets)
            notes.append(f"{pockets.sum() * np.prod(spacing) / 1000.0:.1f} ml of dark marrow pockets that the "
                         "sacrum walls in labelled as its bone")
    return SacralParts(labels, trabecular, {side: len(m) for side, m in found.foramina.items()}, notes, partial)


def _lumens(region: Region, bones: Bones, cortex_solid: np.ndarray, cortex_hu: float, dark_hu: float,
            notes: list[str], partial: list[str]) -> _Lumens:
    """Steps 4-5: the canal, then the foramina (the region's midline moved to the canal's centre).

    Foramina searched below a lumen threshold lowered under ``dark_hu`` (the trabecular bone is
    nearly as dark as they are) flag the result partial where a side has fewer than FORAMEN_LEVELS
    of them, naming those not found; where all were found, that is a note (:func:`_lowered_threshold`).

    Bones split by their fatty marrow compartments (:func:`segmentation.separation.split_bones_by_marrow`)
    have marrow darker than the lumens' soft tissue: the foramina are sought below FATTY_LUMEN_HU on
    the CT with the bone that the cortex encloses (``cortex_solid``) read as bright as the cortex.

    Bones split from enclosed volumes (the random walk's, a dim cortex's compartments) have the
    canal filled in. The dark voxels they filled in beyond the bone the cortex encloses are taken
    out again for the canal search where they form lumps at least 2 x LUMEN_OPENING_MM thick or
    run on head to foot for CANAL_RUN_MM (the speckle of dark trabecular bone does neither). The
    runs keep the lower canal where its dark core is too shallow for such lumps; the lumps keep
    the canal where it runs obliquely. There the canal's rim, which partial volume with the
    bright wall lifts above the lumen threshold, is added up to the wall (as a hole of the
    cortex-enclosed bone has it) once the foramina are found: before the foramen search it set
    the canal against thin walls that the search crossed. The axis is the core's: the rim is
    uneven, and shifted the anterior cortex.
    """
    spacing, sm, sac = region.spacing, region.smooth, bones.sacrum
    if bones.lumens_filled:
        dark_fill = ~cortex_solid & (sm < dark_hu)
        run = np.ones((1, 1, 2 * int(np.round(CANAL_RUN_MM / 2 / spacing[2])) + 1), dtype=bool)
        filled_dark = (opening(dark_fill, LUMEN_OPENING_MM, spacing)
                       | ndimage.binary_opening(dark_fill, structure=run))
        canal = find_canal(sac & ~filled_dark, spacing, region.midline_i)
    else:
        canal = find_canal(sac, spacing, region.midline_i)
    if canal.any():
        region = region.midline_at(float(np.argwhere(canal)[:, 0].mean()))
    if bones.fatty_marrow:
        # Marrow darker than the lumens' soft tissue: the lumens are sought outside the bone the
        # cortex encloses, read as bright as the cortex (no sharper search: it would find the marrow).
        foramina, canal_corners, lumen_hu = find_foramina(np.where(cortex_solid, np.maximum(sm, cortex_hu), sm), sac,
                                                          canal, spacing, region.midline_i, FATTY_LUMEN_HU,
                                                          lower=False)
        dark_hu = FATTY_LUMEN_HU
    else:
        foramina, canal_corners, lumen_hu = find_foramina(sm, sac, canal, spacing, region.midline_i, dark_hu,
                                                          hu=region.hu)
    canal = carry_open_ends(canal | canal_corners, sac & ~canal_corners)
    if lumen_hu < dark_hu:
        _lowered_threshold(foramina, lumen_hu, dark_hu, notes, partial)
    lumen = canal.copy()
    for masks in foramina.values():
        for m in masks:
            lumen |= m
    canal_axis = sacral_axis(canal, spacing)
    if bones.lumens_filled:
        rim = ndimage.binary_dilation(canal, structure=ndimage.generate_binary_structure(3, 1))
        canal = canal | (rim & sac & ~lumen & (sm < cortex_hu))
        lumen = lumen | canal
    return _Lumens(canal, foramina, lumen, canal_axis, region)


def _lowered_threshold(foramina: dict[str, list[np.ndarray]], lumen_hu: float, dark_hu: float,
                       notes: list[str], partial: list[str]) -> None:
    """Say that the foramina were searched below ``lumen_hu`` instead of ``dark_hu``: in ``partial``,
    naming the levels not found, where a side has fewer than FORAMEN_LEVELS; else in ``notes``."""
    why = (f"the trabecular bone is nearly as dark as the foramina: they were searched below {lumen_hu:.0f} HU "
           f"instead of {dark_hu:.0f} HU")
    levels = {side: "-".join(dict.fromkeys((f"S{len(masks) + 1}", f"S{FORAMEN_LEVELS}")))
              for side, masks in foramina.items() if len(masks) < FORAMEN_LEVELS}
    missing = ([f"{levels['left']} on both sides"] if len(levels) == 2 and len(set(levels.values())) == 1
               else [f"{which} on the {side}" for side, which in levels.items()])
    if missing:
        one = sum(FORAMEN_LEVELS - len(masks) for masks in foramina.values()) == 1
        partial.append(f"{why}, and {'foramen' if one else 'foramina'} {' and '.join(missing)} "
                       f"{'was' if one else 'were'} not found: a needle's clearance from "
                       f"{'it' if one else 'them'} cannot be checked, check {'it' if one else 'them'} on the images")
    else:
        notes.append(f"{why}; all {FORAMEN_LEVELS} levels were found on both sides")


def _parts(region: Region, bones: Bones, sac: np.ndarray, solid: np.ndarray, found: _Lumens, trabecular: float,
           dark_hu: float, notes: list[str], partial: list[str]) -> np.ndarray:
    """Steps 6-10 and the region's label array: alae, anterior cortex, SI joints, disc, fracture
    lines and lesions, over the neighbouring bones, with the lumens last."""
    spacing, sm, midline_i = region.spacing, region.smooth, region.midline_i
    canal, foramina, lumen = found.canal, found.foramina, found.lumen
    bone = sac & ~lumen
    ala = alae(bone, foramina, spacing, midline_i)
    # A fracture line is sought from the foramina's lumen outwards (the ala label starts a little
    # further out, and a line runs on through that strip).
    lateral_halves = alae(bone, foramina, spacing, midline_i, beyond_mm=0.0)
    lateral = lateral_halves["left"] | lateral_halves["right"]
    envelope = fill_holes(bone | lumen)
    cortex = anterior_cortex(envelope, bone, spacing, found.canal_axis)
    uncorticated = uncorticated_fraction(cortex, bone, sm, spacing) if spacing[1] <= CORTEX_RESOLVED_MM else 0.0
    if uncorticated > MAX_UNCORTICATED:
        partial.append(f"{uncorticated:.0%} of the sacrum's pelvic surface shows no cortex brighter than the bone "
                       "behind it: something as bright as bone without a cortex of its own (contrast-filled bowel?) "
                       "may be joined to the sacrum there: check its anterior border on the images")
    foramina = _with_openings(foramina, envelope | solid, spacing)
    side_of = np.sign(np.arange(sm.shape[0]) - midline_i)[:, None, None]
    joint = {side: joints(sac, getattr(bones, f"ilium_{side}"), solid, spacing) & (side_of == sign)
             for side, sign in (("left", 1), ("right", -1))}
    lytic, crack = _lesions_and_fractures(sm, region.smooth_mm, bone, lumen, lateral, cortex, joint, spacing,
                                          trabecular, dark_hu, notes)

    out = np.zeros(sm.shape, dtype=np.uint8)
    for name in ("ilium_left", "ilium_right", "L5", "coccyx"):
        out[getattr(bones, name)] = lt.value(name)
    out[disc(sac, bones.L5, solid, sm, spacing, midline_i)] = lt.value("L5_S1_disc")
    out[bone] = lt.value("sacrum")
    out[ala["left"]] = lt.value("ala_left")
    out[ala["right"]] = lt.value("ala_right")
    out[cortex] = lt.value("anterior_cortex")
    out[lytic] = lt.value("lesion")
    out[crack] = lt.value("fracture")
    for side, sheet in joint.items():                # the joint sheet is cut from the bones beside it
        out[sheet] = lt.value(f"si_joint_{side}")
    out[canal] = lt.value("canal")
    for side, masks in foramina.items():
        for level, m in enumerate(masks, start=1):
            out[m] = lt.value(f"foramen_S{level}_{side}")
    return out


def _lesions_and_fractures(sm: np.ndarray, smooth_mm: float, bone: np.ndarray, lumen: np.ndarray, lateral: np.ndarray,
                           cortex: np.ndarray, joint: dict[str, np.ndarray], spacing: np.ndarray, trabecular: float,
                           dark_hu: float, notes: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """Steps 9-10: lytic lesions (not in trabecular bone too dark to tell them from its texture)
    and fracture lines in the lateral sacrum, clear of the SI joints and the lesions; ``sm`` is the CT
    smoothed by ``smooth_mm``."""
    if trabecular < LESION_MIN_TRABECULAR_HU:
        lytic = np.zeros_like(bone)
        notes.append(f"lytic lesions were not sought: the trabecular bone ({trabecular:.0f} HU, below "
                     f"{LESION_MIN_TRABECULAR_HU:.0f} HU) is too dark to tell a lesion from its texture")
    else:
        lytic, opening_ml = closed_lesions(lesions(sm, bone, lumen, spacing, dark_hu, smooth_mm), sm, bone,
                                           lumen | joint["left"] | joint["right"], spacing, dark_hu)
        if opening_ml:
            notes.append(f"{opening_ml:.1f} ml of dark regions in the sacrum that open into the soft tissue outside "
                         "it (a foramen the lumen search missed, or marrow or a lesion behind a gap in the cortex) "
                         "left unlabelled as lesion, so not targeted: check them on the images")
    beside = dilated_by_ball(joint["left"] | joint["right"], FRACTURE_CLEAR_MM, spacing)
    if lytic.any():
        beside |= distance_mm(~lytic, spacing) <= FRACTURE_SIDE_MM
    # The line is sought behind the cortex and the voxel its partial volume darkens, then carried
    # forward through that voxel up to the cortex (never into it: the cortex stays a critical label).
    behind = np.roll(cortex, 1, axis=1) & ~cortex & lateral
    crack = fracture_lines(sm, lateral & ~cortex & ~behind & ~beside, spacing)
    crack |= behind & np.roll(crack, -1, axis=1)
    return lytic & ~crack, crack


def _with_dim_bone(sacrum: np.ndarray, smooth: np.ndarray, neighbours: np.ndarray, lumen: np.ndarray,
                   spacing: np.ndarray) -> np.ndarray:
    """Step 5a: ``sacrum`` grown through the bone brighter than DIM_BONE_HU that joins it, up to
    DIM_BONE_REACH_MM.

    On a coarse grid (2-3 mm) the thin lower sacrum and the dim bone of the alae average below
    every cortex threshold, so no shell encloses them and the bone split leaves them out (real
    sacra at 3 mm: 20-35 % of the sacrum). They are still brighter than soft tissue, muscle and
    the lumens' contents, and joined to the sacrum; the other bones (``neighbours``) bound them,
    and what lies nearer to one of them than to the sacrum (an ilium's own dim bone) is left to it.
    The lumens found in the sacrum (``lumen``) bound them too: the bright rim of a foramen is not bone.
    """
    dim = (smooth > DIM_BONE_HU) & ~neighbours & ~sacrum & ~lumen
    if neighbours.any():
        dim &= distance_mm(~sacrum, spacing) < distance_mm(~neighbours, spacing)
    steps = int(np.ceil(DIM_BONE_REACH_MM / float(np.min(spacing))))
    return ndimage.binary_dilation(sacrum, structure=ndimage.generate_binary_structure(3, 1),
                                   iterations=steps, mask=dim | sacrum)


def marrow_pockets(labels: np.ndarray, spacing: np.ndarray) -> np.ndarray:
    """Step 10a: the unlabelled voxels that the labelled sacral region walls in, in pieces bounded at
    least POCKET_SACRAL_SHARE by sacral bone, and the voxels walled in 3-D that lie nearer to sacral
    bone than to any other bone (:func:`_nearer_sacrum`) (canonical axes; ``labels`` holds every
    label of the region).

    Walled in means (each kind in its own pieces) a hole of the labelled region's axial sections
    deeper than POCKET_CLEAR_MM from the unlabelled outside, or walled in 3-D: at most
    POCKET_OPEN_DIRECTIONS of the 26 neighbour directions lead through unlabelled voxels (and the
    canal and foramina) to soft tissue farther than POCKET_OPEN_MM from bone, and the voxel lies
    farther than POCKET_OPEN_CLEAR_MM from the unlabelled voxels that lead out in more (the bottom
    of a slot deeper than wide sees out through its mouth alone) and POCKET_LUMEN_CLEAR_MM from the
    canal and foramina.

    Real alae hold fatty marrow darker than soft tissue behind a thin cortex broken by the
    foramina and by fractures, so neither the shell fill (step 2) nor the bone split grows into
    it, and the labels are left with holes there (real sacra at 0.9-1 mm: 19-28 ml of the
    reference sacrum unlabelled, nearly all of it such marrow); a pocket that a crack opens to the
    outside is no hole of the axial sections through the crack. Every label counts as a wall for
    the holes (the lumens with their openings, the joints, the other bones), so a found canal or
    foramen is never filled; a hole bounded mostly by an ilium or a joint is not the sacrum's; and
    the clearance from the outside keeps the bays of the dorsal surface out (filling them put a
    planned bone entry in soft tissue). The rays pass through the lumens, so that the parts of a
    canal or foramen that the lumens missed open out along them, and the lumens' clearance keeps
    their missed rims unfilled.

    Where a voxel side is COARSE_POCKET_MM or more, a voxel that leads out in up to
    POCKET_OPEN_DIRECTIONS_COARSE directions is walled in too if it lies more than a voxel from those
    that lead out in more. A foramen 5-9 mm wide spans two or three such voxels, and the marrow
    behind it sees out through it in more than one direction: real sacra at 3 mm and with slices 3 mm
    thick, and the real 3 mm whole CT, kept much of their alae's marrow unlabelled. The voxel of
    clearance keeps the dorsal surface's shallow bays out (without it, and with three directions,
    planned bone entries lay up to 3 mm proud of the real sacra's bone).
    """
    occupied = labels > 0
    holes = fill_slice_holes(occupied, 2) & ~occupied
    outside = ~occupied & ~holes
    holes &= distance_mm(~outside, spacing) > POCKET_CLEAR_MM
    lumens = lt.mask(labels, *lt.LUMENS)
    bone = occupied & ~lumens
    open_to = ~bone & (distance_mm(~bone, spacing) > POCKET_OPEN_MM)
    directions = open_directions(bone, ~bone & ~open_to)
    walled = _walled(occupied, open_to, directions <= POCKET_OPEN_DIRECTIONS, POCKET_OPEN_CLEAR_MM, spacing)
    if spacing.max() >= COARSE_POCKET_MM:
        walled |= _walled(occupied, open_to, directions <= POCKET_OPEN_DIRECTIONS_COARSE,
                          1.01 * spacing.max(), spacing)        # more than a voxel
    walled &= distance_mm(~lumens, spacing) > POCKET_LUMEN_CLEAR_MM
    return (_walled_by_sacrum(holes, labels) | _walled_by_sacrum(walled, labels)
            | _nearer_sacrum(walled, labels, bone, spacing))


def _walled(occupied: np.ndarray, open_to: np.ndarray, few: np.ndarray, clear_mm: float,
            spacing: np.ndarray) -> np.ndarray:
    """The unlabelled voxels of ``few`` (those that lead out in few enough directions) outside
    ``open_to`` and farther than ``clear_mm`` from the unlabelled voxels that lead out in more."""
    walled = ~occupied & few & ~open_to
    return walled & (distance_mm(occupied | walled, spacing) > clear_mm)


def _nearer_sacrum(walled: np.ndarray, labels: np.ndarray, bone: np.ndarray, spacing: np.ndarray) -> np.ndarray:
    """The voxels of ``walled`` nearer to sacral bone than to any other ``bone`` label (every label
    but the lumens), in pieces that touch sacral bone across a face.

    A piece walled in 3-D runs along the whole ala to the joint, so one share for all of it (as
    :func:`_walled_by_sacrum` takes for the holes) keeps or drops it whole on a knife edge: on the
    real 3 mm whole CT, 38 ml of ala marrow walled in at a share of 0.61 was lost at 0.57 once one
    more direction was let out. Where a piece falls short of the share, its voxels nearer to the
    sacrum are kept, where they lie more than POCKET_OTHER_CLEAR_MM from the other bones: the sacral
    half of a joint gap that the joint band missed is walled in too, and is no bone.
    """
    sacral = lt.sacral_bone(labels)
    others = bone & ~sacral
    to_others = distance_mm(~others, spacing)
    near = walled & (distance_mm(~sacral, spacing) < to_others) & (to_others > POCKET_OTHER_CLEAR_MM)
    pieces, _ = ndimage.label(near)
    touching = np.unique(pieces[ndimage.binary_dilation(sacral) & near])
    return np.isin(pieces, touching[touching > 0])


def _walled_by_sacrum(holes: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """The pieces of ``holes`` whose labelled neighbours (across a face) are at least
    POCKET_SACRAL_SHARE sacral bone."""
    occupied = labels > 0
    pieces, count = ndimage.label(holes)
    if not count:
        return holes
    faces = ndimage.generate_binary_structure(3, 1)
    walls = ndimage.binary_dilation(holes, structure=faces) & occupied
    owner = ndimage.grey_dilation(pieces, footprint=faces)[walls]      # the hole each wall voxel touches
    sacral = lt.sacral_bone(labels[walls])
    total = np.bincount(owner, minlength=count + 1)
    by_sacrum = np.bincount(owner, weights=sacral, minlength=count + 1)
    kept = by_sacrum >= POCKET_SACRAL_SHARE * np.maximum(total, 1)
    kept[0] = False
    return kept[pieces]


def _given_to_nearest_sacral_label(labels: np.ndarray, where: np.ndarray) -> np.ndarray:
    """``labels`` with the voxels ``where`` given the label of the nearest sacral-bone voxel.

    Measured in the box of ``where`` widened by POCKET_NEAREST_PAD voxels, and on the whole
    array only if some voxel of ``where`` lies farther than that from sacral bone in the box
    (within the pad, the nearest sacral voxel is in the box: the same answer).
    """
    box = bounding_box(where, POCKET_NEAREST_PAD)
    sacral = lt.sacral_bone(labels[box])
    distance, nearest = ndimage.distance_transform_edt(~sacral, return_indices=True)
    if not sacral.any() or distance[where[box]].max() > POCKET_NEAREST_PAD:
        box = tuple(slice(None) for _ in labels.shape)
        _, nearest = ndimage.distance_transform_edt(~lt.sacral_bone(labels), return_indices=True)
    out = labels.copy()
    inside = where[box]
    out[box][inside] = labels[box][tuple(nearest)][inside]
    return out


def _with_openings(foramina: dict[str, list[np.ndarray]], solid: np.ndarray,
                   spacing: np.ndarray) -> dict[str, list[np.ndarray]]:
    """Each foramen extended FORAMEN_OPENING_MM out of the bone where it opens on the surface.

    The foramina are found inside the sacral envelope, but the nerve leaves through an
    opening that continues past the bone surface (dorsally, right where a long-axis needle
    runs). Soft-tissue voxels within FORAMEN_OPENING_MM of a foramen go to the nearest one.
    """
    found = [(side, level, mask) for side, masks in foramina.items() for level, mask in enumerate(masks)]
    if not found:
        return foramina
    index = np.zeros(solid.shape, dtype=np.int16)
    for number, (_, _, mask) in enumerate(found, start=1):
        index[mask] = number
    owner = expanded_labels(index, FORAMEN_OPENING_MM, spacing)       # the nearest foramen within reach
    opening = ~solid & (owner > 0)
    out: dict[str, list[np.ndarray]] = {side: list(masks) for side, masks in foramina.items()}
    for number, (side, level, mask) in enumerate(found, start=1):
        out[side][level] = mask | (opening & (owner == number))
    return out
