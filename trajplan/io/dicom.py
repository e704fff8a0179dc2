"""DICOM CT series: discovery, checks with clear errors, reading to HU, and writing.

Headers are read with pydicom (never pixel data twice, never patient identity into
messages); pixels with SimpleITK's ImageSeriesReader on the file list this module
sorted and checked. Geometry comes from ImagePositionPatient /
ImageOrientationPatient / PixelSpacing, and the slice spacing from the positions.
"""

from __future__ import annotations

import hashlib
import logging
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pydicom
import SimpleITK as sitk
from pydicom.dataset import FileDataset, FileMetaDataset
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, generate_uid
from scipy import ndimage

from trajplan.errors import DicomError
from trajplan.volume import Volume

log = logging.getLogger("trajplan")

MAX_LISTED = 3
POSITION_TOL_MM = 0.01


@dataclass(frozen=True)
class SliceHeader:
    """What this module needs of one DICOM file's header."""

    path: Path
    series_uid: str
    modality: str
    description: str
    orientation: tuple[float, ...]
    position: tuple[float, ...] | None
    pixel_spacing: tuple[float, float] | None
    rows: int
    columns: int
    frames: int
    gantry_tilt: float


@dataclass(frozen=True)
class SeriesInfo:
    """One series found in a folder (no patient identity)."""

    uid: str
    modality: str
    description: str
    slices: tuple[SliceHeader, ...]

    def summary(self) -> str:
        """``uid (modality, "description", N files)``."""
        return f"{self.uid} ({self.modality}, {self.description!r}, {len(self.slices)} files)"


def _float_tuple(value, n: int) -> tuple[float, ...] | None:
    try:
        out = tuple(float(v) for v in value)
    except (TypeError, ValueError):
        return None
    return out if len(out) == n and np.all(np.isfinite(out)) else None


def _read_header(path: Path) -> SliceHeader | None:
    """Header of a DICOM file; None for a file that is not DICOM at all.

    Raises
    ------
    ValueError
        For a file that looks like DICOM but cannot be read or is truncated.
    """
    try:
        ds = pydicom.dcmread(path, defer_size="1 KB")
    except pydicom.errors.InvalidDicomError:
        if path.suffix.lower() == ".dcm":
            raise ValueError("not a readable DICOM file") from None
        return None
    except Exception as exc:  # noqa: BLE001 - pydicom raises many kinds on broken files
        raise ValueError(type(exc).__name__) from None
    if "PixelData" not in ds:
        return None  # DICOMDIR, structured reports, presentation states ...
    try:
        rows, cols = int(ds.Rows), int(ds.Columns)
        bits = int(ds.get("BitsAllocated", 16))
        samples = int(ds.get("SamplesPerPixel", 1))
        frames = int(ds.get("NumberOfFrames", 1) or 1)
        expected = rows * cols * bits // 8 * samples * frames
        meta = getattr(ds, "file_meta", None)
        syntax = getattr(meta, "TransferSyntaxUID", None)
        compressed = bool(syntax is not None and syntax.is_compressed)
        if not compressed and path.stat().st_size < expected:
            raise ValueError("truncated file")
    except (AttributeError, KeyError, TypeError) as exc:
        raise ValueError(f"missing image attribute ({exc})") from None
    return SliceHeader(
        path=path,
        series_uid=str(ds.get("SeriesInstanceUID", "unknown")),
        modality=str(ds.get("Modality", "")).upper() or "unknown",
        description=str(ds.get("SeriesDescription", "")),
        orientation=_float_tuple(ds.get("ImageOrientationPatient"), 6) or (),
        position=_float_tuple(ds.get("ImagePositionPatient"), 3),
        pixel_spacing=_float_tuple(ds.get("PixelSpacing"), 2),  # type: ignore[arg-type]
        rows=rows,
        columns=cols,
        frames=frames,
        gantry_tilt=float(ds.get("GantryDetectorTilt", 0.0) or 0.0),
    )


def find_series(folder: str | Path) -> list[SeriesInfo]:
    """All image series under ``folder`` (recursively), grouped by SeriesInstanceUID.

    Raises
    ------
    DicomError
        If the folder is missing, holds no DICOM image, or holds unreadable or
        truncated DICOM files (named in the message).
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise DicomError(f"{folder}: no such folder")
    files = sorted(p for p in folder.rglob("*") if p.is_file() and not p.name.startswith("."))
    headers: list[SliceHeader] = []
    broken: list[str] = []
    for path in files:
        try:
            header = _read_header(path)
        except ValueError:
            broken.append(str(path.relative_to(folder)))
            continue
        if header is not None:
            headers.append(header)
    if broken:
        shown = ", ".join(broken[:MAX_LISTED]) + (" ..." if len(broken) > MAX_LISTED else "")
        raise DicomError(f"{folder}: {len(broken)} unreadable or truncated DICOM file(s): {shown}")
    if not headers:
        raise DicomError(f"{folder}: no DICOM image files found"
                         + (" (the folder is empty)" if not files else f" among {len(files)} files"))
    by_uid: dict[str, list[SliceHeader]] = {}
    for header in headers:
        by_uid.setdefault(header.series_uid, []).append(header)
    return [SeriesInfo(uid, group[0].modality, group[0].description, tuple(group))
            for uid, group in sorted(by_uid.items())]


def _choose(series: list[SeriesInfo], folder: Path, series_uid: str | None) -> SeriesInfo:
    if series_uid is not None:
        for info in series:
            if info.uid == series_uid:
                return info
        raise DicomError(f"{folder}: no series {series_uid}; found: "
                         + "; ".join(s.summary() for s in series))
    if len(series) > 1:
        raise DicomError(f"{folder}: {len(series)} series in one folder: "
                         + "; ".join(s.summary() for s in series) + " -- pick one with --series UID")
    return series[0]


def _check_slices(info: SeriesInfo, folder: Path) -> tuple[list[SliceHeader], np.ndarray, float]:
    """Sorted slices, their in-plane offsets (mm, along row/col) and the slice spacing.

    Raises
    ------
    DicomError
        For a non-CT modality, multi-frame files, a single slice, mixed
        orientations or sizes, missing geometry, duplicated or missing slices.
    """
    slices = list(info.slices)
    if info.modality != "CT":
        raise DicomError(f"{folder}: not a CT: Modality is {info.modality}")
    if any(s.frames > 1 for s in slices):
        raise DicomError(f"{folder}: multi-frame (enhanced) DICOM is not supported; export classic slices")
    if len(slices) < 2:
        raise DicomError(f"{folder}: a single slice (2-D image); a CT volume is needed")
    if any(not s.orientation or s.position is None or s.pixel_spacing is None for s in slices):
        raise DicomError(f"{folder}: slices without ImagePositionPatient, ImageOrientationPatient "
                         "or PixelSpacing; the geometry cannot be known")
    orientations = np.array([s.orientation for s in slices])
    if np.abs(orientations - orientations[0]).max() > 1e-3:
        raise DicomError(f"{folder}: mixed orientations in one series "
                         f"({len(np.unique(orientations.round(3), axis=0))} different ImageOrientationPatient)")
    sizes = {(s.rows, s.columns) for s in slices}
    if len(sizes) > 1:
        raise DicomError(f"{folder}: mixed image sizes in one series: {sorted(sizes)}")
    spacings = np.array([s.pixel_spacing for s in slices])
    if np.abs(spacings - spacings[0]).max() > 1e-4:
        raise DicomError(f"{folder}: mixed pixel spacings in one series")

    row, col = np.array(slices[0].orientation[:3]), np.array(slices[0].orientation[3:])
    normal = np.cross(row, col)
    positions = np.array([s.position for s in slices])
    along = positions @ normal
    order = np.argsort(along, kind="stable")
    slices = [slices[i] for i in order]
    positions, along = positions[order], along[order]
    steps = np.diff(along)
    duplicated = np.flatnonzero(steps < POSITION_TOL_MM)
    if duplicated.size:
        raise DicomError(f"{folder}: duplicated slices: {duplicated.size + 1} files at position "
                         f"{along[duplicated[0]]:.2f} mm along the slice normal")
    spacing = float(np.median(steps))
    uneven = np.flatnonzero(np.abs(steps - spacing) > max(0.1 * spacing, 0.05))
    if uneven.size:
        i = uneven[0]
        raise DicomError(f"{folder}: uneven slice spacing: a gap of {steps[i]:.2f} mm after the slice at "
                         f"{along[i]:.2f} mm where {spacing:.2f} mm is expected (missing slices?)")
    offsets = np.stack([(positions - positions[0]) @ row, (positions - positions[0]) @ col], axis=1)
    return slices, offsets, spacing


def read_dicom_series(folder: str | Path, *, series_uid: str | None = None) -> Volume:
    """Read one CT series from ``folder`` as a Volume in HU (float32).

    A gantry-tilted series (slice positions sheared along the image plane) is
    resampled onto a regular grid in the slices' own orientation, with a warning.

    Raises
    ------
    DicomError
        With one line naming the problem (see :func:`find_series` and the checks).
    """
    folder = Path(folder)
    info = _choose(find_series(folder), folder, series_uid)
    slices, offsets, spacing = _check_slices(info, folder)
    reader = sitk.ImageSeriesReader()
    reader.SetFileNames([str(s.path) for s in slices])
    try:
        image = reader.Execute()
    except RuntimeError as exc:
        reason = str(exc).strip().splitlines()[-1] if str(exc).strip() else "unknown error"
        raise DicomError(f"{folder}: cannot decode the pixel data ({reason})") from None
    array = sitk.GetArrayFromImage(image).transpose(2, 1, 0).astype(np.float32)
    if array.shape[2] != len(slices):
        raise DicomError(f"{folder}: read {array.shape[2]} slices of {len(slices)} files")
    first = slices[0]
    row, col = np.array(first.orientation[:3]), np.array(first.orientation[3:])
    direction = np.column_stack([row, col, np.cross(row, col)])
    pixel = (first.pixel_spacing[1], first.pixel_spacing[0])  # (column spacing, row spacing)
    if np.abs(offsets).max() > 0.01 or abs(first.gantry_tilt) > 0.01:
        array = _unshear(array, offsets, pixel)
        shear = np.linalg.norm(offsets[-1]) / max(spacing * (len(slices) - 1), 1e-6)
        log.warning("%s: gantry tilt of %.1f degrees: resampled onto a regular grid",
                    folder.name, np.degrees(np.arctan(shear)) if shear else first.gantry_tilt)
    return Volume(array, (pixel[0], pixel[1], spacing), first.position, direction)


def series_files(folder: str | Path, *, series_uid: str | None = None) -> list[Path]:
    """The files of the series that :func:`read_dicom_series` reads, in its slice order (k = 0, 1, ...).

    Raises
    ------
    DicomError
        As :func:`read_dicom_series`, for a folder that does not hold one usable CT series.
    """
    folder = Path(folder)
    slices, _, _ = _check_slices(_choose(find_series(folder), folder, series_uid), folder)
    return [s.path for s in slices]


PATIENT_POSITIONS = {"HFP": "prone", "FFP": "prone", "HFS": "supine", "FFS": "supine"}


def series_patient_position(folder: str | Path, *, series_uid: str | None = None) -> str | None:
    """``prone`` or ``supine`` from the series' PatientPosition (HFP, FFP, HFS, FFS), else None.

    Read from the first file of the series that :func:`read_dicom_series` reads; decubitus
    positions (HFDL, ...) and a missing attribute give None.
    """
    folder = Path(folder)
    info = _choose(find_series(folder), folder, series_uid)
    try:
        ds = pydicom.dcmread(info.slices[0].path, stop_before_pixels=True)
    except Exception:  # noqa: BLE001 - the pixels were read already; a header problem only loses this hint
        return None
    return PATIENT_POSITIONS.get(str(ds.get("PatientPosition", "") or "").strip().upper())


def _unshear(array: np.ndarray, offsets: np.ndarray, pixel: tuple[float, float]) -> np.ndarray:
    """Shift each slice back by its in-plane offset so the stack lies on a regular grid."""
    out = np.empty_like(array)
    for k in range(array.shape[2]):
        shift = (offsets[k, 0] / pixel[0], offsets[k, 1] / pixel[1])
        out[:, :, k] = ndimage.shift(array[:, :, k], shift, order=1, mode="nearest")
    return out


def write_dicom_series(
    volume: Volume,
    folder: str | Path,
    *,
    series_description: str = "trajplan",
    patient_position: str = "HFS",
) -> Path:
    """Write ``volume`` (HU) as a CT Image Storage series, one file per k-slice.

    The patient is anonymous; UIDs are derived from the voxel data, so the same
    volume always gives the same files. The folder is built beside ``folder`` and
    renamed into place.
    """
    folder = Path(folder)
    folder.parent.mkdir(parents=True, exist_ok=True)
    data = np.clip(np.round(volume.array), -32768, 32767).astype(np.int16)
    digest = hashlib.sha256(data.tobytes() + volume.affine.tobytes()).hexdigest()
    study, series, frame = (generate_uid(entropy_srcs=[digest, tag]) for tag in ("study", "series", "frame"))
    row, col, slice_dir = volume.direction[:, 0], volume.direction[:, 1], volume.direction[:, 2]
    tmp = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", dir=folder.parent))
    try:
        for k in range(volume.shape[2]):
            meta = FileMetaDataset()
            meta.MediaStorageSOPClassUID = CTImageStorage
            meta.MediaStorageSOPInstanceUID = generate_uid(entropy_srcs=[digest, str(k)])
            meta.TransferSyntaxUID = ExplicitVRLittleEndian
            ds = FileDataset(str(tmp / f"slice{k:04d}.dcm"), {}, file_meta=meta, preamble=b"\0" * 128)
            ds.SOPClassUID = CTImageStorage
            ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
            ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.FrameOfReferenceUID = study, series, frame
            ds.Modality = "CT"
            ds.PatientName = "Anonymous"
            ds.PatientID = "PHANTOM"
            ds.PatientPosition = patient_position
            ds.SeriesDescription = series_description
            ds.SeriesNumber, ds.InstanceNumber = 1, k + 1
            ds.ImageOrientationPatient = [f"{v:.6f}" for v in (*row, *col)]
            position = volume.origin + k * volume.spacing[2] * slice_dir
            ds.ImagePositionPatient = [f"{v:.4f}" for v in position]
            ds.PixelSpacing = [f"{volume.spacing[1]:.6f}", f"{volume.spacing[0]:.6f}"]
            ds.SliceThickness = f"{volume.spacing[2]:.6f}"
            ds.Rows, ds.Columns = volume.shape[1], volume.shape[0]
            ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
            ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 1
            ds.RescaleIntercept, ds.RescaleSlope, ds.RescaleType = "0", "1", "HU"
            ds.PixelData = np.ascontiguousarray(data[:, :, k].T).tobytes()
            ds.save_as(tmp / f"slice{k:04d}.dcm", enforce_file_format=True)
        if folder.exists():
            shutil.rmtree(folder)
        tmp.rename(folder)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return folder
