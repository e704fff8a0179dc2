"""Distance maps (trajplan.distance) on hand-built masks and the mini sacrum: distances, caps, the
crop, the slack map and the KD-trees, each against a value worked out by hand."""

from __future__ import annotations

import numpy as np
import pytest

from trajplan.planning.defaults import CLEARANCE_CAP_MM, CRITICAL_STRUCTURES, resolve_margins
from trajplan.planning.distance import CROP_PAD_MM, build_distance_maps, sacral_crop, structure_distance


def test_structure_distance_is_the_euclidean_distance_in_mm_with_anisotropic_voxels():
    mask = np.zeros((12, 12, 12), dtype=bool)
    mask[5, 5, 5] = True
    dist = structure_distance(mask, np.array([1.0, 2.0, 3.0]), cap_mm=10.0)
    assert dist[5, 5, 5] == 0.0
    assert dist[9, 5, 5] == pytest.approx(4.0)             # 4 voxels of 1 mm along i
    assert dist[5, 7, 5] == pytest.approx(4.0)             # 2 voxels of 2 mm along j
    assert dist[5, 5, 7] == pytest.approx(6.0)             # 2 voxels of 3 mm along k
    assert dist[6, 6, 6] == pytest.approx(np.sqrt(1 + 4 + 9))
    assert dist[5, 5, 9] == pytest.approx(10.0)            # 12 mm, capped at 10
    assert dist[0, 0, 0] == pytest.approx(min(np.sqrt(25 + 100 + 225), 10.0))
    assert dist.max() == pytest.approx(10.0)


def test_structure_distance_of_an_empty_mask_is_the_cap_everywhere_and_far_voxels_get_the_cap():
    assert np.all(structure_distance(np.zeros((4, 5, 6), bool), np.ones(3), cap_mm=7.0) == 7.0)
    mask = np.zeros((80, 3, 3), dtype=bool)
    mask[0] = True
    dist = structure_distance(mask, np.ones(3), cap_mm=5.0)   # computed only in a box 6 voxels wide
    assert np.allclose(dist[:6, 1, 1], [0, 1, 2, 3, 4, 5]) and np.all(dist[6:] == 5.0)


def test_sacral_crop_is_the_bone_box_plus_the_pad_clipped_to_the_map(mini_sacrum):
    crop = sacral_crop(mini_sacrum, pad_mm=4.0)
    lo, hi = crop.world_bounds()
    assert np.allclose(lo, [-29, -14, -4]) and np.allclose(hi, [29, 14, 54])   # bone -25..25, -10..10, 0..50
    whole = sacral_crop(mini_sacrum)                    # 40 mm reach past every edge of the 10 mm margin
    assert CROP_PAD_MM > 10 and whole.shape == mini_sacrum.shape
    assert np.array_equal(whole.array, mini_sacrum.array)


def test_slack_is_the_smallest_distance_minus_margin_over_the_structures(mini_sacrum):
    maps = build_distance_maps(mini_sacrum, resolve_margins())
    assert set(maps.distance) == set(CRITICAL_STRUCTURES)
    point = np.rint(maps.labels.world_to_index([20.0, 0.0, 25.0])).astype(int)
    here = {s: float(maps.distance[s][tuple(point)]) for s in CRITICAL_STRUCTURES}
    # (20, 0, 25) in the left ala: the S3 foramen box (x 11..14, z 21..23) is nearest at (14, 0, 23),
    # the S2 one at (14, 0, 31), the canal (x -3..3, y 2..6) at (3, 2, 25), the cortex at (20, -9, 25).
    assert here["foramen_S3_left"] == pytest.approx(np.sqrt(6 ** 2 + 2 ** 2), abs=1e-5)
    assert here["foramen_S2_left"] == pytest.approx(np.sqrt(6 ** 2 + 6 ** 2), abs=1e-5)
    assert here["canal"] == pytest.approx(np.sqrt(17 ** 2 + 2 ** 2), abs=1e-5)
    assert here["anterior_cortex"] == pytest.approx(9.0)
    assert here["si_joint_left"] == here["L5_S1_disc"] == CLEARANCE_CAP_MM          # absent structures
    assert maps.slack[tuple(point)] == pytest.approx(np.sqrt(40.0) - 3.0, abs=1e-5)  # foramen margin 3 mm
    wider = build_distance_maps(mini_sacrum, resolve_margins({"anterior_cortex": 7.0}))
    assert wider.slack[tuple(point)] == pytest.approx(9.0 - 7.0)                     # now the cortex binds


def test_bone_mask_half_voxel_trees_and_gather(mini_sacrum):
    maps = build_distance_maps(mini_sacrum, resolve_margins())
    at = np.rint(maps.labels.world_to_index(np.array([[0, 0, 25], [0, 4, 25], [12, 0, 32], [20, 9, 30],
                                                      [0, -10, 25], [30, 0, 25]]))).astype(int)
    # sacrum, canal, S2 foramen, left ala (beyond the fracture's y), anterior cortex, soft tissue
    assert maps.bone[tuple(at.T)].tolist() == [True, False, False, True, True, False]
    assert maps.half_voxel_mm == pytest.approx(np.sqrt(3) / 2)
    assert maps.tree("si_joint_left") is None                          # not labelled
    distance, _ = maps.tree("canal").query([10.0, 4.0, 25.0])
    assert distance == pytest.approx(7.0)                               # to the canal voxel at x = 3
    # gather takes the nearest voxel and clamps indices beyond the map to its edge
    values = np.arange(24, dtype=float).reshape(2, 3, 4)
    got = maps.gather(values, np.array([[0.4, 1.6, 2.5001], [9.0, -9.0, 99.0]]))
    assert got.tolist() == [values[0, 2, 3], values[1, 0, 3]]
