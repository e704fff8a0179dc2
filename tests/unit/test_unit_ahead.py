"""What lies ahead of a needle's tip (trajplan.planning.ahead), alone and in a measured path on the
mini sacrum of :mod:`unit_maps` (1 mm voxels, the left ala ``8 < x <= 25``, its anterior cortex at
``y in {-10, -9}``, soft tissue beyond)."""

from __future__ import annotations

import numpy as np
import pytest
from unit_maps import paint

from trajplan import labels as lt
from trajplan.labels import Side
from trajplan.needle import Technique, needle_json
from trajplan.planning.ahead import read_ahead
from trajplan.planning.candidates import find_landmarks
from trajplan.planning.defaults import resolve_margins
from trajplan.planning.distance import build_distance_maps
from trajplan.planning.scoring import measure_path


def samples(*runs: tuple[str | None, float]) -> np.ndarray:
    """Labels every 0.5 mm past a tip: (label name or None for soft tissue, mm) runs, then soft tissue."""
    out = [0 if name is None else lt.value(name) for name, mm in runs for _ in range(int(mm / 0.5))]
    return np.array(out + [0] * (60 - len(out)), dtype=np.uint8)[:60]


@pytest.mark.parametrize("runs, bone_ahead, reason", [
    ([("ala_left", 8.0), ("anterior_cortex", 1.5)], 9.5, None),                  # out through the cortex
    ([("ala_left", 6.0), ("si_joint_left", 2.0), ("ilium_left", 10.0)], 6.0, "si_joint_ahead"),
    ([("ala_left", 4.0), ("ilium_left", 10.0)], 4.0, "si_joint_ahead"),         # the ilium with no joint between
    ([("ala_left", 5.0), (None, 6.0), ("ala_left", 3.0)], 5.0, "gap_ahead"),     # a gap, then 3 mm of ala
    ([("ala_left", 5.0), (None, 19.5), ("sacrum", 5.0)], 5.0, "gap_ahead"),      # bone again 19.5 mm on
    ([("ala_left", 5.0), (None, 6.0), ("ala_left", 2.5)], 5.0, None),            # 2.5 mm: the cortex's edge
    ([("ala_left", 3.0), (None, 21.0), ("sacrum", 6.0)], 3.0, None),             # too far on to be the gap
    ([("ala_left", 5.0), ("foramen_S2_left", 3.0), ("ala_left", 5.0)], 5.0, None),   # a named lumen: clearances
    ([("ala_left", 40.0)], 30.0, None),                                          # bone as far as it looks
])
def test_what_lies_ahead_of_the_tip(runs, bone_ahead, reason):
    assert read_ahead(samples(*runs)) == (bone_ahead, reason)


def measure(labels, entry, tip):
    maps = build_distance_maps(labels, resolve_margins(None))
    return needle_json(measure_path(maps, find_landmarks(maps), np.asarray(entry, float), np.asarray(tip, float),
                                    technique=Technique.SHORT_AXIS, side=Side.LEFT, gauge=11))


def test_a_needle_aimed_at_the_anterior_cortex_has_the_bone_ahead_measured(mini_sacrum):
    needle = measure(mini_sacrum, [22.0, 10.0, 46.0], [22.0, 0.0, 46.0])
    assert needle["metrics"]["bone_ahead_mm"] == 10.5           # 9.5 mm of ala, the cortex to y = -10.5
    assert not {"si_joint_ahead", "gap_ahead"} & set(needle["reasons"])


def test_a_needle_aimed_at_the_si_joint_through_the_bone_is_unsafe(mini_sacrum):
    labels = mini_sacrum.with_array(mini_sacrum.array.copy())
    paint(labels, "si_joint_left", (26, -10, 0), (27, 10, 50))
    paint(labels, "ilium_left", (28, -10, 0), (34, 10, 50))
    aimed = measure(labels, [16.0, 10.0, 46.0], [21.0, 4.0, 46.0])      # on, it meets the joint at x = 26
    assert "si_joint_ahead" in aimed["reasons"] and not aimed["safe"]
    assert aimed["metrics"]["bone_ahead_mm"] == pytest.approx(6.5, abs=0.5)
    straight = measure(labels, [21.0, 10.0, 46.0], [21.0, 0.0, 46.0])  # the same tip region, aimed forward
    assert "si_joint_ahead" not in straight["reasons"]


def test_a_needle_whose_bone_is_cut_off_from_the_sacrum_ahead_is_unsafe(mini_sacrum):
    # a plate of "ala" behind a 4 mm gap: the way an ilium labelled ala lies behind the joint
    labels = mini_sacrum.with_array(mini_sacrum.array.copy())
    a, b = np.rint(labels.world_to_index(np.array([[9.0, -1.0, 0.0], [25.0, 2.0, 50.0]]))).astype(int)
    labels.array[a[0]:b[0] + 1, a[1]:b[1] + 1, a[2]:b[2] + 1] = 0
    cut_off = measure(labels, [22.0, 10.0, 46.0], [22.0, 4.0, 46.0])
    assert "gap_ahead" in cut_off["reasons"] and not cut_off["safe"]
    assert cut_off["metrics"]["bone_ahead_mm"] == 1.0                 # y = 3 and 2.5 in bone, soft from y = 2
