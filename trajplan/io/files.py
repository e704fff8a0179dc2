"""Single-file volumes: NIfTI (.nii, .nii.gz), NRRD (.nrrd, .nhdr), MetaImage (.mha, .mhd)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import SimpleITK as sitk

from trajplan.errors import InputError
from trajplan.io.atomic import atomic_path
from trajplan.volume import Volume

VOLUME_SUFFIXES = (".nii", ".nii.gz", ".nrrd", ".nhdr", ".mha", ".mhd")
WRITE_SUFFIXES = (".nii", ".nii.gz", ".nrrd", ".mha")


def is_volume_file(path: str | Path) -> bool:
    """True when ``path`` has a volume file suffix that :func:`read_volume_file` reads."""
    return str(path).lower().endswith(VOLUME_SUFFIXES)


def read_volume_file(path: str | Path) -> Volume:
    """Read a NIfTI, NRRD or MetaImage file into a :class:`Volume` (geometry in LPS).

    Raises
    ------
    InputError
        If the file is missing, unreadable, not 3-D, or has absurd geometry.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: no such file")
    if not is_volume_file(path):
        raise InputError(
            f"{path}: unsupported file type (expected one of {', '.join(VOLUME_SUFFIXES)} "
            "or a DICOM folder)"
        )
    try:
        image = sitk.ReadImage(str(path))
    except RuntimeError as exc:
        reason = str(exc).strip().splitlines()[-1] if str(exc).strip() else "unknown error"
        raise InputError(f"{path}: cannot read the file ({reason})") from None
    if image.GetDimension() == 4 and image.GetSize()[3] == 1:
        image = image[:, :, :, 0]
    if image.GetDimension() != 3:
        raise InputError(f"{path}: expected a 3-D image, got {image.GetDimension()}-D {image.GetSize()}")
    try:
        return Volume.from_sitk(image)
    except InputError as exc:
        raise InputError(f"{path}: {exc}") from None


def write_volume_file(volume: Volume, path: str | Path, *, compress: bool = True) -> Path:
    """Atomically write ``volume`` to a NIfTI, NRRD or MetaImage file (format by suffix)."""
    path = Path(path)
    if not str(path).lower().endswith(WRITE_SUFFIXES):
        raise InputError(f"{path}: cannot write this file type (use one of {', '.join(WRITE_SUFFIXES)})")
    array = volume.array
    if array.dtype == np.float64:
        volume = volume.with_array(array.astype(np.float32))
    with atomic_path(path) as tmp:
        sitk.WriteImage(volume.to_sitk(), str(tmp), useCompression=compress)
    return path
