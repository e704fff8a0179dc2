"""Volume geometry: index <-> world round trips, flips, oblique directions, crop/pad/resample."""

from __future__ import annotations

import numpy as np
import pytest

from trajplan.errors import InputError
from trajplan.io.files import read_volume_file, write_volume_file
from trajplan.volume import Volume


def rotation(deg: float) -> np.ndarray:
    t = np.deg2rad(deg)
    return np.array([[np.cos(t), 0, np.sin(t)], [0, 1, 0], [-np.sin(t), 0, np.cos(t)]])


DIRECTIONS = {
    "identity": np.eye(3),
    "prone": np.diag([-1.0, -1.0, 1.0]),
    "one_flip": np.diag([1.0, 1.0, -1.0]),
    "oblique": rotation(20.0) @ np.diag([-1.0, 1.0, 1.0]),
    "permuted": np.array([[0.0, 0, 1], [1, 0, 0], [0, 1, 0]]),
}


@pytest.fixture
def data():
    return np.random.default_rng(0).normal(size=(6, 7, 8)).astype(np.float32)


@pytest.mark.parametrize("name", DIRECTIONS)
def test_index_world_round_trip(name, data):
    vol = Volume(data, (0.7, 0.9, 2.5), (10.0, -20.0, 30.0), DIRECTIONS[name])
    ijk = np.random.default_rng(1).uniform(0, 5, size=(50, 3))
    assert np.allclose(vol.world_to_index(vol.index_to_world(ijk)), ijk)
    assert np.allclose(vol.index_to_world([0, 0, 0]), vol.origin)
    assert np.allclose(vol.affine[:3, :3] @ [1, 0, 0], DIRECTIONS[name][:, 0] * 0.7)


@pytest.mark.parametrize("name", DIRECTIONS)
def test_canonical_reorder_keeps_world_positions_and_undoes(name, data):
    vol = Volume(data, (0.7, 0.9, 2.5), (10.0, -20.0, 30.0), DIRECTIONS[name])
    canon, reorder = vol.to_canonical()
    assert np.all(np.diag(canon.direction) > 0.9)  # axes run L, P, S
    ijk = np.argwhere(np.ones(vol.shape, bool))
    world = vol.index_to_world(ijk)
    cidx = np.round(canon.world_to_index(world)).astype(int)
    assert np.allclose(canon.world_to_index(world), cidx, atol=1e-6)
    assert np.array_equal(canon.array[tuple(cidx.T)], vol.array[tuple(ijk.T)])
    back = reorder.undo(canon)
    assert back.same_geometry(vol) and np.array_equal(back.array, vol.array)


def test_volume_flipped_on_disk_has_the_same_world_coordinates(tmp_path, data):
    vol = Volume(data, (1.0, 1.5, 2.0), (5.0, 6.0, 7.0), np.eye(3))
    flipped = Volume(data[::-1, ::-1, :].copy(), vol.spacing,
                     vol.index_to_world([data.shape[0] - 1, data.shape[1] - 1, 0]), np.diag([-1.0, -1.0, 1.0]))
    write_volume_file(flipped, tmp_path / "flipped.nii.gz")
    read = read_volume_file(tmp_path / "flipped.nii.gz")
    point = vol.index_to_world([2, 3, 4])
    idx = np.round(read.world_to_index(point)).astype(int)
    assert read.array[tuple(idx)] == vol.array[2, 3, 4]
    assert np.allclose(read.index_to_world(idx), point, atol=1e-4)


def test_crop_pad_resample_keep_physical_positions(data):
    vol = Volume(data, (1.0, 1.0, 2.0), (0.0, 0.0, 0.0), DIRECTIONS["oblique"])
    crop = vol.crop((1, 2, 3), (5, 6, 7))
    assert np.allclose(crop.index_to_world([0, 0, 0]), vol.index_to_world([1, 2, 3]))
    assert crop.array[0, 0, 0] == vol.array[1, 2, 3]
    pad = vol.pad(2)
    assert np.allclose(pad.index_to_world([2, 2, 2]), vol.origin) and pad.array[2, 2, 2] == vol.array[0, 0, 0]
    fine = vol.resample((0.5, 0.5, 1.0))
    assert np.allclose(fine.world_bounds()[0], vol.world_bounds()[0], atol=1e-3)
    assert np.allclose(fine.world_bounds()[1], vol.world_bounds()[1], atol=1e-3)
    # linear resampling at the original voxel centres returns the original values
    assert np.isclose(fine.array[2, 4, 6], vol.array[1, 2, 3], atol=1e-4)
    labels = Volume(np.arange(27, dtype=np.uint8).reshape(3, 3, 3), (2.0, 2.0, 2.0))
    assert labels.resample((1.0, 1.0, 1.0), interpolator="nearest").array.dtype == np.uint8


def test_values_at_world_points_are_the_nearest_voxels_and_outside_the_array_the_fill(data):
    vol = Volume(data, (1.0, 1.0, 2.0), (5.0, -3.0, 1.0), DIRECTIONS["oblique"])
    inside = vol.index_to_world(np.array([[1, 2, 3], [0, 0, 0]]) + 0.3)    # nearest: (1, 2, 3) and (0, 0, 0)
    outside = vol.index_to_world(np.array([[-1, 0, 0], [0, 0, vol.shape[2]]]))
    values = vol.values_at(np.vstack([inside, outside]), outside=-7)
    assert values.dtype == vol.array.dtype
    assert values.tolist() == [vol.array[1, 2, 3], vol.array[0, 0, 0], -7, -7]
    assert vol.values_at(inside[0]).tolist() == [vol.array[1, 2, 3]]     # one point


@pytest.mark.parametrize("kwargs, word", [
    ({"spacing": (0.0, 1, 1)}, "spacing"), ({"spacing": (-1.0, 1, 1)}, "spacing"),
    ({"spacing": (11.0, 1, 1)}, "spacing"), ({"direction": np.ones((3, 3))}, "direction"),
    ({"origin": (np.nan, 0, 0)}, "origin"),
])
def test_absurd_geometry_is_refused(kwargs, word):
    args = {"array": np.zeros((4, 4, 4)), "spacing": (1.0, 1.0, 1.0), **kwargs}
    with pytest.raises(InputError, match=word):
        Volume(**args)
    with pytest.raises(InputError, match="3-D"):
        Volume(np.zeros((4, 4)), (1.0, 1.0, 1.0))
