"""``trajplan export``: the DICOM Segmentation and Secondary Capture series of a plan, read back with
pydicom and highdicom, checked by dciodvfy, and the bad inputs refused with nothing written."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import highdicom as hd
import numpy as np
import pydicom
import pytest
from PIL import Image

from trajplan import labels as lt
from trajplan.cli import main
from trajplan.io.dicom import series_files
from trajplan.io.dicom_seg import SEGMENT_CODES
from trajplan.io.files import read_volume_file

DCIODVFY = shutil.which("dciodvfy")
PATIENT = {"PatientName": "Doe^Jane", "PatientID": "TRAJ-ID-4711", "PatientBirthDate": "19440512",
           "PatientSex": "F", "AccessionNumber": "ACC-0815", "StudyID": "STUDY-4242", "StudyDate": "20261201",
           "StudyTime": "101500", "ReferringPhysicianName": "Who^Doctor"}


@pytest.fixture(scope="module")
def case(tmp_path_factory, phantom_of) -> Path:
    """A 3 mm phantom with a DICOM series carrying made-up patient and study identifiers."""
    from sample_ct.phantom import PhantomParams, write_phantom

    out = tmp_path_factory.mktemp("export_case")
    write_phantom(phantom_of(PhantomParams(seed=1, spacing=(3.0, 3.0, 3.0), fracture="left")), out, dicom=True)
    for path in (out / "dicom").iterdir():
        ds = pydicom.dcmread(path)
        for keyword, value in PATIENT.items():
            setattr(ds, keyword, value)
        ds.save_as(path)
    return out


@pytest.fixture(scope="module")
def plan_dir(case, tmp_path_factory) -> Path:
    """The case planned from its DICOM series on its ground-truth labels, with the report's pictures."""
    out = tmp_path_factory.mktemp("export_plan") / "plan"
    assert main(["-q", "plan", str(case / "dicom"), "-o", str(out), "--labels", str(case / "labels.nii.gz"),
                 "--needles", "1"]) == 0
    return out


@pytest.fixture(scope="module")
def exported(case, plan_dir, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("export_out") / "pacs"
    assert main(["-q", "export", str(plan_dir), "--ct", str(case / "dicom"), "--dicom", str(out)]) == 0
    return out


def sources(case) -> list[pydicom.Dataset]:
    return [pydicom.dcmread(p, stop_before_pixels=True) for p in series_files(case / "dicom")]


def test_the_export_holds_one_segmentation_and_one_picture_per_plan_picture(plan_dir, exported):
    pngs = {"_".join(p.relative_to(plan_dir).with_suffix("").parts) for folder in ("views", "slices", "fluoro")
            for p in (plan_dir / folder).glob("*.png")}
    assert len(pngs) > 5, "the plan has its report's pictures"
    assert sorted(p.name for p in exported.iterdir()) == ["export.json", "pictures", "segmentation.dcm"]
    pictures = sorted(p.stem for p in (exported / "pictures").iterdir())
    assert [int(p.split("_", 1)[0]) for p in pictures] == list(range(1, len(pngs) + 1))
    assert {p.split("_", 1)[1] for p in pictures} == pngs


@pytest.mark.skipif(DCIODVFY is None, reason="dciodvfy not installed (apt-get install dicom3tools)")
def test_every_exported_file_passes_dciodvfy_without_error(exported):
    files = sorted(exported.rglob("*.dcm"))
    assert len(files) > 5
    for path in files:
        result = subprocess.run([DCIODVFY, str(path)], capture_output=True, text=True)
        errors = [line for line in (result.stdout + result.stderr).splitlines() if line.startswith("Error")]
        assert not errors, f"{path.name}: {errors}"


def test_segment_masks_read_back_equal_the_label_map_on_the_ct_grid(case, plan_dir, exported):
    seg = hd.seg.segread(exported / "segmentation.dcm")
    assert seg.SegmentationType == "BINARY"
    uids = [s.SOPInstanceUID for s in sources(case)]
    numbers = seg.get_pixels_by_source_instance(uids, combine_segments=True, relabel=False,
                                                assert_missing_frames_are_empty=True)
    to_value = np.zeros(256, dtype=np.uint8)
    for item in seg.SegmentSequence:
        to_value[int(item.SegmentNumber)] = lt.value(str(item.SegmentLabel))
    labels = read_volume_file(plan_dir / "labels.nii.gz")
    assert np.array_equal(to_value[numbers], labels.array.transpose(2, 1, 0))
    assert [str(s.SegmentLabel) for s in seg.SegmentSequence] == lt.present(labels)


def test_references_point_at_the_source_series_instances(case, exported):
    source = sources(case)
    seg = pydicom.dcmread(exported / "segmentation.dcm")
    assert seg.StudyInstanceUID == source[0].StudyInstanceUID
    assert seg.FrameOfReferenceUID == source[0].FrameOfReferenceUID
    assert seg.SeriesInstanceUID != source[0].SeriesInstanceUID
    (series,) = seg.ReferencedSeriesSequence
    assert series.SeriesInstanceUID == source[0].SeriesInstanceUID
    by_uid = {s.SOPInstanceUID: s for s in source}
    assert {i.ReferencedSOPInstanceUID for i in series.ReferencedInstanceSequence} == set(by_uid)
    for frame in seg.PerFrameFunctionalGroupsSequence:
        (derivation,) = frame.DerivationImageSequence
        (ref,) = derivation.SourceImageSequence
        image = by_uid[ref.ReferencedSOPInstanceUID]
        assert ref.ReferencedSOPClassUID == image.SOPClassUID
        position = frame.PlanePositionSequence[0].ImagePositionPatient
        assert np.allclose([float(v) for v in position], [float(v) for v in image.ImagePositionPatient], atol=1e-3)


def test_every_label_has_a_code_and_the_segments_carry_theirs(exported):
    assert set(SEGMENT_CODES) == {label.name for label in lt.LABELS}
    seg = pydicom.dcmread(exported / "segmentation.dcm")
    for item in seg.SegmentSequence:
        code = SEGMENT_CODES[str(item.SegmentLabel)]
        (prop,) = item.SegmentedPropertyTypeCodeSequence
        assert (prop.CodeValue, prop.CodingSchemeDesignator) == (code.type.value, "SCT")
        assert item.SegmentedPropertyCategoryCodeSequence[0].CodeValue == code.category.value
        side = str(item.SegmentLabel).rsplit("_", 1)[-1]
        modifiers = [m.CodeMeaning for m in prop.get("SegmentedPropertyTypeModifierCodeSequence", [])]
        assert modifiers == ([side.capitalize()] if side in lt.SIDES else [])
        assert len(item.RecommendedDisplayCIELabValue) == 3
    named = {str(i.SegmentLabel): i.SegmentedPropertyTypeCodeSequence[0].CodeValue for i in seg.SegmentSequence}
    assert named["sacrum"] == "54735007" and named["si_joint_left"] == "39723000" and named["fracture"] == "72704001"


def test_the_pictures_are_one_rgb_secondary_capture_series_of_the_source_study(case, plan_dir, exported):
    source = sources(case)[0]
    seg = pydicom.dcmread(exported / "segmentation.dcm")
    pictures = sorted((exported / "pictures").iterdir())
    series = set()
    for number, path in enumerate(pictures, start=1):
        ds = pydicom.dcmread(path)
        assert ds.SOPClassUID == pydicom.uid.SecondaryCaptureImageStorage
        assert (ds.StudyInstanceUID, ds.InstanceNumber, ds.PhotometricInterpretation) == (
            source.StudyInstanceUID, number, "RGB")
        assert ds.SeriesInstanceUID not in (source.SeriesInstanceUID, seg.SeriesInstanceUID)
        series.add(ds.SeriesInstanceUID)
        name = path.stem.split("_", 1)[1]
        folder, stem = name.split("_", 1)
        with Image.open(plan_dir / folder / f"{stem}.png") as png:
            assert np.array_equal(ds.pixel_array, np.asarray(png.convert("RGB")))
        assert ds.ImageComments.startswith(("3D view", "CT slice", "simulated fluoroscopy"))
    assert len(series) == 1


def test_only_the_export_carries_the_patient_and_study_identifiers(case, plan_dir, exported):
    source = sources(case)[0]
    for path in [exported / "segmentation.dcm", *sorted((exported / "pictures").iterdir())]:
        ds = pydicom.dcmread(path, stop_before_pixels=True)
        for keyword, value in PATIENT.items():
            assert str(ds.get(keyword)) == value, (path.name, keyword)
        assert ds.StudyInstanceUID == source.StudyInstanceUID
    identifiers = [v.encode() for k, v in PATIENT.items() if k != "PatientSex"] + [
        source.StudyInstanceUID.encode(), source.SeriesInstanceUID.encode()]
    for path in [exported / "export.json", *(p for p in plan_dir.rglob("*") if p.is_file())]:
        data = path.read_bytes()
        assert not [v for v in identifiers if v in data], path.name


def test_a_plan_made_from_nifti_is_refused_with_nothing_written(case, tmp_path, capsys):
    plan = tmp_path / "nifti_plan"
    assert main(["-q", "plan", str(case / "ct.nii.gz"), "-o", str(plan), "--labels", str(case / "labels.nii.gz"),
                 "--needles", "1", "--no-report"]) == 0
    capsys.readouterr()
    assert main(["export", str(plan), "--ct", str(case / "dicom"), "--dicom", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert "made from a nii.gz file, not a DICOM series" in err and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["nifti_plan"]


def test_a_ct_folder_that_is_not_the_plans_is_refused(case, plan_dir, tmp_path, capsys):
    other = shutil.copytree(case / "dicom", tmp_path / "other")
    first = sorted(other.iterdir())[0]
    ds = pydicom.dcmread(first)
    ds.SeriesDescription = "changed"
    ds.save_as(first)
    assert main(["export", str(plan_dir), "--ct", str(other), "--dicom", str(tmp_path / "out")]) == 2
    assert "not the CT of this plan" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("where", ["inside the plan", "the plan itself"])
def test_an_export_folder_in_the_plan_folder_is_refused(case, plan_dir, capsys, where):
    out = plan_dir / "pacs" if where == "inside the plan" else plan_dir
    before = sorted(p.name for p in plan_dir.iterdir())
    assert main(["export", str(plan_dir), "--ct", str(case / "dicom"), "--dicom", str(out)]) == 2
    assert "must not be in the plan folder" in capsys.readouterr().err
    assert sorted(p.name for p in plan_dir.iterdir()) == before


def test_a_folder_without_plan_json_is_refused(case, tmp_path, capsys):
    assert main(["export", str(tmp_path), "--ct", str(case / "dicom"), "--dicom", str(tmp_path / "o")]) == 2
    assert "not a plan folder (no plan.json)" in capsys.readouterr().err


def test_labels_off_the_series_images_are_refused():
    from pydicom.dataset import Dataset

    from trajplan.errors import InputError
    from trajplan.io.dicom_seg import check_on_slices
    from trajplan.volume import Volume

    labels = Volume(np.zeros((4, 4, 3), dtype=np.uint8), (1.0, 1.0, 2.0), (0.0, 0.0, 0.0), np.eye(3))

    def images(shear_mm: float, uneven_mm: float = 0.0) -> list[Dataset]:
        out = []
        for k in range(3):
            ds = Dataset()
            ds.ImagePositionPatient = [0, k * shear_mm, 2 * k + (uneven_mm if k == 1 else 0.0)]
            ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
            out.append(ds)
        return out

    check_on_slices(labels, images(0.0))
    check_on_slices(labels, images(0.0, uneven_mm=0.15))   # slightly uneven slices, stacked as read
    with pytest.raises(InputError, match="image 2 of the DICOM series does not lie on slice 1 of the label map"):
        check_on_slices(labels, images(0.35))       # a gantry-tilted series: sheared positions
    with pytest.raises(InputError, match="image 2 of the DICOM series"):
        check_on_slices(labels, images(0.0, uneven_mm=1.5))


def test_help_says_the_export_carries_patient_identifiers(capsys):
    with pytest.raises(SystemExit) as done:
        main(["export", "--help"])
    assert done.value.code == 0
    text = " ".join(capsys.readouterr().out.split())
    assert "the one output that carries the patient's and the study's identifiers" in text
    assert "trajplan export case_plan --ct case/dicom --dicom case_pacs" in text
