"""Candidate paths (trajplan.candidates) on the mini sacrum of ``unit_maps``: landmarks where the boxes
put them, targets on the fracture / lesion / ala of the side asked for, entries on that side's dorsal
ala surface and tips inside the target."""

from __future__ import annotations

import numpy as np
import pytest
from unit_maps import LEVEL_Z, build_mini_sacrum, label_at

from trajplan import labels as lt
from trajplan.errors import InputError
from trajplan.labels import Side
from trajplan.needle import Technique, radius_mm
from trajplan.planning.candidates import candidate_pairs, find_landmarks, find_targets
from trajplan.planning.defaults import resolve_margins
from trajplan.planning.distance import build_distance_maps

RADIUS = radius_mm(11)


@pytest.fixture(scope="module")
def prepared(mini_sacrum):
    maps = build_distance_maps(mini_sacrum, resolve_margins())
    return maps, find_landmarks(maps)


def _world_index(maps, point) -> tuple[int, int, int]:
    return tuple(np.rint(maps.labels.world_to_index(np.asarray(point, float))).astype(int))


def test_landmarks_midline_levels_and_long_axis(prepared):
    maps, marks = prepared
    assert marks.midline_x == pytest.approx(0.0)                 # canal centred on x = 0
    assert marks.level_z == pytest.approx(LEVEL_Z)               # foramen pair centroids
    assert np.allclose(marks.axis, [0.0, 0.0, 1.0])              # S4 -> S1 straight up
    assert marks.side_of(np.array([5.0, -5.0])).tolist() == [1.0, -1.0]
    # depth: (20, 0, 25) is 6 mm inside the lateral face (x = 25 is the last bone voxel, 26 is soft)
    assert marks.depth_mm[_world_index(maps, [20, 0, 25])] == pytest.approx(6.0)
    # (0, 0, 25) is 2 mm from the canal (y = 2), which is not bone
    assert marks.depth_mm[_world_index(maps, [0, 0, 25])] == pytest.approx(2.0)


def test_entry_surface_is_the_dorsal_bone_surface_with_inward_normals_pointing_anterior(prepared):
    maps, marks = prepared
    crop = maps.labels
    idx = marks.surface_index
    assert np.all(maps.bone[tuple(idx.T)])
    assert np.all(marks.inward_normal[1] < -0.3)                         # inward = anterior (-y)
    assert np.allclose(np.linalg.norm(marks.inward_normal, axis=0), 1.0, atol=1e-5)
    world = crop.index_to_world(idx)
    assert not np.any(world[:, 1] < 0)                                  # nothing on the anterior half
    # every voxel of the flat middle of the dorsal face (y = 10) of each ala is an entry voxel
    on_face = {tuple(p) for p in np.rint(world[world[:, 1] == 10.0]).astype(int).tolist()}
    for x in (17, 20, -20):
        for z in (5, 27, 37, 47):
            assert (x, 10, z) in on_face, (x, z)
    # and its normal there is straight anterior
    k = np.flatnonzero(np.all(np.isclose(world, [20, 10, 27]), axis=1))[0]
    assert np.allclose(marks.inward_normal[:, k], [0.0, -1.0, 0.0], atol=0.02)


def test_targets_are_the_fracture_of_its_side_else_the_deep_upper_ala(prepared):
    maps, marks = prepared
    left = find_targets(maps, marks, Side.LEFT)
    fracture = maps.labels.index_to_world(np.argwhere(lt.mask(maps.labels, "fracture")))
    assert left.kind == "fracture" and left.centre is None
    assert len(left.points) == len(fracture) == 2 * 17 * 26
    assert np.all(label_at(maps.labels, left.points) == lt.value("fracture"))
    right = find_targets(maps, marks, Side.RIGHT)                   # no fracture on the right
    assert right.kind == "ala"
    assert np.all(label_at(maps.labels, right.points) == lt.value("ala_right"))
    assert right.points[:, 2].min() == pytest.approx(LEVEL_Z["S2"] - 5.0)
    depth = marks.depth_mm[tuple(np.rint(maps.labels.world_to_index(right.points)).astype(int).T)]
    assert depth.min() >= 4.0


def test_lesion_target_and_lesion_outside_the_bone():
    maps = build_distance_maps(build_mini_sacrum(fracture=False, lesion=Side.RIGHT), resolve_margins())
    marks = find_landmarks(maps)
    right = find_targets(maps, marks, Side.RIGHT)
    assert right.kind == "lesion" and np.allclose(right.centre, [-18.0, 0.0, 30.0])
    assert len(right.points) == 5 ** 3
    assert find_targets(maps, marks, Side.LEFT).kind == "ala"       # 18 mm right of the midline: not the left's
    outside = build_distance_maps(build_mini_sacrum(fracture=False, lesion="outside"), resolve_margins())
    assert find_targets(outside, find_landmarks(outside), Side.LEFT).kind == "ala"     # outside the bone: no target


def test_short_axis_candidates_enter_the_dorsal_ala_of_their_side_and_end_in_the_fracture(prepared):
    maps, marks = prepared
    targets = find_targets(maps, marks, Side.LEFT)
    entries, tips, normals = candidate_pairs(maps, marks, targets, Technique.SHORT_AXIS, Side.LEFT, radius_mm=RADIUS)
    assert len(entries) == len(tips) == len(normals) > 1000
    assert set(label_at(maps.labels, entries).tolist()) <= {lt.value("ala_left"), lt.value("fracture")}
    assert np.all(entries[:, 0] > 0) and np.all(entries[:, 1] >= 0)              # left, dorsal half
    assert np.all(label_at(maps.labels, tips) == lt.value("fracture"))            # every tip in the target
    target_set = {tuple(p) for p in np.round(targets.points, 6).tolist()}
    assert all(tuple(p) in target_set for p in np.round(tips, 6).tolist())
    assert np.all(normals[:, 1] < -0.3)
    # without a fracture or lesion (the right side) the entries stay at or above S3 and the tips in the ala
    right = find_targets(maps, marks, Side.RIGHT)
    entries, tips, _ = candidate_pairs(maps, marks, right, Technique.SHORT_AXIS, Side.RIGHT, radius_mm=RADIUS)
    assert entries[:, 2].min() == pytest.approx(LEVEL_Z["S3"]) and np.all(entries[:, 0] < 0)
    assert np.all(label_at(maps.labels, tips) == lt.value("ala_right"))


def test_long_axis_candidates_enter_low_and_end_deep_in_the_upper_ala(prepared):
    maps, marks = prepared
    targets = find_targets(maps, marks, Side.RIGHT)
    entries, tips, _ = candidate_pairs(maps, marks, targets, Technique.LONG_AXIS, Side.RIGHT, radius_mm=RADIUS)
    assert len(entries) > 100
    low, high = LEVEL_Z["S4"] - 10.0, (LEVEL_Z["S3"] + LEVEL_Z["S4"]) / 2
    assert entries[:, 2].min() >= low and entries[:, 2].max() <= high                # entries at S4
    assert np.all(label_at(maps.labels, entries) == lt.value("ala_right")) and np.all(entries[:, 0] < 0)
    assert np.all(tips[:, 2] >= LEVEL_Z["S1"] - 8.0) and np.all(tips[:, 0] < 0)       # tips at S1, right
    assert np.all(label_at(maps.labels, tips) == lt.value("ala_right"))
    index = np.rint(maps.labels.world_to_index(tips)).astype(int)
    assert marks.depth_mm[tuple(index.T)].min() >= RADIUS + 2.0
    assert maps.slack[tuple(index.T)].min() >= RADIUS + 1.0                            # clear of the foramina


def test_a_side_without_ala_or_an_unknown_technique_is_refused(prepared, mini_sacrum):
    maps, marks = prepared
    targets = find_targets(maps, marks, Side.LEFT)
    with pytest.raises(InputError, match="unknown technique"):
        candidate_pairs(maps, marks, targets, "oblique", Side.LEFT, radius_mm=RADIUS)
    array = mini_sacrum.array.copy()
    array[array == lt.value("ala_right")] = lt.value("sacrum")
    no_right = build_distance_maps(mini_sacrum.with_array(array), resolve_margins())
    no_right_marks = find_landmarks(no_right)
    with pytest.raises(InputError, match="no ala on the right"):
        find_targets(no_right, no_right_marks, Side.RIGHT)
    with pytest.raises(InputError, match="no ala on the right"):
        candidate_pairs(no_right, no_right_marks, targets, Technique.SHORT_AXIS, Side.RIGHT, radius_mm=RADIUS)
