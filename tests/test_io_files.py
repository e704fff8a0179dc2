"""Volume files: round trips keep geometry; every bad file gives an InputError naming the problem."""

from __future__ import annotations

import gzip

import numpy as np
import pytest
import SimpleITK as sitk

from trajplan.errors import InputError
from trajplan.io.files import read_hu_file, read_volume_file, write_hu_file, write_volume_file
from trajplan.io.reader import read_ct
from trajplan.volume import Volume


def ct_like(shape=(40, 40, 30), spacing=(2.0, 2.0, 2.0), direction=np.eye(3)) -> Volume:
    arr = np.full(shape, -1000.0, dtype=np.float32)
    arr[5:-5, 5:-5, :] = 40.0
    arr[15:25, 15:25, 5:25] = 700.0
    return Volume(arr, spacing, (-40.0, -30.0, 10.0), direction)


@pytest.mark.parametrize("suffix", [".nii.gz", ".nii", ".nrrd", ".mha"])
def test_round_trip_keeps_geometry(tmp_path, suffix):
    vol = ct_like(direction=np.diag([-1.0, -1.0, 1.0]))
    path = write_volume_file(vol, tmp_path / f"ct{suffix}")
    back = read_ct(path)
    assert back.same_geometry(vol) and np.array_equal(back.array, vol.array)


def write_sitk(arr: np.ndarray, path, spacing=(2.0, 2.0, 2.0)) -> str:
    image = sitk.GetImageFromArray(arr)
    image.SetSpacing(spacing[: image.GetDimension()])
    sitk.WriteImage(image, str(path))
    return str(path)


def test_a_ct_in_whole_hu_is_stored_as_int16_without_loss_and_read_back_as_float(tmp_path):
    vol = ct_like(direction=np.diag([-1.0, -1.0, 1.0]))
    vol.array[0, 0, 0] = -1024.0
    vol.array[1, 0, 0] = 3071.0
    path = write_hu_file(vol, tmp_path / "ct_roi.nii.gz")
    assert sitk.ReadImage(str(path)).GetPixelID() == sitk.sitkInt16
    back = read_hu_file(path)
    assert back.array.dtype == np.float32 and back.same_geometry(vol) and np.array_equal(back.array, vol.array)
    # fractional HU (a resampled CT) and HU beyond int16 keep float32: nothing is rounded or clipped
    for value in (40.25, 40000.0):
        other = vol.with_array(vol.array.copy())
        other.array[2, 2, 2] = value
        path = write_hu_file(other, tmp_path / "other.nii.gz")
        assert sitk.ReadImage(str(path)).GetPixelID() == sitk.sitkFloat32
        assert np.array_equal(read_hu_file(path).array, other.array)


def test_bad_files_name_their_problem(tmp_path):
    cases = {}
    cases["no such file"] = tmp_path / "missing.nii.gz"
    (tmp_path / "notes.txt").write_text("x")
    cases["unsupported"] = tmp_path / "notes.txt"
    good = write_volume_file(ct_like(), tmp_path / "good.nii.gz")
    raw = gzip.decompress(good.read_bytes())
    (tmp_path / "truncated.nii.gz").write_bytes(gzip.compress(raw[: len(raw) // 3]))
    cases["cannot read"] = tmp_path / "truncated.nii.gz"
    cases["2-D"] = write_sitk(np.zeros((50, 50), np.float32), tmp_path / "flat.nii.gz")
    nan = ct_like().array.transpose(2, 1, 0).copy()
    nan[3, 3, 3] = np.nan
    cases["NaN"] = write_sitk(nan, tmp_path / "nan.nii.gz")
    cases["constant"] = write_sitk(np.full((30, 40, 40), 40.0, np.float32), tmp_path / "const.nii.gz")
    cases["too small"] = write_sitk(ct_like(shape=(10, 10, 10)).array, tmp_path / "tiny.nii.gz")
    mr = np.random.default_rng(0).uniform(0, 1800, size=(30, 40, 40)).astype(np.float32)
    cases["does not look like a CT"] = write_sitk(mr, tmp_path / "mr.nii.gz")
    for word, path in cases.items():
        with pytest.raises(InputError) as err:
            read_ct(path)
        assert word.lower() in str(err.value).lower(), (word, str(err.value))
        assert "\n" not in str(err.value)


def test_absurd_spacing_on_disk_is_refused(tmp_path):
    path = write_sitk(ct_like().array, tmp_path / "absurd.nii.gz", spacing=(2.0, 2.0, 25.0))
    with pytest.raises(InputError, match="spacing"):
        read_volume_file(path)


def targeted_ct(shape=(110, 85, 30), spacing=(2.0, 2.0, 2.0), seed=0) -> np.ndarray:
    """A 220 x 170 mm field inside the body: fat, muscle and bone with noise, no air (x, y, z)."""
    rng = np.random.default_rng(seed)
    arr = np.full(shape, -100.0, dtype=np.float32)                 # subcutaneous/pelvic fat
    x, y = np.meshgrid(np.arange(shape[0]), np.arange(shape[1]), indexing="ij")
    muscle = ((x - 55) / 48) ** 2 + ((y - 42) / 36) ** 2 < 1
    bone = ((x - 55) / 30) ** 2 + ((y - 35) / 14) ** 2 < 1
    arr[muscle] = 50.0
    arr[bone] = rng.uniform(400.0, 1000.0, size=(int(bone.sum()), 1))
    arr += rng.normal(0.0, 15.0, size=shape).astype(np.float32)
    return arr


def test_targeted_reconstruction_inside_the_body_is_a_ct(tmp_path):
    arr = targeted_ct()
    assert arr.min() > -200                                        # refused before: nothing below -200
    path = write_volume_file(Volume(arr, (2.0, 2.0, 2.0), (0.0, 0.0, 0.0), np.eye(3)), tmp_path / "t.nii.gz")
    assert np.allclose(read_ct(path).array, arr)


@pytest.mark.parametrize("make", [
    lambda rng: np.where(rng.uniform(size=(30, 40, 40)) < 0.3, 0.0,            # background 0
                         rng.uniform(50, 2000, size=(30, 40, 40))),
    lambda rng: rng.normal(300.0, 200.0, size=(30, 40, 40)).clip(0, None),     # tissue, no negatives
    lambda rng: rng.uniform(-400.0, 3000.0, size=(30, 40, 40)) + 1024.0 * 3,  # offset: above the CT range
    lambda rng: np.where(rng.uniform(size=(30, 40, 40)) < 0.5, -1000.0, 800.0),  # air and bone only
])
def test_mr_like_and_other_non_hu_volumes_are_refused(tmp_path, make):
    arr = make(np.random.default_rng(1)).astype(np.float32)
    path = write_sitk(arr, tmp_path / "mr.nii.gz")
    with pytest.raises(InputError, match="does not look like a CT in Hounsfield units"):
        read_ct(path)
