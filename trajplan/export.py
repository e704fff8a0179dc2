"""``trajplan export``: a plan as DICOM for PACS and the CT console.

The one output of trajplan that carries the patient's and the study's identifiers: a DICOM
Segmentation of the plan's label map on the source series, and a Secondary Capture series of
its pictures, both in the source study, go back into that patient's record. Every other output
stays free of them. The export folder is complete or absent (:func:`trajplan.io.staged.staged_folder`).
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import pydicom
from pydicom.dataset import Dataset

from trajplan import __version__
from trajplan.errors import InputError
from trajplan.io.atomic import atomic_path, write_json
from trajplan.io.checksum import sha256_of
from trajplan.io.dicom import series_files
from trajplan.io.plan_folder import EXPORT, LABELS, PLAN
from trajplan.io.reader import read_ct
from trajplan.io.staged import staged_folder
from trajplan.timing import StageTimer

SEG_FILE = "segmentation.dcm"
PICTURES = "pictures"
SEG_SERIES_NUMBER, SC_SERIES_NUMBER = 901, 902
SOURCE_REQUIRED = ("SOPClassUID", "SOPInstanceUID", "StudyInstanceUID", "SeriesInstanceUID", "FrameOfReferenceUID")
SOURCE_TYPE2 = ("PatientName", "PatientID", "PatientBirthDate", "PatientSex", "StudyDate", "StudyTime",
                "StudyID", "AccessionNumber", "ReferringPhysicianName")


def read_plan_json(plan_dir: Path) -> dict:
    """``plan.json`` of a plan folder.

    Raises
    ------
    InputError
        When the folder or its ``plan.json`` is missing or unreadable.
    """
    path = plan_dir / PLAN
    if not path.is_file():
        raise InputError(f"{plan_dir}: not a plan folder (no plan.json)")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise InputError(f"{path}: unreadable ({type(exc).__name__})") from None


def check_source(plan: dict, plan_dir: Path, ct_path: Path) -> None:
    """Check that ``ct_path`` is the DICOM series folder the plan was made from (by checksum).

    Raises
    ------
    InputError
        A plan made from a file (NIfTI, NRRD, ...), a CT that is not a folder, or a folder whose
        checksum is not the one ``plan.json`` records.
    """
    source = plan.get("input", {})
    if source.get("format") != "dicom":
        raise InputError(f"{plan_dir}: the plan was made from a {source.get('format') or 'non-DICOM'} file, "
                         "not a DICOM series: there is no series, patient or study to export into; "
                         "plan again from the DICOM series folder")
    if not ct_path.is_dir():
        raise InputError(f"{ct_path}: not a DICOM series folder")
    if sha256_of(ct_path) != source.get("sha256"):
        raise InputError(f"{ct_path}: not the CT of this plan (its checksum differs from plan.json's "
                         f"input.sha256 {str(source.get('sha256'))[:12]}...)")


def check_places(plan_dir: Path, ct_path: Path, out_dir: Path) -> None:
    """Refuse an export folder in the plan or CT folder (they would then hold identifiers, or change
    their checksum), or holding either of them (replacing it would delete them).

    Raises
    ------
    InputError
        Naming the clash.
    """
    out = out_dir.resolve()
    for name, folder in (("plan", plan_dir.resolve()), ("CT", ct_path.resolve())):
        if out == folder or folder in out.parents:
            raise InputError(f"{out_dir}: the export folder must not be in the {name} folder {folder}; "
                             "give a folder of its own")
        if out in folder.parents:
            raise InputError(f"{out_dir}: the export folder holds the {name} folder {folder}; "
                             "give a folder of its own")


def source_headers(ct_path: Path, series_uid: str | None) -> list[Dataset]:
    """Headers of the series' images in slice order, with empty values for missing Type 2
    patient and study attributes (in memory only: an anonymised series may lack them).

    Raises
    ------
    InputError
        When an image lacks an identifier the export needs (its SOP, study, series or frame of reference UID).
    """
    headers = []
    for path in series_files(ct_path, series_uid=series_uid):
        header = pydicom.dcmread(path, stop_before_pixels=True)
        missing = [k for k in SOURCE_REQUIRED if not header.get(k)]
        if missing:
            raise InputError(f"{ct_path}: {path.name} has no {', '.join(missing)}; the export needs them")
        for keyword in SOURCE_TYPE2:
            if keyword not in header:
                setattr(header, keyword, "")
        headers.append(header)
    return headers


def save_dicom(dataset: Dataset, path: Path) -> None:
    """Atomically write ``dataset`` as a DICOM file (preamble and file meta) to ``path``."""
    with atomic_path(path) as tmp:
        dataset.save_as(tmp, enforce_file_format=True)


def write_pictures(plan_dir: Path, work: Path, reference: Dataset) -> list[dict]:
    """Write the plan's pictures as one Secondary Capture series into ``work/pictures/``; returns
    ``export.json``'s list of them (file, source picture, caption)."""
    from trajplan.io.dicom_sc import plan_pictures, secondary_capture

    series_uid = str(pydicom.uid.generate_uid())
    pictures = []
    for number, (png, caption) in enumerate(plan_pictures(plan_dir), start=1):
        source = png.relative_to(plan_dir)
        name = f"{PICTURES}/{number:02d}_{'_'.join(source.with_suffix('').parts)}.dcm"
        save_dicom(secondary_capture(png, caption, reference, series_uid=series_uid, series_number=SC_SERIES_NUMBER,
                                     instance_number=number), work / name)
        pictures.append({"file": name, "picture": str(source), "caption": caption})
    return pictures


def segments_json(seg: Dataset) -> list[dict]:
    """``export.json``'s list of the segments: number, label, coded property type, and whether its
    code is a general one (:data:`trajplan.io.dicom_seg.SEGMENT_CODES`)."""
    from trajplan.io.dicom_seg import SEGMENT_CODES

    out = []
    for item in seg.SegmentSequence:
        code = SEGMENT_CODES[str(item.SegmentLabel)]
        out.append({"number": int(item.SegmentNumber), "label": str(item.SegmentLabel), "type": code.type.meaning,
                    "code": f"{code.type.scheme_designator} {code.type.value}", "general_code": code.general})
    return out


def run_export(plan_dir: str | Path, ct_path: str | Path, out_dir: str | Path, *,
               series_uid: str | None = None) -> dict:
    """Write the DICOM export of a plan folder into ``out_dir``.

    ``out_dir`` receives ``segmentation.dcm`` (:func:`trajplan.io.dicom_seg.dicom_segmentation`),
    ``pictures/NN_<kind>_<name>.dcm`` (:func:`trajplan.io.dicom_sc.secondary_capture`, one per
    picture of :func:`trajplan.io.dicom_sc.plan_pictures`) and ``export.json`` (what was written,
    the segments and their codes; no identifiers).

    Raises
    ------
    InputError
        No plan folder, a plan not made from a DICOM series, a CT folder that is not the plan's
        (checksum), an export folder in or around the plan or CT folder, labels off the series' slices.
    OutputError
        When the folder cannot be written; it is then absent.
    """
    from trajplan.api import read_labels
    from trajplan.io.dicom_seg import dicom_segmentation

    plan_dir, ct_path, out_dir = Path(plan_dir), Path(ct_path), Path(out_dir)
    timer = StageTimer()
    plan = read_plan_json(plan_dir)
    check_places(plan_dir, ct_path, out_dir)
    with timer.stage("checking CT"):
        check_source(plan, plan_dir, ct_path)
    with timer.stage("reading CT"):
        ct = read_ct(ct_path, series_uid=series_uid)
        labels = read_labels(plan_dir / LABELS, ct)
        headers = source_headers(ct_path, series_uid)
    from_labels_file = plan.get("segmentation", {}).get("source") in ("labels file", "labels given")
    with staged_folder(out_dir) as work, warnings.catch_warnings():
        # A name in the source as the scanner wrote it ("Eve") is copied as it is, not rewritten.
        warnings.filterwarnings("ignore", message=".*unlikely to represent the intended person name")
        with timer.stage("segmentation"):
            seg = dicom_segmentation(labels, headers, series_uid=str(pydicom.uid.generate_uid()),
                                     series_number=SEG_SERIES_NUMBER,
                                     algorithm_type="SEMIAUTOMATIC" if from_labels_file else "AUTOMATIC")
            save_dicom(seg, work / SEG_FILE)
        with timer.stage("pictures"):
            pictures = write_pictures(plan_dir, work, headers[0])
        segments = segments_json(seg)
        summary = {
            "schema": "trajplan/export", "schema_version": 1,
            "software": {"name": "trajplan", "version": __version__},
            "input_sha256": plan["input"]["sha256"],
            "segmentation": {"file": SEG_FILE, "frames": int(seg.NumberOfFrames), "segments": segments},
            "pictures": pictures,
            "timings_s": {k: round(v, 3) for k, v in timer.seconds.items()},
        }
        write_json(work / EXPORT, summary)
    return {"output": str(out_dir), "files": [SEG_FILE] + [p["file"] for p in pictures],
            "segments": len(segments), "timings_s": summary["timings_s"]}
