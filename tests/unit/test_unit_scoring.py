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
