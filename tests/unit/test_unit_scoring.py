"""Exact clearances and verdicts of one path (trajplan.scoring.measure_path) beside a canal one voxel thin.

A needle parallel to the canal whose axis runs ``d`` mm from the canal's voxel centres keeps, by
the planner's conservative rule, ``d - radius - half the voxel diagonal - half the 0.5 mm axis step``
from it: for ``d = 8`` mm, 1 mm voxels and an 11 G needle (radius 1.525 mm),
8 - 1.525 - 0.866 - 0.25 = 5.36 mm.
"""

from __future__ import annotations

import numpy as np
import pytest

from trajplan.labels import Side
from trajplan.needle import Technique, needle_json
from trajplan.planning.candidates import find_landmarks
from trajplan.planning.defaults import resolve_margins
from trajplan.planning.distance import build_distance_maps
from trajplan.planning.scoring import measure_path
from trajplan.planning.verify import distance_to_structure, needle_surface_points

HALF_DIAGONAL = np.sqrt(3) / 2


def measure(canal_line, entry, tip, *, gauge=11, margins=None):
    maps = build_distance_maps(canal_line, resolve_margins(margins))
    return needle_json(measure_path(maps, find_landmarks(maps), np.asarray(entry, float), np.asarray(tip, float),
                                    technique=Technique.LONG_AXIS, side=Side.LEFT, gauge=gauge))


def test_clearance_to_the_canal_is_the_axis_distance_less_radius_half_voxel_and_half_step(canal_line):
    entry, tip = [8.0, 0.0, 10.0], [8.0, 0.0, 50.0]
    needle = measure(canal_line, entry, tip)
    assert needle["clearance_mm"] == {"canal": round(8 - 1.525 - HALF_DIAGONAL - 0.25, 2)} == {"canal": 5.36}
    assert measure(canal_line, entry, tip, gauge=13)["clearance_mm"] == {"canal": 5.68}   # radius 1.205 mm
    # the true gap between the needle's surface and the canal's voxel cubes is 8 - 0.5 - 1.525 mm: never less
    surface = needle_surface_points(entry, tip, 1.525)
    assert distance_to_structure(surface, canal_line, "canal") == pytest.approx(5.975, abs=0.01)
    assert needle["metrics"]["length_mm"] == 40.0 and needle["metrics"]["length_in_bone_mm"] == 40.0
    assert needle["metrics"]["length_outside_bone_mm"] == 0.0
    assert needle["safe"] and needle["verdict"] == "safe" and needle["reasons"] == []     # 2.36 mm above 3 mm


def test_verdict_follows_the_margin_unsafe_below_marginal_within_one_mm_above(canal_line):
    entry, tip = [8.0, 0.0, 10.0], [8.0, 0.0, 50.0]
    tight = measure(canal_line, entry, tip, margins={"canal": 6.0})                     # 5.36 < 6
    assert not tight["safe"] and tight["verdict"] == "unsafe" and tight["reasons"] == ["canal"]
    close = measure(canal_line, entry, tip, margins={"canal": 5.0})                     # 0.36 above
    assert close["safe"] and close["verdict"] == "marginal"
    through = measure(canal_line, [0.0, 0.0, 10.0], [0.0, 0.0, 50.0])
    assert through["clearance_mm"]["canal"] < 0 and "canal" in through["reasons"]


def test_a_tip_beyond_the_bone_is_unsafe(canal_line):
    needle = measure(canal_line, [8.0, 0.0, 30.0], [8.0, 0.0, 64.0])      # bone ends at z = 60
    assert not needle["safe"] and "tip_outside_bone" in needle["reasons"] and "outside_bone" in needle["reasons"]
    assert needle["metrics"]["length_outside_bone_mm"] == pytest.approx(4.0, abs=0.5)


@pytest.mark.parametrize(("inside_mm", "depth_mm"), [(0.5, -0.53), (1.5, 0.47), (3.0, 1.97)])
def test_a_shaft_laid_under_the_bone_surface_runs_out_through_it(canal_line, inside_mm, depth_mm):
    # The bone's face at y = 20 (its last voxel centres; the cube's face at 20.5); the needle enters at
    # z = 0 and runs up along it with its axis ``inside_mm`` inside those centres, so its outer surface
    # lies inside_mm + 0.5 - 1.525 mm below the face: out through it when that is negative.
    y = 20.0 - inside_mm
    needle = measure(canal_line, [8.0, y, 0.0], [8.0, y, 40.0])
    assert needle["metrics"]["shaft_depth_mm"] == pytest.approx(depth_mm, abs=0.02)
    assert needle["metrics"]["length_outside_bone_mm"] == 0.0          # the axis itself is in bone throughout
    assert ("shaft_outside_bone" in needle["reasons"]) == (depth_mm < 0) and needle["safe"] == (depth_mm >= 0)


def test_the_shaft_may_cross_the_surface_at_its_entry(canal_line):
    # A needle entering the face at z = 0 and heading straight in: within SHAFT_ENTRY_MM of its entry the
    # shaft is half out; past it, it is deep in the bone.
    needle = measure(canal_line, [8.0, 8.0, 0.0], [8.0, 8.0, 30.0])
    assert needle["metrics"]["shaft_depth_mm"] == pytest.approx(3.0 + 1.0 - 0.5 - 1.525, abs=0.02)
    assert needle["safe"]
    short = measure(canal_line, [8.0, 8.0, 0.0], [8.0, 8.0, 2.0])      # no shaft past the entry zone
    assert short["metrics"]["shaft_depth_mm"] is None


def test_an_unlabelled_pocket_walled_in_by_bone_is_not_the_bone_surface(canal_line):
    # Marrow left unlabelled inside the bone (a pocket whose voxel centres lie 2 mm from the axis) is not
    # the outer surface: the shaft is measured to the soft tissue outside, 12.5 mm away.
    inside = canal_line.array.copy()
    lo = np.rint(canal_line.world_to_index(np.array([10.0, 7.0, 20.0]))).astype(int)
    hi = np.rint(canal_line.world_to_index(np.array([12.0, 9.0, 25.0]))).astype(int)
    inside[lo[0]:hi[0] + 1, lo[1]:hi[1] + 1, lo[2]:hi[2] + 1] = 0
    needle = measure(canal_line.with_array(inside), [8.0, 8.0, 0.0], [8.0, 8.0, 40.0])
    assert needle["metrics"]["shaft_depth_mm"] == pytest.approx(3.0 + 1.0 - 0.5 - 1.525, abs=0.02)  # at z = 3
    assert needle["safe"]
