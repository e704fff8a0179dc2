"""The scans made from bone-only CTs (sample_ct.bone_only): a tilted patient's geometry, a noisier scan's
noise, a thick-slice scan's grid."""

from __future__ import annotations

import numpy as np
from scipy.spatial.transform import Rotation

from sample_ct.bone_only import SCANS, SOFT_TISSUE_SD_HU, real_case, reference_on, scan_spacing, turned
from trajplan.io.files import write_volume_file
from trajplan.volume import Volume


def _ball_volume() -> tuple[Volume, np.ndarray]:
    """A label map on an anisotropic grid stored flipped (direction diag(-1, -1, 1), as real case 003)
    with a 4 mm ball of label 2 at a known world point; (the volume, that point in LPS mm)."""
    spacing = np.array([0.8, 0.8, 1.25])
    volume = Volume(np.zeros((80, 70, 60), dtype=np.uint8), spacing, np.array([30.0, 20.0, -40.0]),
                    np.diag([-1.0, -1.0, 1.0]))
    point = volume.index_to_world(np.array([20.0, 25.0, 40.0]))
    index = np.indices(volume.shape).reshape(3, -1).T
    inside = np.linalg.norm(volume.index_to_world(index) - point, axis=1) <= 4.0
    volume.array.reshape(-1)[inside] = 2
    return volume, point


def test_a_turned_volume_moves_its_content_by_the_rotation_about_the_centre_in_world_space():
    volume, point = _ball_volume()
    centre = volume.index_to_world(np.array([40.0, 35.0, 30.0]))
    degrees = (10.0, -5.0, 30.0)
    out = turned(volume, degrees, centre, order=0, fill=0)
    expected = centre + Rotation.from_euler("xyz", degrees, degrees=True).as_matrix() @ (point - centre)
    found = out.index_to_world(np.argwhere(out.array == 2).mean(axis=0))
    assert np.linalg.norm(found - expected) < 0.3                            # mm, on 0.8-1.25 mm voxels
    assert set(np.unique(out.array)) == {0, 2}                               # nearest: labels stay labels
    assert abs(int((out.array == 2).sum()) - int((volume.array == 2).sum())) <= 0.1 * (volume.array == 2).sum()
    assert out.same_geometry(volume)


def test_turning_by_nothing_changes_nothing_and_a_ct_is_interpolated_with_the_fill_outside():
    volume, _ = _ball_volume()
    centre = volume.index_to_world(np.array([40.0, 35.0, 30.0]))
    assert np.array_equal(turned(volume, (0.0, 0.0, 0.0), centre, order=0, fill=0).array, volume.array)
    ct = volume.with_array(np.where(volume.array == 2, 1000.0, 40.0).astype(np.float32))
    out = turned(ct, (0.0, 0.0, 45.0), centre, order=1, fill=-1000.0)
    assert out.array.dtype == np.float32
    assert out.array[0, 0, 30] == -1000.0                    # a corner the turned field does not reach
    assert 40.0 < out.array.max() <= 1000.0 and out.array[40, 35, 30] == 40.0


def test_a_noisier_scans_noise_is_drawn_apart_from_the_soft_tissues(tmp_path):
    # Both were drawn from one seed: where the scan keeps the source's grid and axes (real case 001),
    # the two draws were the same numbers and added up (soft tissue sd 12 + 25 = 37 HU instead of 27.7).
    shape, spacing = (60, 50, 40), np.array([1.0, 1.0, 1.0])
    ref = np.zeros(shape, dtype=np.uint8)
    ref[25:35, 20:30, 10:30] = 1
    write_volume_file(Volume(ref, spacing), tmp_path / "009_ref.nii.gz")
    write_volume_file(Volume(np.where(ref > 0, 400.0, 0.0).astype(np.float32), spacing), tmp_path / "009_ct.nii.gz")
    ct, _ = real_case(tmp_path, "009", "noisy")
    soft = ct.array[5:55, 22:28, :][(ref[5:55, 22:28, :] == 0) & (ct.array[5:55, 22:28, :] > -500)]
    expected = np.hypot(SOFT_TISSUE_SD_HU, SCANS["noisy"]["noise_sd_hu"])
    assert soft.size > 5000
    assert abs(soft.std() - expected) < 0.05 * expected


def test_a_thick_slice_scan_coarsens_the_head_to_foot_axis_wherever_it_is_stored():
    # A CT stored with its slices along the first array axis (direction columns: S, L, P) is coarsened
    # along that axis; the in-plane pixels are kept. The reference lands on the scan's grid, and the
    # ball keeps its volume (a label where it covers more than half of the thick voxel).
    volume, _ = _ball_volume()
    rotated = Volume(volume.array, volume.spacing, volume.origin,
                     np.array([[0.0, 1.0, 0.0], [0.0, 0.0, 1.0], [1.0, 0.0, 0.0]]))
    assert scan_spacing(rotated, slice_mm=3.0).tolist() == [3.0, 0.8, 1.25]
    assert scan_spacing(volume, slice_mm=3.0).tolist() == [0.8, 0.8, 3.0]
    assert scan_spacing(volume, spacing_mm=2.0, slice_mm=3.0).tolist() == [2.0, 2.0, 2.0]
    assert scan_spacing(volume) is None
    thick = reference_on(rotated, scan_spacing(rotated, slice_mm=3.0))
    assert thick.spacing.tolist() == [3.0, 0.8, 1.25] and thick.shape[1:] == volume.shape[1:]
    ball_ml = (volume.array == 2).sum() * volume.voxel_volume_ml                      # 4 mm ball: 0.27 ml
    assert abs((thick.array == 2).sum() * thick.voxel_volume_ml - ball_ml) < 0.25 * ball_ml
