"""Read a CT from whatever the user points at, and check that it is a usable CT in HU."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from trajplan.errors import InputError
from trajplan.io.dicom import read_dicom_series
from trajplan.io.files import VOLUME_SUFFIXES, is_volume_file, read_volume_file
from trajplan.io.hounsfield import check_hounsfield
from trajplan.volume import Volume

MIN_EXTENT_MM = (50.0, 50.0, 20.0)   # left-right, antero-posterior, cranio-caudal


def read_ct(path: str | Path, *, series_uid: str | None = None) -> Volume:
    """Read a CT (DICOM series folder, or NIfTI / NRRD / MetaImage file) as HU float32.

    Parameters
    ----------
    path : path
        A folder holding a DICOM series (searched recursively), a single DICOM
        file (its folder's series is read), or a volume file.
    series_uid : str, optional
        The SeriesInstanceUID to read when the folder holds several series.

    Raises
    ------
    InputError
        With one line naming the problem (missing file, unsupported type, DICOM
        problems, NaN voxels, 2-D or tiny volume, values that are not CT HU).

    Examples
    --------
    >>> ct = trajplan.read_ct("case/ct.nii.gz")                          # doctest: +SKIP
    >>> ct.shape, ct.spacing                                             # doctest: +SKIP
    ((340, 270, 210), array([1., 1., 1.]))
    """
    path = Path(path)
    if not path.exists():
        raise InputError(f"{path}: no such file or folder")
    if path.is_dir():
        volume = read_dicom_series(path, series_uid=series_uid)
    elif path.suffix.lower() == ".dcm":
        volume = read_dicom_series(path.parent, series_uid=series_uid)
    elif is_volume_file(path):
        volume = read_volume_file(path)
    else:
        raise InputError(f"{path}: unsupported input (give a DICOM series folder or a "
                         f"{', '.join(VOLUME_SUFFIXES)} file)")
    volume = volume.with_array(volume.array.astype(np.float32, copy=False))
    check_ct(volume, str(path))
    return volume


def check_ct(volume: Volume, source: str) -> None:
    """Refuse volumes that cannot be a CT of a pelvis in HU.

    Raises
    ------
    InputError
        For NaN/inf voxels, a 2-D image, a volume too small to hold a sacrum,
        a constant volume, or intensities that are not Hounsfield units (see
        :func:`trajplan.io.hounsfield.check_hounsfield`; a DICOM series' Modality is
        checked when it is read).
    """
    array = volume.array
    if min(volume.shape) < 2:
        raise InputError(f"{source}: a 2-D image of {volume.shape} voxels; a CT volume is needed")
    canonical = np.abs(volume.direction).argmax(axis=0)  # world axis of each index axis
    extent = np.zeros(3)
    extent[canonical] = (np.asarray(volume.shape) - 1) * volume.spacing
    if np.any(extent < MIN_EXTENT_MM):
        raise InputError(
            f"{source}: volume too small to hold a sacrum ({extent[0]:.0f} x {extent[1]:.0f} x "
            f"{extent[2]:.0f} mm left-right x antero-posterior x cranio-caudal; at least "
            f"{MIN_EXTENT_MM[0]:.0f} x {MIN_EXTENT_MM[1]:.0f} x {MIN_EXTENT_MM[2]:.0f} mm needed)"
        )
    sample = array[::2, ::2, ::2] if array.size > 8_000_000 else array
    finite = np.isfinite(sample)
    if not finite.all() or not np.isfinite(array).all():
        raise InputError(f"{source}: the volume holds NaN or infinite voxel values")
    low, high = float(sample.min()), float(sample.max())
    if low == high:
        raise InputError(f"{source}: constant volume (every voxel is {low:g}); no image to segment")
    check_hounsfield(sample, source)
