"""Single-file volumes: NIfTI (.nii, .nii.gz), NRRD (.nrrd, .nhdr), MetaImage (.mha, .mhd)."""

from __future__ import annotations

import contextlib
import errno
import gzip
import os
import struct
import sys
import tempfile
import zlib
from collections.abc import Iterator
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
    if str(path).lower().endswith((".nii", ".nii.gz")):
        _check_nifti_data(path)
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


def _check_nifti_data(path: Path) -> None:
    """Refuse a NIfTI-1 file whose voxel data is truncated or holds NaN / infinite values.

    SimpleITK reads both silently (a cut gzip stream as zeros, NaN as 0), so the
    file is streamed once here: its length is compared with the header's promise
    and floating-point voxels are checked for finiteness.
    """
    opener = gzip.open if path.suffix.lower() == ".gz" else open
    try:
        with opener(path, "rb") as handle:
            header = handle.read(348)
            if len(header) < 348:
                raise InputError(f"{path}: cannot read the file (truncated NIfTI header)")
            endian = "<" if struct.unpack("<i", header[:4])[0] == 348 else ">"
            if struct.unpack(endian + "i", header[:4])[0] != 348:
                return  # not NIfTI-1 (e.g. NIfTI-2): left to the reader
            dims = struct.unpack(endian + "8h", header[40:56])
            datatype, bitpix = struct.unpack(endian + "2h", header[70:74])
            offset = int(struct.unpack(endian + "f", header[108:112])[0])
            if not 1 <= dims[0] <= 7 or bitpix <= 0:
                raise InputError(f"{path}: cannot read the file (invalid NIfTI header)")
            expected = int(np.prod([max(d, 1) for d in dims[1 : dims[0] + 1]], dtype=np.int64)) * bitpix // 8
            float_type = {16: endian + "f4", 64: endian + "f8"}.get(datatype)
            handle.read(max(offset - 348, 0))
            length, carry, finite = 0, b"", True
            while chunk := handle.read(1 << 24):
                length += len(chunk)
                if float_type and finite:
                    data = carry + chunk
                    usable = len(data) - len(data) % (bitpix // 8)
                    finite = bool(np.isfinite(np.frombuffer(data[:usable], dtype=float_type)).all())
                    carry = data[usable:]
    except (OSError, EOFError, zlib.error) as exc:
        raise InputError(f"{path}: cannot read the file (corrupt or truncated: {exc})") from None
    if length < expected:
        raise InputError(f"{path}: cannot read the file (truncated: {length} of {expected} bytes of voxel data)")
    if not finite:
        raise InputError(f"{path}: the volume holds NaN or infinite voxel values")


def write_volume_file(volume: Volume, path: str | Path, *, compress: bool = True) -> Path:
    """Atomically write ``volume`` to a NIfTI, NRRD or MetaImage file (format by suffix)."""
    path = Path(path)
    if not str(path).lower().endswith(WRITE_SUFFIXES):
        raise InputError(f"{path}: cannot write this file type (use one of {', '.join(WRITE_SUFFIXES)})")
    array = volume.array
    if array.dtype == np.float64:
        volume = volume.with_array(array.astype(np.float32))
    with atomic_path(path) as tmp:
        if str(path).lower().endswith((".nii", ".nii.gz")):
            with _native_stderr_unless_failed() as failed:
                sitk.WriteImage(volume.to_sitk(), str(tmp), useCompression=compress)
                failed[0] = _written_nifti_problem(tmp)
            if failed[0]:
                raise OSError(errno.EIO, f"written incomplete: {failed[0]}", str(tmp))
        else:
            sitk.WriteImage(volume.to_sitk(), str(tmp), useCompression=compress)
    return path


def write_hu_file(ct: Volume, path: str | Path) -> Path:
    """Atomically write a CT in HU (:func:`write_volume_file`), as 16-bit integers where that loses
    nothing (every voxel a whole number of HU within the int16 range, as CT scanners store them):
    a tenth smaller than float32 once compressed and four times faster to write (the 1 mm
    phantom's ``ct_roi.nii.gz``: 5.1 s as float32, 1.4 s as int16)."""
    array = ct.array
    if array.dtype.kind == "f" and array.size:
        info = np.iinfo(np.int16)
        lossless = (float(array.min()) >= info.min and float(array.max()) <= info.max
                    and bool(np.array_equal(array, np.round(array))))
        if lossless:
            ct = ct.with_array(array.astype(np.int16))
    return write_volume_file(ct, path)


def read_hu_file(path: str | Path) -> Volume:
    """A CT in HU written by :func:`write_hu_file`, as float32 (:func:`read_volume_file`'s checks)."""
    volume = read_volume_file(path)
    return volume.with_array(volume.array.astype(np.float32, copy=False))


@contextlib.contextmanager
def _native_stderr_unless_failed() -> Iterator[list[str]]:
    """Hold back what native code prints on stderr; pass it on unless the block sets ``failed[0]``.

    SimpleITK's NIfTI writer prints ``** ERROR: NWAD ...`` (and raises nothing) when the
    disk fills up; that failure is reported in one line by the caller instead.
    """
    failed = [""]
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as held:
        os.dup2(held.fileno(), 2)
        try:
            yield failed
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            held.seek(0)
            text = held.read()
            if text and not failed[0]:
                os.write(2, text)


def _written_nifti_problem(path: Path) -> str:
    """Why a NIfTI file just written is incomplete (it is read back once), or ``""``."""
    try:
        _check_nifti_data(path)
    except InputError as exc:
        return str(exc)
    return ""

