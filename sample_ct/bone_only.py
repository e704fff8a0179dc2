"""Whole CTs made from bone-only CTs, and their degraded versions, for validation on real bone.

Some public real CTs keep the values inside bone masks only (every other voxel 0): the
real sacra of ``../shared/ct/real_bone/`` are such. :func:`with_soft_tissue` fills the rest
as a scan has it (soft tissue in a body ellipse, air outside), and :func:`degraded` makes the
harder scans the planner must also read: coarser voxels (block averaged, as a scanner's
partial volume), trabecular bone darkened to severe osteoporosis or turned to fatty marrow, noise, and
the patient lying tilted in the scanner (:func:`turned`). Nothing here
reads a file: the caller gives the arrays; no data ships with the package.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
from scipy import ndimage
from scipy.spatial.transform import Rotation

from segmentation.pipeline import block_averaged
from trajplan.io.files import read_volume_file
from trajplan.volume import Volume

SOFT_TISSUE_HU = 35.0
SOFT_TISSUE_SD_HU = 12.0
AIR_HU = -1000.0
BODY_MARGIN_MM = 40.0       # the body ellipse reaches this far beyond the bones (left-right, front-back)
CORTEX_DEPTH_MM = 2.0       # bone within this of the bone's surface is cortex, deeper is trabecular
FATTY_TEXTURE = 0.3         # fatty marrow keeps this share of the trabecular texture's swing


def with_soft_tissue(ct: Volume, bone: np.ndarray, *, seed: int = 0) -> Volume:
    """A bone-only CT with soft tissue (SOFT_TISSUE_HU, sd SOFT_TISSUE_SD_HU) around the bones.

    The body is an elliptic cylinder along the scan's cranio-caudal axis, BODY_MARGIN_MM
    beyond the bones' extent left-right and front-back; air (AIR_HU) is outside it.

    Parameters
    ----------
    ct : Volume
        The bone-only CT (HU inside the bones, anything outside).
    bone : np.ndarray
        Boolean mask on ``ct``'s grid of the voxels whose values are real.
    seed : int
        Seed of the soft tissue's noise.
    """
    if bone.shape != ct.shape or not bone.any():
        raise ValueError("the bone mask must be non-empty and on the CT's grid")
    canon, reorder = ct.to_canonical()
    canon_bone = reorder.apply(ct.with_array(bone.astype(np.uint8))).array > 0
    hit = np.argwhere(canon_bone)
    centre = (hit.min(axis=0) + hit.max(axis=0)) / 2.0
    half_mm = (hit.max(axis=0) - hit.min(axis=0)) / 2.0 * canon.spacing + BODY_MARGIN_MM
    x, y = np.ogrid[:canon.shape[0], :canon.shape[1]]
    inside = (((x - centre[0]) * canon.spacing[0] / half_mm[0]) ** 2
              + ((y - centre[1]) * canon.spacing[1] / half_mm[1]) ** 2) <= 1.0
    rng = np.random.default_rng(seed)
    filled = np.where(inside[:, :, None],
                      rng.normal(SOFT_TISSUE_HU, SOFT_TISSUE_SD_HU, canon.shape).astype(np.float32),
                      np.float32(AIR_HU))
    filled[canon_bone] = canon.array[canon_bone]
    return ct.with_array(reorder.undo(canon.with_array(filled)).array)


def trabecular_bone(ct: Volume, bone: np.ndarray) -> np.ndarray:
    """The voxels of ``bone`` deeper than CORTEX_DEPTH_MM (mm, on ``ct``'s spacing): its trabecular bone."""
    return ndimage.distance_transform_edt(bone, sampling=ct.spacing) > CORTEX_DEPTH_MM


def darkened_trabecular(ct: Volume, bone: np.ndarray, trabecular_hu: float) -> Volume:
    """``ct`` with the trabecular bone (deeper than CORTEX_DEPTH_MM in ``bone``) darkened.

    Each trabecular voxel keeps its contrast to soft tissue in proportion, scaled so that
    the median trabecular voxel comes to ``trabecular_hu`` (severe osteoporosis: about
    100 HU or less); the cortex keeps its values.
    """
    trabecular = trabecular_bone(ct, bone)
    median = float(np.median(ct.array[trabecular]))
    scale = max(trabecular_hu - SOFT_TISSUE_HU, 0.0) / max(median - SOFT_TISSUE_HU, 1.0)
    out = ct.array.astype(np.float32, copy=True)
    out[trabecular] = SOFT_TISSUE_HU + (out[trabecular] - SOFT_TISSUE_HU) * scale
    return ct.with_array(out)


def fatty_trabecular(ct: Volume, bone: np.ndarray, marrow_hu: float) -> Volume:
    """``ct`` with the trabecular bone (deeper than CORTEX_DEPTH_MM in ``bone``) turned to fatty marrow.

    The median trabecular voxel comes to ``marrow_hu`` (below soft tissue: the alae and lower sacrum
    of the elderly, as the real whole CTs of ``../shared/ct`` show them, about -50 to +30 HU) and the
    texture keeps FATTY_TEXTURE of its swing about the median; the cortex keeps its values.
    """
    trabecular = trabecular_bone(ct, bone)
    values = ct.array[trabecular]
    out = ct.array.astype(np.float32, copy=True)
    out[trabecular] = marrow_hu + (values - float(np.median(values))) * FATTY_TEXTURE
    return ct.with_array(out)


def turned(volume: Volume, degrees: Sequence[float], centre_lps: np.ndarray, *, order: int,
           fill: float) -> Volume:
    """``volume``'s content turned about ``centre_lps`` on its own grid: the same patient lying tilted.

    Parameters
    ----------
    volume : Volume
        A CT or a label map.
    degrees : sequence of 3 floats
        Rotations about the world x (left-right), y (front-back) and z (head-foot) axes through
        ``centre_lps``, in that order (degrees; positive turns y towards z, z towards x, x towards y).
    centre_lps : np.ndarray
        The point that stays put (LPS mm).
    order : int
        Interpolation order: 1 (linear) for a CT, 0 (nearest) for labels.
    fill : float
        The value where the turned content does not reach.
    """
    rotation = Rotation.from_euler("xyz", degrees, degrees=True).as_matrix()
    to_world = volume.direction * volume.spacing[None, :]          # world = origin + to_world @ index
    to_index = np.linalg.inv(to_world)
    centre = np.asarray(centre_lps, dtype=float)
    # A voxel shows what lay at the world point turned back: index -> world -> rotated back -> index.
    matrix = to_index @ rotation.T @ to_world
    offset = to_index @ (centre + rotation.T @ (volume.origin - centre) - volume.origin)
    source = volume.array if order == 0 else volume.array.astype(np.float32)
    out = ndimage.affine_transform(source, matrix, offset=offset, order=order, mode="constant", cval=fill)
    return volume.with_array(out)


def scan_spacing(ct: Volume, *, spacing_mm: float | None = None, slice_mm: float | None = None) -> np.ndarray | None:
    """The voxel size (mm per axis) of a scan of ``ct`` again: ``spacing_mm`` on every axis, or
    ``slice_mm`` along the head-to-foot axis (the one whose direction lies nearest the S axis) with the
    other two kept; None for the CT's own grid."""
    if spacing_mm is not None:
        return np.full(3, float(spacing_mm))
    if slice_mm is None:
        return None
    spacing = np.asarray(ct.spacing, dtype=float).copy()
    spacing[int(np.argmax(np.abs(np.asarray(ct.direction)[2])))] = float(slice_mm)
    return spacing


def degraded(ct: Volume, bone: np.ndarray, *, spacing_mm: float | None = None, slice_mm: float | None = None,
             trabecular_hu: float | None = None, fatty_marrow_hu: float | None = None,
             noise_sd_hu: float = 0.0, seed: int = 0) -> Volume:
    """A harder scan of the same patient: darkened or fatty trabecular bone, coarser voxels, then noise.

    Parameters
    ----------
    ct : Volume
        A whole CT (:func:`with_soft_tissue`).
    bone : np.ndarray
        The bone mask on ``ct``'s grid (for the trabecular darkening).
    spacing_mm : float, optional
        Isotropic voxel size of the result (block averaged); the CT's own grid if None.
    slice_mm : float, optional
        Slice thickness of the result (block averaged along the head-to-foot axis, the pixels kept:
        :func:`scan_spacing`); ignored with ``spacing_mm``.
    trabecular_hu : float, optional
        Median trabecular HU after darkening (:func:`darkened_trabecular`); unchanged if None.
    fatty_marrow_hu : float, optional
        Median trabecular HU after its marrow is made fatty (:func:`fatty_trabecular`); unchanged if None.
    noise_sd_hu : float
        Standard deviation of Gaussian noise added last (HU).
    seed : int
        Seed of the noise.
    """
    if trabecular_hu is not None:
        ct = darkened_trabecular(ct, bone, trabecular_hu)
    if fatty_marrow_hu is not None:
        ct = fatty_trabecular(ct, bone, fatty_marrow_hu)
    spacing = scan_spacing(ct, spacing_mm=spacing_mm, slice_mm=slice_mm)
    if spacing is not None:
        ct = block_averaged(ct, spacing)
    if noise_sd_hu > 0:
        rng = np.random.default_rng(seed)
        ct = ct.with_array(ct.array + rng.normal(0.0, noise_sd_hu, ct.shape).astype(np.float32))
    return ct


def reference_on(reference: Volume, spacing_mm: float | np.ndarray) -> Volume:
    """A label map on the grid of :func:`segmentation.pipeline.block_averaged` at ``spacing_mm`` (one
    value for every axis, or one per axis): each label where it covers more than half of the new voxel,
    background elsewhere."""
    spacing = np.broadcast_to(np.asarray(spacing_mm, dtype=float), (3,))
    out = None
    for value in np.unique(reference.array):
        if value == 0:
            continue
        share = block_averaged(reference.with_array((reference.array == value).astype(np.float32)), spacing)
        if out is None:
            out = np.zeros(share.shape, dtype=np.uint8)
        out[share.array > 0.5] = value
    return share.with_array(out)


SCANS = {                                         # how a real case is scanned again, by name
    "own": {},                                    # its own spacing
    "2mm": {"spacing_mm": 2.0, "noise_sd_hu": 15.0},
    "3mm": {"spacing_mm": 3.0, "noise_sd_hu": 15.0},
    "osteo": {"trabecular_hu": 90.0, "noise_sd_hu": 10.0},   # severe osteoporosis at its own spacing
    "fatty": {"fatty_marrow_hu": 0.0, "noise_sd_hu": 10.0},  # fatty marrow (below soft tissue), own spacing
    # noise as a real pelvic CT at 1 mm shows it (the Visible Human pelvis's soft tissue: about 30 HU)
    "noisy": {"noise_sd_hu": 25.0},
    # slices 3 mm thick at its own pixels, as CTs are often archived (reconstructed from thin slices)
    "thick": {"slice_mm": 3.0, "noise_sd_hu": 15.0},
    # the patient lying tilted (pelvic tilt and a turn or a roll), then scanned as "2mm"
    "tilt_a": {"tilt_deg": (10.0, 0.0, 5.0), "spacing_mm": 2.0, "noise_sd_hu": 15.0},
    "tilt_b": {"tilt_deg": (-10.0, 5.0, 0.0), "spacing_mm": 2.0, "noise_sd_hu": 15.0},
}


def real_reference(directory: str | Path, case: str) -> Volume:
    """The reference labels ``NNN_ref.nii.gz`` of a bone-only case in ``directory``, on their own grid
    (label 0 outside the bones): the finest truth for any scan of that case, since every scan keeps
    the source's world coordinates."""
    return read_volume_file(Path(directory) / f"{case}_ref.nii.gz")


def _sacral_centre(reference: Volume) -> np.ndarray:
    """The centre of the reference sacrum (label 1), LPS mm."""
    return reference.index_to_world(np.argwhere(reference.array == 1).mean(axis=0))


def _placed(reference: Volume, scan: str) -> Volume:
    """``reference`` as ``SCANS[scan]`` places the patient: turned about the sacrum's centre for a tilted scan."""
    tilt = SCANS[scan].get("tilt_deg")
    return reference if tilt is None else turned(reference, tilt, _sacral_centre(reference), order=0, fill=0)


def scanned_reference(directory: str | Path, case: str, scan: str = "own") -> Volume:
    """The reference labels of a case on their own grid as ``SCANS[scan]`` places the patient (turned
    about the sacrum's centre for a tilted scan): the finest truth for that scan."""
    return _placed(real_reference(directory, case), scan)


def real_case(directory: str | Path, case: str, scan: str = "own", *, draw: int = 0) -> tuple[Volume, Volume]:
    """(whole CT, reference labels on its grid) of a bone-only case ``NNN_ct.nii.gz`` with its
    ``NNN_ref.nii.gz`` in ``directory`` (label 0 outside the bones), scanned as ``SCANS[scan]``.

    The soft tissue's noise and the scan's are drawn from seeds of the case's name; ``draw`` picks
    another draw of both (0: the validation's).

    A tilted scan turns the whole CT (bones and the soft tissue around them, so the bones' edges
    blur into soft tissue as scanned) and makes the body around the turned bones again, along the
    scanner's axis."""
    directory = Path(directory)
    ct = read_volume_file(directory / f"{case}_ct.nii.gz")
    ref = real_reference(directory, case)
    seed = (int.from_bytes(case.encode(), "little") + draw * 2**20) % 2**32
    ct = with_soft_tissue(ct.with_array(ct.array.astype(np.float32)), ref.array > 0, seed=seed)
    settings = dict(SCANS[scan])
    tilt = settings.pop("tilt_deg", None)
    if tilt is not None:
        ct = turned(ct, tilt, _sacral_centre(ref), order=1, fill=AIR_HU)
        ref = _placed(ref, scan)
        ct = with_soft_tissue(ct, ref.array > 0, seed=seed)
    bone = ref.array > 0
    if settings:
        spacing = scan_spacing(ct, spacing_mm=settings.get("spacing_mm"), slice_mm=settings.get("slice_mm"))
        ct = degraded(ct, bone, seed=seed + 1, **settings)   # noise independent of the soft tissue's
        if spacing is not None:
            ref = reference_on(ref, spacing)
    return ct, ref
