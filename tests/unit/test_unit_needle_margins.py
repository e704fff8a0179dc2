"""Needle gauges (trajplan.needle) and the margins / weights table (trajplan.margins)."""

from __future__ import annotations

import pytest

from trajplan.errors import InputError
from trajplan.needle import diameter_mm, radius_mm
from trajplan.planning.defaults import (
    CRITICAL_STRUCTURES,
    DEFAULT_MARGINS_MM,
    WEIGHTS,
    margin_class,
    min_clearance_by_class,
    resolve_margins,
    resolve_weights,
)


def test_gauges_give_their_outer_diameter_and_radius():
    assert diameter_mm(11) == 3.05 and radius_mm(11) == pytest.approx(1.525)
    assert diameter_mm(13) == 2.41 and radius_mm("13") == pytest.approx(1.205)
    for bad in (12, 8, "eleven", None):
        with pytest.raises(InputError, match="unknown needle gauge"):
            diameter_mm(bad)


def test_margin_classes_cover_every_critical_structure():
    assert margin_class("foramen_S2_left") == "foramen" and margin_class("si_joint_right") == "si_joint"
    assert margin_class("L5_S1_disc") == "L5_S1_disc" and margin_class("ilium_left") == "ilium"
    with pytest.raises(KeyError):
        margin_class("presacral_vessels")
    defaults = resolve_margins()
    assert set(defaults) == set(CRITICAL_STRUCTURES)
    assert all(defaults[s] == DEFAULT_MARGINS_MM[margin_class(s)] for s in CRITICAL_STRUCTURES)
    assert defaults["canal"] == 3.0 and defaults["foramen_S4_right"] == 3.0 and defaults["anterior_cortex"] == 2.0


def test_a_structure_override_beats_its_class_override():
    margins = resolve_margins({"foramen": 4.5, "foramen_S1_left": 1.0, "canal": 0})
    assert margins["foramen_S1_left"] == 1.0
    assert all(margins[f"foramen_{lv}_{sd}"] == 4.5 for lv in ("S1", "S2", "S3", "S4") for sd in ("left", "right")
               if (lv, sd) != ("S1", "left"))
    assert margins["canal"] == 0.0 and margins["si_joint_left"] == 2.0


@pytest.mark.parametrize("overrides, word", [
    ({"nerve": 3}, "unknown margin"), ({"canal": -0.1}, "outside 0..30"), ({"foramen": 31}, "outside 0..30"),
])
def test_bad_margins_are_refused(overrides, word):
    with pytest.raises(InputError, match=word):
        resolve_margins(overrides)


def test_min_clearance_by_class_takes_the_smallest_over_needles_and_structures():
    got = min_clearance_by_class([
        {"canal": 5.123, "foramen_S1_left": 4.0, "foramen_S2_left": 3.456},
        {"canal": 7.0, "foramen_S3_right": 6.0, "ilium_left": None},
    ])
    assert got == {"canal": 5.12, "foramen": 3.46, "anterior_cortex": None, "si_joint": None,
                   "ilium": None, "L5_S1_disc": None}


def test_weights_take_overrides_and_refuse_nonsense():
    assert resolve_weights() == WEIGHTS
    assert resolve_weights({"cement": 0.0, "robustness": 2})["robustness"] == 2.0
    with pytest.raises(InputError, match="unknown score weight"):
        resolve_weights({"speed": 1})
    with pytest.raises(InputError, match="must not be negative"):
        resolve_weights({"target": -1})
    with pytest.raises(InputError, match="sum to 0"):
        resolve_weights({"clearance": 0, "target": 0, "technique_fit": 0, "cement": 0})
