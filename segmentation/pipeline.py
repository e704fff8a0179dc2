"""CT -> labelled sacral anatomy: the one entry point the planner and the CLI call.

Works on an exactly reoriented copy of the CT whose axes run left, posterior,
superior (so prone scans and flipped files behave the same), cropped to the body
and then to the sacral region; the label map is written back on the CT's own grid.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
from scipy import ndimage

from segmentation.bone import (
    body_mask,
    bone_above,
    closing,
    enclosed_in_slices,
    enclosed_in_two_orientations,
    opening,
    smooth_hu,
    solid_bone,
)
from segmentation.joint_border import border_on_joint, leaves_a_clear_gap
from segmentation.noise import noise_sd_hu, smoothing_mm
from segmentation.parts import LESION_MIN_TRABECULAR_HU
from segmentation.region import Region, midline_of_body
from segmentation.rims import partial_volume_rims
from segmentation.sacral import label_sacral_region
from segmentation.separation import Bones, split_bones, split_bones_by_marrow
from segmentation.walker import split_bones_by_walker
from trajplan import labels as lt
from trajplan.distance import distance_mm
from trajplan.errors import NoSacrumError
from trajplan.io.atomic import write_json
from trajplan.io.files import write_volume_file
from trajplan.io.slicer_seg import write_slicer_segmentation
from trajplan.volume import Volume, block_means, bounding_box

log = logging.getLogger("trajplan")

METAL_HU = 3000.0
SACRAL_PAD_MM = 30.0
MIN_SACRUM_ML = 30.0
ILIUM_ASYMMETRY = 1.6
LOCATE_ABOVE_VOXELS = 12_000_000     # larger CTs are searched at LOCATE_SPACING_MM first
LOCATE_SPACING_MM = 2.0
LOCATE_PAD_MM = (45.0, 35.0, 35.0)   # crop margin around the located sacrum (L, P, S)
WORK_BELOW_MM = 0.75                 # a CT finer than this (any axis) is segmented on a grid of
WORK_SPACING_MM = 1.0                # this spacing (per axis, at least the CT's own)
NEIGHBOURS = ("ilium_left", "ilium_right", "L5", "coccyx")
CROP_AGREEMENT = 0.85                # least share of the crop's sacral bone within CROP_NEAR_MM of the located
CROP_NEAR_MM = 5.0                   # sacrum, and of the located sacrum within it of the crop's (_agreement)
LOCATED_BONE_CLEAR_MM = 5.0          # the located neighbours fill what the crop left unlabelled this far from sacrum
ENCLOSURE_HU = 110.0                 # dark marrow: what this threshold, closed by ENCLOSURE_CLOSE_MM, encloses
ENCLOSURE_CLOSE_MM = 2.0             # in the bone's sections, where its parts thicker than 2 x MARROW_MM
MARROW_MM = 2.0                      # hold more than MARROW_FRACTION of the bone (see _dark_marrow)
MARROW_FRACTION = 0.02
SEALED_CORTEX_HU = 200.0             # a cortex this bright, its fill leaked, is sealed in its sections (_sealed)
ABOVE_SACRUM_MM = 40.0               # L5 lies within this above the sacrum's top,
CENTRAL_MM = 30.0                    # this near the midline,
L5_MIN_ML = 5.0                      # and holds at least this much bone there
LESION_IN_FATTY_MARROW = ("uncertain: the sacrum holds dark fatty marrow, which looks like a lytic lesion on CT; "
                          "confirm the lesion on the images (or MR) before targeting it")
JOINT_PASSES = 2                     # step 3c's passes (_borders_on_joints)
PLAUSIBLE_SACRUM_ML = 130.0          # a sacrum found smaller than this, or larger than
LARGEST_SACRUM_ML = 400.0            # this, or centred farther than
OFF_MIDLINE_MM = 20.0                # this from the body's midline, is flagged (see _implausible_sacrum)
MIN_ALA_ML = 15.0                    # an ala found smaller is flagged (see _with_small_alae_flagged)


@dataclass(frozen=True)
class Segmentation:
    """A label map on the CT's grid and the report written as ``segmentation.json``."""

    labels: Volume
    report: dict

    @property
    def lesion_uncertain(self) -> bool:
        """Whether the report marks the lesion found uncertain (:func:`lesion_uncertain`)."""
        return lesion_uncertain(self.report)

    @property
    def implausible_reason(self) -> str | None:
        """Why the sacrum found cannot be a whole sacrum, or None (:func:`implausible_reason`)."""
        return implausible_reason(self.report)


def lesion_uncertain(report: dict) -> bool:
    """Whether a segmentation report (``segmentation.json``) marks the lesion found uncertain (dark
    fatty marrow can pass for one: ``structures.lesion.quality`` starts with "uncertain")."""
    return report.get("structures", {}).get("lesion", {}).get("quality", "").startswith("uncertain")


def implausible_reason(report: dict) -> str | None:
    """Why a segmentation report (``segmentation.json``) says its sacrum cannot be a whole sacrum
    (``implausible_reason``: too small, or off the body's midline), or None. No needle planned on
    such labels is called safe (:func:`trajplan.planning.plan_needles`)."""
    return report.get("implausible_reason") if report.get("implausible") else None


def block_averaged(ct: Volume, spacing: np.ndarray) -> Volume:
    """The CT on a coarser grid, each axis averaged over whole voxel blocks first where that fits.

    Where the new spacing holds two or more old voxels, the largest block that fits is
    averaged (the partial volume a scan at that resolution shows, not a point sample that
    can miss thin cortex); linear interpolation then places the result on the exact grid.
    """
    block = np.maximum(np.floor(spacing / ct.spacing + 1e-6).astype(int), 1)
    if np.all(block == 1):
        return ct.resample(spacing, fill=float(ct.array.min()))
    mean = block_means(ct.array, block, dtype=np.float32)
    # The block's centre is where its first voxel was plus half the block less half a voxel.
    origin = ct.index_to_world(((block - 1) / 2.0)[None])[0]
    averaged = Volume(mean, spacing=ct.spacing * block, origin=origin, direction=ct.direction)
    return averaged.resample(spacing, fill=float(ct.array.min()))


def _dark_marrow(smooth: np.ndarray, solid: np.ndarray, spacing: np.ndarray, *,
                 decided: bool | None = None) -> np.ndarray | None:
    """The bone that ``solid`` misses where dark fatty marrow lies behind a broken cortex, or None.

    Real alae often hold marrow darker than soft tissue behind a thin cortex broken by the
    foramina, so a 3-D fill of the cortex leaks out and leaves them hollow (real sacra at
    0.9 mm: 3-13 % of the solid bone missed in parts thicker than 4 mm, 6-15 % at 3 mm). Their
    marrow is still enclosed in the bone's 2-D sections (:func:`segmentation.bone.enclosed_in_slices`
    of ENCLOSURE_HU closed by ENCLOSURE_CLOSE_MM), and that enclosure beyond ``solid`` is returned:
    - when ``decided`` is True; never when it is False (a crop of a larger CT: cutting the bones
      open changes what the sections enclose, 76 ml on the demo phantom's crop, so the whole
      CT's located pass decides for it);
    - otherwise when its parts thicker than 2 x MARROW_MM hold more than MARROW_FRACTION of
      ``solid`` (0.1-0.7 % on whole phantoms, whose cortex is whole). The caller asks only where
      the bone is not dim throughout (:func:`_dim_throughout`): dark pockets in bright bone are
      marrow; bone dim throughout is split by its trabecular compartments (separation.py), or
      sealed where its shell leaked (:func:`_sealed`).
    """
    if decided is False:
        return None
    enclosed = enclosed_in_slices(closing(smooth > ENCLOSURE_HU, ENCLOSURE_CLOSE_MM, spacing)) & ~solid
    return enclosed if decided or _holds_much(enclosed, solid, spacing) else None


def _dim_throughout(smooth: np.ndarray, solid: np.ndarray, spacing: np.ndarray) -> bool:
    """Whether the bone deeper than MARROW_MM in ``solid`` is no brighter than ENCLOSURE_HU."""
    interior = distance_mm(solid, spacing) > MARROW_MM
    return not interior.any() or float(np.median(smooth[interior])) <= ENCLOSURE_HU


def _holds_much(enclosed: np.ndarray, solid: np.ndarray, spacing: np.ndarray) -> bool:
    """Whether the parts of ``enclosed`` thicker than 2 x MARROW_MM hold more than MARROW_FRACTION of ``solid``."""
    return bool(opening(enclosed, MARROW_MM, spacing).sum() > MARROW_FRACTION * solid.sum())


def _sealed(smooth: np.ndarray, solid: np.ndarray, cortex_hu: float, spacing: np.ndarray) -> np.ndarray | None:
    """The bone that a dim shell encloses in its sections where its 3-D fill leaked, or None.

    Bone dim throughout (trabecular bone at or below ENCLOSURE_HU: osteoporosis) has a thin
    cortex, and one gap in it at the cortex threshold (a foramen's wall thinner than a voxel) lets
    the fill of step 2 leak out of a whole bone: a 0.6 mm phantom with alae 4 mm wider (osteoporosis
    0.83) kept only the cortex of its upper sacrum, 155 ml hollow. That shell still encloses its
    bone in most 2-D sections (:func:`segmentation.bone.enclosed_in_slices`, at the cortex
    threshold and closing of step 2, not at ENCLOSURE_HU, where dim trabecular bone bridges the
    joints). It is taken when its thick parts hold more than MARROW_FRACTION of ``solid``. Called
    only for a cortex threshold of SEALED_CORTEX_HU or more: a dimmer cortex is broken all over,
    and the trabecular compartments split it (separation.py); sealed in its sections as well, the
    canal of a 2 mm phantom of osteoporosis 1.0 fell from Dice 0.82 to 0.76.
    """
    shell = smooth > cortex_hu
    enclosed = enclosed_in_slices(closing(shell, ENCLOSURE_CLOSE_MM, spacing) | shell) & ~solid
    return enclosed if _holds_much(enclosed, solid, spacing) else None


def _implausible_sacrum(sacrum: np.ndarray, spacing: np.ndarray, midline_i: float) -> list[str]:
    """Why the bone named sacrum cannot be a whole sacrum: it holds less than PLAUSIBLE_SACRUM_ML
    (adult sacra: about 150-300 ml; the real sacra of the validation 215 and 241 ml, the phantoms
    169-227 ml, their rare extreme of anatomy about 116 ml; 123 ml were found of real case 003's
    241 ml at 3 mm) or more than LARGEST_SACRUM_ML (real case 003 at 3 mm, another draw of its noise:
    506 ml, half of it in the ilia), or its centre lies more than OFF_MIDLINE_MM from the body's
    midline (a sacrum straddles it; a piece of an ilium does not)."""
    why = []
    ml = float(sacrum.sum() * np.prod(spacing) / 1000.0)
    if ml < PLAUSIBLE_SACRUM_ML:
        why.append(f"the sacrum found by the bone split holds only {ml:.0f} ml (an adult sacrum holds about "
                   "150-300 ml): it is incomplete or another bone; do not plan on it without checking it on the images")
    elif ml > LARGEST_SACRUM_ML:
        why.append(f"the sacrum found by the bone split holds {ml:.0f} ml (an adult sacrum holds about 150-300 "
                   "ml): it probably takes in part of an ilium or of L5; do not plan on it without checking it on "
                   "the images")
    off = (float(np.argwhere(sacrum)[:, 0].mean()) - midline_i) * spacing[0]
    if abs(off) > OFF_MIDLINE_MM:
        why.append(f"the sacrum found is centred {abs(off):.0f} mm to the {'left' if off > 0 else 'right'} of the "
                   "body's midline: it is probably part of an ilium; do not plan on it without checking it on the "
                   "images")
    return why


def _bones_from_masks(external: dict[str, np.ndarray], smooth: np.ndarray, solid: np.ndarray,
                      spacing: np.ndarray, midline_i: float) -> Bones:
    """Bones when an external sacrum mask replaces the bone/sacrum step."""
    sacrum = external["sacrum"]
    try:
        found = split_bones(np.where(sacrum, -1000.0, smooth), solid & ~sacrum, spacing, midline_i * spacing[0])
        ilia = {"ilium_left": found.ilium_left, "ilium_right": found.ilium_right}
        notes = ("sacrum from the external mask",)
    except NoSacrumError:
        ilia = {"ilium_left": np.zeros_like(sacrum), "ilium_right": np.zeros_like(sacrum)}
        notes = ("sacrum from the external mask", "ilia not separated from the CT")
    x = np.arange(sacrum.shape[0])[:, None, None]
    for name, sign in (("ilium_left", 1.0), ("ilium_right", -1.0)):
        if name in external:
            ilia[name] = external[name]
        ilia[name] = ilia[name] & ~sacrum & (sign * (x - midline_i) > 0)
    empty = np.zeros_like(sacrum)
    return Bones(sacrum=sacrum, L5=external.get("L5", empty) & ~sacrum, coccyx=empty, notes=notes, **ilia)


def segment(ct: Volume, *, sacrum_mask: Volume | None = None,
            external_labels: dict[str, np.ndarray] | None = None) -> Segmentation:
    """Label the sacrum and its critical parts in a CT (HU).

    A CT finer than WORK_BELOW_MM is segmented on a grid of WORK_SPACING_MM (block
    averaged), and the labels are brought back to the CT's grid. A large CT is first
    segmented at LOCATE_SPACING_MM to find the sacrum; the full resolution work then runs
    on the CT cropped around it (LOCATE_PAD_MM), and only the neighbouring bones beyond
    the crop (ilia, L5, coccyx) come from the coarse pass. If either pass finds no
    sacrum, or the crop's sacrum disagrees with the located one (CROP_AGREEMENT) or its
    ilia differ in volume where the located ones do not (ILIUM_ASYMMETRY), the whole CT is
    segmented at full resolution. Last, on the CT's own grid, the
    canal, the foramina and the sacral bone's outer surface are settled where partial volume
    with the cortex puts them (:mod:`segmentation.rims`).

    Parameters
    ----------
    ct : Volume
        CT in Hounsfield units, any orientation.
    sacrum_mask : Volume, optional
        A binary sacrum mask (any grid overlapping the CT) replacing the bone/sacrum step.
    external_labels : dict, optional
        Masks on the CT grid from :func:`segmentation.external.load_totalsegmentator`
        (``sacrum``, ``ilium_left``, ``ilium_right``, ``L5``).

    Raises
    ------
    NoSacrumError
        When no sacrum is in the field of view (the message says what was found).
    """
    return _with_small_alae_flagged(_with_rims(_segment_resolved(ct, sacrum_mask=sacrum_mask,
                                                                  external_labels=external_labels), ct))


def _segment_resolved(ct: Volume, *, sacrum_mask: Volume | None,
                      external_labels: dict[str, np.ndarray] | None) -> Segmentation:
    """:func:`segment` before the partial-volume rims: on the work grid, located and cropped as its CT needs."""
    if np.any(ct.spacing < WORK_BELOW_MM):
        return _segment_on_work_grid(ct, sacrum_mask=sacrum_mask, external_labels=external_labels)
    coarse = np.maximum(ct.spacing, LOCATE_SPACING_MM)
    if (sacrum_mask is not None or external_labels or np.prod(ct.shape) < LOCATE_ABOVE_VOXELS
            or np.prod(ct.spacing / coarse) > 1 / 3):
        return _segment_grid(ct, sacrum_mask=sacrum_mask, external_labels=external_labels, last_resort=True)
    try:
        rough = _segment_grid(ct.resample(coarse, fill=float(ct.array.min())), bones_only=True)
    except NoSacrumError:
        log.info("coarse pass found no sacrum: segmenting the whole CT at full resolution")
        return _segment_grid(ct, last_resort=True)
    sacral = np.argwhere(lt.mask(rough.labels, "sacrum"))
    corners = rough.labels.index_to_world(np.array([[a, b, c] for a in (sacral[:, 0].min(), sacral[:, 0].max())
                                                    for b in (sacral[:, 1].min(), sacral[:, 1].max())
                                                    for c in (sacral[:, 2].min(), sacral[:, 2].max())]))
    index = ct.world_to_index(corners)
    pad = np.abs(ct.direction.T @ np.asarray(LOCATE_PAD_MM)) / ct.spacing
    lower = np.floor(index.min(axis=0) - pad).astype(int)
    upper = np.ceil(index.max(axis=0) + pad + 1).astype(int)
    lower, upper = np.clip(lower, 0, ct.shape), np.clip(upper, 0, ct.shape)
    try:
        fine = _segment_grid(ct.crop(tuple(lower), tuple(upper)), midline_x_mm=rough.report["midline_x_mm"],
                             dark_marrow=rough.report["dark_marrow"])
    except NoSacrumError:
        log.info("no sacrum in the crop around the located one: segmenting the whole CT at full resolution")
        return _segment_grid(ct, last_resort=True)
    fine_sacral = lt.sacral_bone(fine.labels.array)
    cut = _cut_by_the_crop(fine_sacral, lower, upper, ct.shape)
    if cut:
        # The crop found more sacrum than the pad left room for (real case 003 with noise of sd 25 HU:
        # the bone below the sacral seed, taken as sacrum, ran to the crop's lower face, 11 mm short of
        # the bone's end, and the sacrum was flagged as cut by the field of view).
        log.info("the sacrum found in the crop reaches the crop's edge inside the CT (%s): segmenting the whole "
                 "CT at full resolution", cut)
        return _segment_grid(ct, last_resort=True)
    full = rough.labels.resample_onto(ct, interpolator="nearest").array
    inside = tuple(slice(lo, up) for lo, up in zip(lower, upper))
    agreement = _agreement(fine_sacral, full[inside] == lt.value("sacrum"), ct.spacing)
    if agreement < CROP_AGREEMENT:
        # The crop cuts the ilia open, and a bone split that needs them closed can fail there
        # in ways that still name a sacrum (one that takes in the ilia).
        log.info("the sacrum found in the crop differs from the located one (only %.0f%% within %g mm of each "
                 "other): segmenting the whole CT at full resolution", 100 * agreement, CROP_NEAR_MM)
        return _segment_grid(ct, last_resort=True)
    crop_ratio, located_ratio = (_ilia_ratio(*(lt.mask(labels, f"ilium_{side}") for side in lt.SIDES))
                                 for labels in (fine.labels.array, full[inside]))
    if crop_ratio > ILIUM_ASYMMETRY >= located_ratio:
        # The crop cut one ilium into pieces that its split did not name (varied phantom 111: the
        # left ilium's articular part left unlabelled beside the joint, no joint band there, four
        # needles called safe within 1.3 mm of the true joint).
        log.info("the ilia in the crop differ %.1f-fold in volume, the located ones %.1f-fold: segmenting the "
                 "whole CT at full resolution", crop_ratio, located_ratio)
        return _segment_grid(ct, last_resort=True)
    full[full == lt.value("sacrum")] = 0
    full[inside] = _with_located_neighbours(fine.labels.array, full[inside], ct.spacing)
    return _moved(fine, ct.with_array(full),
                  f"sacrum located on a {' x '.join(f'{s:g}' for s in rough.labels.spacing)} mm grid, then "
                  "segmented at full resolution in a "
                  f"{' x '.join(str(int(u - lo)) for lo, u in zip(lower, upper))} voxel crop")


def _cut_by_the_crop(sacral: np.ndarray, lower: np.ndarray, upper: np.ndarray, shape: tuple[int, ...]) -> str:
    """Where the crop ``lower:upper`` of a CT of ``shape`` cuts the sacral bone found in it (``sacral``,
    on the crop's grid): the faces it reaches that are not the CT's own, as ``"index axis 2, upper"``
    and so on ("" if none)."""
    faces = []
    for axis in range(3):
        ends = np.moveaxis(sacral, axis, 0)
        if lower[axis] > 0 and ends[0].any():
            faces.append(f"index axis {axis}, lower")
        if upper[axis] < shape[axis] and ends[-1].any():
            faces.append(f"index axis {axis}, upper")
    return "; ".join(faces)


def _ilia_ratio(one: np.ndarray, other: np.ndarray) -> float:
    """The larger of two ilium masks' volumes over the smaller one's (``inf`` if only one holds
    any voxel, 1 if neither does)."""
    small, large = sorted((int(np.count_nonzero(one)), int(np.count_nonzero(other))))
    if large == 0:
        return 1.0
    return large / small if small else float("inf")


def _with_located_neighbours(fine: np.ndarray, located: np.ndarray, spacing: np.ndarray) -> np.ndarray:
    """The crop's labels ``fine``, with the located pass's neighbouring bones (NEIGHBOURS, ``located``
    on the crop's grid) where ``fine`` holds nothing, farther than LOCATED_BONE_CLEAR_MM from its
    sacral bone.

    The crop cuts the ilia open, and its bone split can leave parts of them unlabelled that the
    located pass, on the whole CT, has: on real case 003, 15 mm of the posterior end of the left
    ilium, which a needle called safe then crossed on its way to the sacrum. Near the sacrum the
    crop's finer labels (its joints, its marrow) stand as they are.
    """
    keep = (fine == 0) & lt.mask(located, *NEIGHBOURS)
    if not keep.any():
        return fine
    keep &= distance_mm(~lt.sacral_bone(fine), spacing) > LOCATED_BONE_CLEAR_MM
    out = fine.copy()
    out[keep] = located[keep]
    return out


def _agreement(crop: np.ndarray, located: np.ndarray, spacing: np.ndarray) -> float:
    """The lesser of the shares of ``crop`` within CROP_NEAR_MM of ``located`` and of ``located``
    within CROP_NEAR_MM of ``crop`` (0 when either is empty).

    Not a Dice score: the crop's finer grid resolves more of the alae and their dark marrow than the
    2 mm located sacrum, near it (real sacra at 0.9 mm: Dice under 0.88, so that they were segmented
    a third time on the whole CT, to the same figures; 91-100 % within 5 mm both ways); a crop whose
    split took in an ilium or lost most of the sacrum differs by whole bones (63 % on validation
    phantom 115, whose crop takes in both ilia).
    """
    if not crop.any() or not located.any():
        return 0.0
    box = bounding_box(crop | located, np.ceil(CROP_NEAR_MM / spacing).astype(int) + 1)
    crop, located = crop[box], located[box]
    near_located = distance_mm(~located, spacing) <= CROP_NEAR_MM
    near_crop = distance_mm(~crop, spacing) <= CROP_NEAR_MM
    return min(float((crop & near_located).sum() / crop.sum()), float((located & near_crop).sum() / located.sum()))


def _with_rims(seg: Segmentation, ct: Volume) -> Segmentation:
    """``seg`` with the partial-volume rims of the canal, the foramina and the sacral bone's outer
    surface (not of a sacrum from a given mask) settled on the CT's own grid
    (:func:`segmentation.rims.partial_volume_rims`), noted in the report when any voxel changed."""
    labels = partial_volume_rims(seg.labels.array, ct.array, ct.spacing, seg.report["trabecular_hu"],
                                 surface=seg.report["source"] == "ct")
    changed = labels != seg.labels.array
    if not changed.any():
        return seg
    lumens = np.isin(labels[changed], [lt.value(name) for name in lt.LUMENS])
    ml = ct.voxel_volume_ml
    return _moved(seg, ct.with_array(labels),
                  f"partial-volume rims settled at half way to the cortex: {lumens.sum() * ml:.1f} ml of bone "
                  f"beside the canal and foramina given to them, {(~lumens).sum() * ml:.1f} ml on the sacral "
                  "bone's outer surface to the soft tissue", last=True)


def _with_small_alae_flagged(seg: Segmentation) -> Segmentation:
    """``seg`` flagged partial for each ala of less than MIN_ALA_ML, the reason also its ``quality``.

    Adult alae hold about 25-50 ml (the phantoms' 25-50 ml; the real sacra of the validation 27-42 ml
    where their Dice reaches 0.89). Much less means most of the ala went to the ilium or the SI joint,
    or was left unlabelled (fatty marrow as dark as soft tissue): real case 003 at 2 mm (8 ml, Dice
    0.72) and with darkened bone (10 and 8 ml, Dice 0.75), the real 3 mm whole CT (14 and 11 ml of a
    sacrum found at 89 of about 210 ml), the Visible Human pelvis (11 and 12 ml). Both techniques end
    in the ala, so a side whose ala is that small is planned on a fraction of it.
    """
    structures = dict(seg.report["structures"])
    why = []
    for side in lt.SIDES:
        volume = structures[f"ala_{side}"]["volume_ml"]
        if volume < MIN_ALA_ML:
            reason = (f"the {side} ala found holds only {volume:.0f} ml (adult alae hold about 25-50 ml): much of it "
                      "is probably labelled ilium or SI joint, or left unlabelled (marrow as dark as soft tissue); "
                      "check it on the images before planning on that side")
            structures[f"ala_{side}"] = {**structures[f"ala_{side}"], "quality": reason}
            why.append(reason)
    if not why:
        return seg
    before = seg.report["partial_reason"]
    report = {**seg.report, "structures": structures, "partial": True,
              "partial_reason": "; ".join([before, *why] if before else why)}
    return Segmentation(labels=seg.labels, report=report)


def _moved(seg: Segmentation, labels: Volume, note: str, *, last: bool = False) -> Segmentation:
    """``seg``'s report for ``labels`` (its result put on another grid, or changed): ``note`` first
    (or ``last``), sizes recounted."""
    report = dict(seg.report)
    report["notes"] = [*report["notes"], note] if last else [note, *report["notes"]]
    report["structures"] = {name: {**entry, "quality": report["structures"][name]["quality"]}
                            for name, entry in structure_table(labels).items()}
    return Segmentation(labels=labels, report=report)


def _segment_on_work_grid(ct: Volume, *, sacrum_mask: Volume | None,
                          external_labels: dict[str, np.ndarray] | None) -> Segmentation:
    """Segment a fine CT on a WORK_SPACING_MM grid, and bring the labels back to the CT's grid."""
    work = block_averaged(ct, np.maximum(ct.spacing, WORK_SPACING_MM))
    external = {name: ct.with_array(mask.astype(np.uint8)).resample_onto(work, interpolator="nearest").array > 0
                for name, mask in (external_labels or {}).items()}
    coarse = _segment_resolved(work, sacrum_mask=sacrum_mask, external_labels=external or None)
    return _moved(coarse, coarse.labels.resample_onto(ct, interpolator="nearest"),
                  f"segmented on a {' x '.join(f'{v:g}' for v in work.spacing)} mm grid (finer CTs are "
                  "resampled for segmentation; the labels are on the CT's own grid)")


def _segment_grid(ct: Volume, *, sacrum_mask: Volume | None = None,
                  external_labels: dict[str, np.ndarray] | None = None, bones_only: bool = False,
                  midline_x_mm: float | None = None, last_resort: bool = False,
                  dark_marrow: bool | None = None) -> Segmentation:
    """Label the sacrum and its critical parts in a CT (HU), all at the CT's own resolution (see :func:`segment`).

    With ``bones_only`` only the separated bones are labelled (``sacrum`` and NEIGHBOURS), and the
    report holds the notes, ``midline_x_mm`` and ``dark_marrow``: what the coarse locating pass
    needs. The body's left-right midline (LPS x, mm) is measured on this CT unless ``midline_x_mm``
    gives it, and whether dark marrow is taken as bone (:func:`_dark_marrow`) is tested on it
    unless ``dark_marrow`` says (a crop of a larger CT keeps what the whole body showed). When this
    is the ``last_resort`` and the shell-fill bone split finds no sacrum, the random-walk split
    (:mod:`segmentation.walker`) is tried.
    """
    canon, reorder = ct.to_canonical()
    external = _external_on_canonical(ct, reorder, sacrum_mask, external_labels)
    notes: list[str] = []
    region, partial = _body_region(canon, midline_x_mm, notes)
    solid, cortex_hu, marrow = _solid_bone(region, dark_marrow, notes)
    ext = {k: v[region.box] for k, v in external.items()}
    bones, solid = _split(region, solid, ext, last_resort, marrow is not None)
    notes.extend(bones.notes)
    if marrow is not None and "sacrum" not in ext:
        bones = _borders_on_joints(bones, region, notes)
    cortex_solid = solid                 # the bone the cortex encloses: the split may fill in more
    if bones.lumens_filled:              # the bones were split from enclosed volumes: their dim bone is solid too
        solid = solid | bones.sacrum | bones.L5 | bones.ilium_left | bones.ilium_right
    partial.extend(_checked_bones(bones, solid, region, external_sacrum="sacrum" in ext, notes=notes))
    implausible = _implausible_sacrum(bones.sacrum, region.spacing, region.midline_i)
    if bones_only:
        out = np.zeros(canon.shape, dtype=np.uint8)
        inside = out[region.box]
        for name in ("sacrum", *NEIGHBOURS):
            inside[getattr(bones, name)] = lt.value(name)
        return Segmentation(labels=ct.with_array(reorder.undo(canon.with_array(out)).array),
                            report={"notes": notes, "midline_x_mm": region.midline_x_mm,
                                    "dark_marrow": marrow is not None})

    # Steps 4-10: fine work in the sacral region only.
    roi = bounding_box(bones.sacrum, np.ceil(SACRAL_PAD_MM / region.spacing).astype(int))
    sacral = label_sacral_region(region.sub(roi), _cropped(bones, roi), solid[roi], cortex_solid[roi], cortex_hu,
                                 external_sacrum="sacrum" in ext, dark_marrow=marrow is not None)
    notes.extend(sacral.notes)
    partial.extend(sacral.partial)
    labels = ct.with_array(reorder.undo(canon.with_array(_whole_label_map(canon, region, roi, sacral.labels,
                                                                          bones))).array)
    report = segmentation_report(labels, notes=notes, partial=partial, implausible=implausible,
                                 trabecular_hu=sacral.trabecular_hu, foramina_found=sacral.foramina_found,
                                 source="external sacrum mask" if "sacrum" in ext else "ct",
                                 fatty_marrow=marrow is not None)
    return Segmentation(labels=labels, report=report)


def _external_on_canonical(ct: Volume, reorder, sacrum_mask: Volume | None,
                           external_labels: dict[str, np.ndarray] | None) -> dict[str, np.ndarray]:
    """The external masks (a sacrum mask on any grid, masks on the CT's grid) on the canonical grid."""
    from segmentation.external import mask_on_grid

    external = dict(external_labels or {})
    if sacrum_mask is not None:
        external["sacrum"] = mask_on_grid(sacrum_mask, ct, "sacrum")
    return {k: reorder.apply(ct.with_array(v.astype(np.uint8))).array.astype(bool) for k, v in external.items()}


def _body_region(canon: Volume, midline_x_mm: float | None, notes: list[str]) -> tuple[Region, list[str]]:
    """Step 1: the body (the largest region above -400 HU) and its box, the CT smoothed in it by as
    much as its noise calls for (:mod:`segmentation.noise`), and the body's midline (measured unless
    ``midline_x_mm`` gives it); flags for metal."""
    body = body_mask(canon.array)
    if body.sum() * canon.voxel_volume_ml < 500:
        raise NoSacrumError("no sacrum in the field of view: no body (less than 0.5 l above -400 HU)")
    box = bounding_box(body, np.full(3, 2))
    hu = canon.array[box].astype(np.float32)
    partial = []
    metal = hu > METAL_HU
    if metal.sum() * canon.voxel_volume_ml > 0.5:
        partial.append(f"metal (> {METAL_HU:g} HU, {metal.sum() * canon.voxel_volume_ml:.1f} ml): "
                       "structures near it may be wrong")
    midline = (midline_of_body(canon, body, box) if midline_x_mm is None
               else (float(midline_x_mm), 0.0, 0.0))
    noise = noise_sd_hu(hu)
    sigma = smoothing_mm(noise, canon.spacing)
    notes.append(("noise not measured (too little soft tissue)" if noise is None
                  else f"noise sd {noise:.0f} HU in the soft tissue") + f": CT smoothed by a {sigma:.2f} mm Gaussian")
    return Region(canon, box, hu, smooth_hu(hu, canon.spacing, sigma), sigma, midline), partial


def _solid_bone(region: Region, dark_marrow: bool | None,
                notes: list[str]) -> tuple[np.ndarray, float, np.ndarray | None]:
    """Steps 2-2b: the bone the cortex encloses (with the dim bone of a leaked shell, :func:`_sealed`),
    its cortex threshold, and the dark marrow taken as bone with it (None when none is)."""
    solid, cortex_hu = solid_bone(region.smooth, region.spacing)
    notes.append(f"bone enclosed by cortex > {cortex_hu:g} HU")
    dim = dark_marrow is None and _dim_throughout(region.smooth, solid, region.spacing)
    marrow = None if dim else _dark_marrow(region.smooth, solid, region.spacing, decided=dark_marrow)
    if marrow is not None:
        solid |= marrow
        notes.append(f"{marrow.sum() * region.canon.voxel_volume_ml:.0f} ml of dark marrow that the cortex encloses "
                     "in its sections, not in 3-D, taken as bone")
    elif dim and cortex_hu >= SEALED_CORTEX_HU:
        sealed = _sealed(region.smooth, solid, cortex_hu, region.spacing)
        if sealed is not None:
            solid |= sealed
            notes.append(f"{sealed.sum() * region.canon.voxel_volume_ml:.0f} ml of dim bone that the cortex encloses "
                         "in its sections, not in 3-D (a gap in a thin cortex), taken as bone")
    return solid, cortex_hu, marrow


def _split(region: Region, solid: np.ndarray, ext: dict[str, np.ndarray], last_resort: bool,
           dark_marrow: bool) -> tuple[Bones, np.ndarray]:
    """Step 3 (3a, 3b, 3d): the sacrum, ilia, L5 and coccyx (from the external masks when given), and
    the solid bone they were grown into (``solid``, or more of it for fatty marrow: 3d)."""
    if "sacrum" in ext:
        return _bones_from_masks(ext, region.smooth, solid, region.spacing, region.midline_i), solid
    try:
        return split_bones(region.smooth, solid, region.spacing, region.midline_mm, dim_cortex=last_resort,
                           smooth_mm=region.smooth_mm), solid
    except NoSacrumError as shells:
        if not last_resort:
            raise
        try:
            return split_bones_by_walker(region.hu, region.spacing, region.midline_i), solid
        except NoSacrumError as walk:
            log.info("the random-walk bone split found no sacrum either: %s", walk)
        if not dark_marrow:
            raise shells from None
        wider = solid | enclosed_in_two_orientations(closing(region.smooth > ENCLOSURE_HU, ENCLOSURE_CLOSE_MM,
                                                             region.spacing))
        try:
            return split_bones_by_marrow(region.smooth, wider, region.spacing, region.midline_mm), wider
        except NoSacrumError as compartments:
            log.info("the marrow compartments named no sacrum either: %s", compartments)
            raise shells from None


def _borders_on_joints(bones: Bones, region: Region, notes: list[str]) -> Bones:
    """Step 3c: the sacrum-ilium borders moved onto the joints' dark sheets
    (:func:`segmentation.joint_border.border_on_joint`), where dark marrow was taken as bone.

    Fatty ala marrow is darker than the joint, so the split's watershed through bright bone first
    can leave the border inside the ala (real case 001 at 2 mm: 17 ml of its left ala labelled
    ilium, 8 ml more as joint). Bone without such marrow (the phantoms) has its border on the
    joint already, and there the sheet of the ilium's own cortex-to-marrow edge can compete with a
    wide joint gap, so the step is kept to the CTs with dark marrow.

    The borders are sought twice (JOINT_PASSES), the second time from the first one's border, where
    the split can leave them deeper in the ala than one band reaches: the random walk's 3 mm grid
    gives the ala's shell to the ilium (real sacra with darkened bone: 001 0.859 -> 0.885, 003 0.737
    -> 0.751); the shell split's erosion of a voxel or more does so on a grid coarser than 1 mm
    (real sacra at 3 mm: 001 0.800 -> 0.833, 003 0.740 -> 0.741; at 2 mm: 001 0.905 -> 0.936, 003
    0.752 -> 0.804), and its seeds in fatty alae on a 1 mm grid (the Visible Human pelvis: left ala
    11 -> 23 ml, right 12 -> 17 ml, 18 ml of the left ilium given back, and a plan is made where none
    was; real sacra at their own spacing unchanged, 0.971 and 0.889). No needle called safe leaves
    the reference bone there. At 2 mm the second pass had been left out while it made a false
    fracture line of the left sacral cornu of 001 (5 of its 13 needles called safe left the bone);
    fracture lines are now kept only where they reach the upper ala
    (:func:`segmentation.parts.fracture_lines`). A move that takes a border off a clear joint gap is
    not made (:func:`segmentation.joint_border.leaves_a_clear_gap`: a gap narrower than the sheet's
    scale, varied phantom 114 at 2 mm).
    """
    sacrum, ilia = bones.sacrum, {}
    for side in ("ilium_left", "ilium_right"):
        ilia[side] = getattr(bones, side)
        for _ in range(JOINT_PASSES):
            moved = border_on_joint(sacrum, ilia[side], region.smooth, region.spacing)
            if leaves_a_clear_gap((sacrum, ilia[side]), moved, region.smooth, region.spacing):
                notes.append(f"the sacrum's border with the {side.split('_')[1]} ilium stayed on the clear joint gap "
                             "where it lay: the darkest sheet beside it is fainter")
                break
            sacrum, ilia[side] = moved
    gained = (int(sacrum.sum()) - int(bones.sacrum.sum())) * region.canon.voxel_volume_ml
    if abs(gained) >= 0.5:
        notes.append(f"the sacrum-ilium borders moved onto the joints' dark sheets: the sacrum "
                     f"{'gained' if gained > 0 else 'gave the ilia'} {abs(gained):.0f} ml")
    return replace(bones, sacrum=sacrum, **ilia)


def _checked_bones(bones: Bones, solid: np.ndarray, region: Region, *, external_sacrum: bool,
                   notes: list[str]) -> list[str]:
    """Why the split bones are not to be trusted as they are (the partial flags), after refusing a
    sacrum of less than MIN_SACRUM_ML; a note when no L5 is in the field of view."""
    ml = region.canon.voxel_volume_ml
    if bones.sacrum.sum() * ml < MIN_SACRUM_ML:
        raise NoSacrumError(f"no sacrum in the field of view: the sacral candidate holds only "
                            f"{bones.sacrum.sum() * ml:.0f} ml of bone")
    partial = [bones.caveat] if bones.caveat else []
    ilia_ratio = _ilia_ratio(bones.ilium_left, bones.ilium_right)
    if ILIUM_ASYMMETRY < ilia_ratio < float("inf"):
        partial.append(f"the two ilia differ {ilia_ratio:.1f}-fold in volume: the sacrum and an ilium "
                       "are probably not separated correctly")
    sac_idx = np.argwhere(bones.sacrum)
    for axis, name in ((2, "cranio-caudal"), (0, "left-right"), (1, "antero-posterior")):
        if sac_idx[:, axis].min() == 0 or sac_idx[:, axis].max() == bones.sacrum.shape[axis] - 1:
            partial.append(f"the sacrum is cut by the field of view ({name})")
    if not bones.L5.any() and sac_idx[:, 2].max() < bones.sacrum.shape[2] - 1 and not external_sacrum:
        if bone_above(solid, int(sac_idx[:, 2].max()), region.spacing, region.midline_i, CENTRAL_MM,
                      ABOVE_SACRUM_MM) >= L5_MIN_ML:
            partial.append("no L5 was separated above the sacrum: if L5 is in the field of view, it may be "
                           "labelled as sacrum")
        else:
            notes.append("no bone above the sacrum near the midline: L5 is not in the field of view")
    return partial


def _cropped(bones: Bones, roi: tuple[slice, ...]) -> Bones:
    """``bones`` cropped to ``roi``."""
    return replace(bones, **{name: getattr(bones, name)[roi] for name in ("sacrum", *NEIGHBOURS)})


def _whole_label_map(canon: Volume, region: Region, roi: tuple[slice, ...], sacral: np.ndarray,
                     bones: Bones) -> np.ndarray:
    """The canonical CT's label array: the sacral region's labels, and the neighbouring bones beyond it."""
    full = np.zeros(canon.shape, dtype=np.uint8)
    crop_full = region.sub(roi).box
    full[crop_full] = sacral
    outside = np.ones(canon.shape, dtype=bool)
    outside[crop_full] = False
    for name in NEIGHBOURS:
        whole = np.zeros(canon.shape, dtype=bool)
        whole[region.box] = getattr(bones, name)
        full[whole & outside] = lt.value(name)
    return full


def structure_table(labels: Volume) -> dict[str, dict]:
    """Per label name: value, voxels, volume (ml), LPS bounding box and "ok" / "not found"."""
    structures = {}
    # One pass finds every label's box; each is counted inside its own box (a bincount over the
    # whole grid casts it to 64 bits first: seconds on a 512 x 512 x 300 CT).
    boxes = ndimage.find_objects(labels.array)
    for label in lt.LABELS:
        box = boxes[label.value - 1] if label.value <= len(boxes) else None
        n = 0 if box is None else int(np.count_nonzero(labels.array[box] == label.value))
        entry: dict = {"value": label.value, "voxels": n, "volume_ml": round(n * labels.voxel_volume_ml, 3)}
        if n:
            corners = labels.index_to_world(np.array([[b.start for b in box], [b.stop - 1 for b in box]]))
            entry["bbox_lps_mm"] = [np.round(corners.min(axis=0), 1).tolist(),
                                    np.round(corners.max(axis=0), 1).tolist()]
        entry["quality"] = "ok" if n else "not found"
        structures[label.name] = entry
    return structures


def segmentation_report(labels: Volume, *, notes: list[str], partial: list[str], trabecular_hu: float,
                        foramina_found: dict[str, int], source: str, fatty_marrow: bool = False,
                        implausible: list[str] | None = None) -> dict:
    """``segmentation.json``: per label voxels, ml, LPS bounding box and a quality flag.

    ``implausible``: why the sacrum found cannot be a whole sacrum (:func:`_implausible_sacrum`).
    Those reasons flag the result partial too, and set ``implausible``: labels not to plan on.

    With ``fatty_marrow`` (step 2a took dark marrow as bone) a lesion found is ``uncertain``: fatty
    marrow is as dark as a lytic lesion on CT (the two real sacra of ``../shared/ct/real_bone``, which
    have none, had 8-32 ml of it labelled lesion at every spacing).
    """
    structures = structure_table(labels)
    for side, count in foramina_found.items():
        for level in range(count + 1, 5):
            structures[f"foramen_S{level}_{side}"]["quality"] = (
                f"not found: only {count} foramina detected on the {side}")
    for name in ("fracture", "lesion", "coccyx", "presacral_vessels"):
        if not structures[name]["voxels"]:
            structures[name]["quality"] = "none seen"
    if trabecular_hu < LESION_MIN_TRABECULAR_HU:
        structures["lesion"]["quality"] = f"not sought: the trabecular bone is below {LESION_MIN_TRABECULAR_HU:.0f} HU"
    elif fatty_marrow and structures["lesion"]["voxels"]:
        structures["lesion"]["quality"] = LESION_IN_FATTY_MARROW
    if not structures["canal"]["voxels"]:
        partial.append("no sacral canal found")
    implausible = implausible or []
    partial = [*partial, *implausible]
    return {
        "source": source,
        "partial": bool(partial),
        "partial_reason": "; ".join(partial) if partial else None,
        "implausible": bool(implausible),
        "implausible_reason": "; ".join(implausible) if implausible else None,
        "notes": notes,
        "trabecular_hu": round(trabecular_hu, 1),
        "structures": structures,
    }


def write_segmentation(seg: Segmentation, out_dir: str | Path) -> dict[str, Path]:
    """Write ``labels.nii.gz``, ``labels.seg.nrrd`` (the same label map for 3D Slicer), ``labels.json``,
    ``sacrum.nii.gz`` and ``segmentation.json`` atomically."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    labels = seg.labels.with_array(seg.labels.array.astype(np.uint8))
    written = {
        "labels": write_volume_file(labels, out / "labels.nii.gz"),
        "slicer_segmentation": write_slicer_segmentation(labels, out / "labels.seg.nrrd"),
        "sacrum": write_volume_file(labels.with_array(lt.sacral_bone(labels).astype(np.uint8)),
                                    out / "sacrum.nii.gz"),
    }
    write_json(out / "labels.json", lt.table_json())
    write_json(out / "segmentation.json", seg.report)
    written["labels_json"] = out / "labels.json"
    written["report"] = out / "segmentation.json"
    return written
