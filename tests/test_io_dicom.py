"""DICOM series: exact round trips, every malformed series refused with a clear line, real data."""

from __future__ import annotations

import shutil

import numpy as np
import pydicom
import pytest

from trajplan.errors import DicomError, InputError
from trajplan.io.dicom import find_series, write_dicom_series
from trajplan.io.reader import read_ct
from trajplan.volume import Volume


def synthetic_ct(direction=np.eye(3)) -> Volume:
    arr = np.full((48, 40, 30), -1000, dtype=np.int16)
    arr[6:-6, 5:-5, :] = 40
    arr[18:30, 15:25, 8:22] = 700
    arr[20, 18, 10] = 1234  # a marker voxel
    return Volume(arr, (2.0, 2.0, 2.5), (-40.0, -30.0, 10.0), direction)


@pytest.mark.parametrize("direction", [np.eye(3), np.diag([-1.0, -1.0, 1.0]), np.diag([1.0, 1.0, -1.0])],
                         ids=["supine", "prone", "left_handed"])
def test_written_series_reads_back_identically_in_world_space(tmp_path, direction):
    vol = synthetic_ct(direction)
    write_dicom_series(vol, tmp_path / "dicom")
    back = read_ct(tmp_path / "dicom")
    a, _ = vol.to_canonical()
    b, _ = back.to_canonical()
    assert a.same_geometry(b, tol_mm=1e-3)
    assert np.array_equal(a.array, b.array)
    marker = vol.index_to_world([20, 18, 10])
    assert back.array[tuple(np.round(back.world_to_index(marker)).astype(int))] == 1234


def test_writing_is_deterministic(tmp_path):
    vol = synthetic_ct()
    write_dicom_series(vol, tmp_path / "a")
    write_dicom_series(vol, tmp_path / "b")
    a = pydicom.dcmread(sorted((tmp_path / "a").iterdir())[0])
    b = pydicom.dcmread(sorted((tmp_path / "b").iterdir())[0])
    assert a.SeriesInstanceUID == b.SeriesInstanceUID and a.SOPInstanceUID == b.SOPInstanceUID


@pytest.fixture
def series(tmp_path):
    folder = write_dicom_series(synthetic_ct(), tmp_path / "series")
    return folder, sorted(folder.iterdir())


def edit(path, **attrs):
    ds = pydicom.dcmread(path)
    for key, value in attrs.items():
        setattr(ds, key, value)
    ds.save_as(path)


def expect(folder, *words, **kwargs):
    with pytest.raises(DicomError) as err:
        read_ct(folder, **kwargs)
    message = str(err.value)
    assert "\n" not in message
    for word in words:
        assert word.lower() in message.lower(), message
    return message


def test_missing_slice(series):
    folder, files = series
    files[12].unlink()
    expect(folder, "uneven slice spacing", "missing")


def test_duplicated_slice(series):
    folder, files = series
    shutil.copy(files[5], folder / "copy.dcm")
    edit(folder / "copy.dcm", SOPInstanceUID=pydicom.uid.generate_uid())
    expect(folder, "duplicated slices")


def test_not_ct(series):
    folder, files = series
    for f in files:
        edit(f, Modality="MR")
    expect(folder, "not a CT", "MR")


def test_two_series_listed_and_one_picked(series, tmp_path):
    folder, _ = series
    other = synthetic_ct()
    other = other.with_array(other.array + 1)
    write_dicom_series(other, tmp_path / "other", series_description="second")
    for f in (tmp_path / "other").iterdir():
        shutil.copy(f, folder / f"b_{f.name}")
    message = expect(folder, "2 series", "--series")
    uids = {s.uid for s in find_series(folder)}
    assert all(uid in message for uid in uids)
    chosen = next(s for s in find_series(folder) if s.description == "second")
    vol = read_ct(folder, series_uid=chosen.uid)
    assert vol.array.max() == 1235


def test_mixed_orientation(series):
    folder, files = series
    edit(files[3], ImageOrientationPatient=[0, 1, 0, 1, 0, 0])
    expect(folder, "mixed orientations")


def test_mixed_sizes(series):
    folder, files = series
    ds = pydicom.dcmread(files[4])
    ds.Rows, ds.Columns = 20, 20
    ds.PixelData = np.zeros((20, 20), np.int16).tobytes()
    ds.save_as(files[4])
    expect(folder, "mixed image sizes")


def test_truncated_file(series):
    folder, files = series
    files[7].write_bytes(files[7].read_bytes()[:2000])
    expect(folder, "truncated", files[7].name)


def test_empty_folder(tmp_path):
    (tmp_path / "empty").mkdir()
    expect(tmp_path / "empty", "no DICOM", "empty")


def test_single_slice(series):
    folder, files = series
    for f in files[1:]:
        f.unlink()
    expect(folder, "single slice")


def test_gantry_tilt_is_resampled_onto_a_regular_grid(series, caplog):
    folder, files = series
    vol = synthetic_ct()
    shear = np.tan(np.deg2rad(10.0)) * vol.spacing[2]  # mm per slice along the columns
    for k, f in enumerate(files):
        ds = pydicom.dcmread(f)
        pos = [float(v) for v in ds.ImagePositionPatient]
        pos[1] += k * shear
        ds.ImagePositionPatient = [f"{v:.4f}" for v in pos]
        ds.GantryDetectorTilt = "10"
        ds.save_as(f)
    back = read_ct(folder)
    assert "gantry tilt" in caplog.text
    # the bone block was written at rows 15..24 of each slice: after resampling it sits
    # at its true world position, shifted by the shear in the later slices
    k = 20
    world = np.array([vol.index_to_world([24, 20, k])[0], vol.index_to_world([24, 20, k])[1] + k * shear,
                      vol.index_to_world([24, 20, k])[2]])
    idx = np.round(back.world_to_index(world)).astype(int)
    assert back.array[tuple(idx)] == 700


def test_real_series_geometry_and_no_identity_in_errors(shared_ct, tmp_path):
    folder = shared_ct / "ts_example_dicom"
    vol = read_ct(folder)
    headers = [pydicom.dcmread(f, stop_before_pixels=True) for f in sorted(folder.iterdir())]
    z = sorted(float(h.ImagePositionPatient[2]) for h in headers)
    assert vol.shape == (int(headers[0].Columns), int(headers[0].Rows), len(headers))
    assert np.allclose(vol.spacing[:2], [float(v) for v in headers[0].PixelSpacing][::-1])
    assert np.isclose(vol.spacing[2], (z[-1] - z[0]) / (len(z) - 1))
    assert np.allclose(vol.origin[:2], [float(v) for v in headers[0].ImagePositionPatient][:2])
    assert np.isclose(vol.origin[2], z[0])
    # a broken copy of the real series: the error must not carry the patient's name or ID
    broken = tmp_path / "broken"
    shutil.copytree(folder, broken)
    victim = sorted(broken.iterdir())[5]
    victim.write_bytes(victim.read_bytes()[:1000])
    with pytest.raises(InputError) as err:
        read_ct(broken)
    for identity in (str(headers[0].get("PatientName", "")), str(headers[0].get("PatientID", ""))):
        if identity.strip():
            assert identity not in str(err.value)
