"""Needle-set selection (trajplan.planning): separation, coverage and verdicts on hand-made needles.

Every needle here is a short-axis needle running straight anterior (-y) from ``y = 40`` to its tip
at ``(x, 0, z)``, 30 mm of it in bone: its cement segment is the last 15 mm and it covers the
target points within 8 mm of that segment. Two such needles at ``x = a`` and ``x = b`` are
``|a - b|`` mm apart.
"""

from __future__ import annotations

import numpy as np
import pytest

from trajplan.candidates import Targets
from trajplan.planning import (
    CandidatePool,
    TargetPoints,
    _segment_distance,
    best_plan,
    choose_needles,
    plan_summary,
)

# target: 41 points 1 mm apart along x, at y = 0, z = 20
LINE = np.column_stack([np.arange(-20.0, 21.0), np.zeros(41), np.full(41, 20.0)])


def needle(x: float, *, z: float = 20.0, technique: str = "short_axis", side: str = "left",
           rank_value: float = 0.5, verdict: str = "safe", cement: float = 2.0) -> dict:
    """A measured needle as the planner's pool holds it (only the keys selection reads)."""
    return {"technique": technique, "side": side, "entry_lps": [x, 40.0, z], "tip_lps": [x, 0.0, z],
            "safe": verdict != "unsafe", "verdict": verdict, "rank_value": rank_value, "score": rank_value,
            "metrics": {"length_in_bone_mm": 30.0, "cement_volume_ml": cement},
            "clearance_mm": {"canal": 4.0 + x / 100}, "breach_probability": {"any": 0.01}}


def targets(points=LINE) -> TargetPoints:
    return TargetPoints.from_sides({"left": Targets("fracture", np.asarray(points, float), None)})


def axis_separation(a: dict, b: dict) -> float:
    """Distance between two of these parallel needles (their axes differ only in x and z)."""
    return float(np.hypot(a["tip_lps"][0] - b["tip_lps"][0], a["tip_lps"][2] - b["tip_lps"][2]))


def test_segment_distance_parallel_crossing_and_skew():
    a0, a1 = np.array([0.0, 40, 20]), np.array([0.0, 0, 20])
    assert _segment_distance(a0, a1, a0 + [4, 0, 0], a1 + [4, 0, 0]) == pytest.approx(4.0)
    assert _segment_distance(a0, a1, np.array([-10.0, 20, 20]), np.array([10.0, 20, 20])) == pytest.approx(0.0)
    assert _segment_distance(a0, a1, np.array([-10.0, 20, 25]), np.array([10.0, 20, 25])) == pytest.approx(5.0)
    # end to end: from the tip (0, 0, 20) to (3, -4, 20)
    assert _segment_distance(a0, a1, np.array([3.0, -4, 20]), np.array([30.0, -40, 20])) == pytest.approx(5.0)


def test_selection_keeps_needles_at_least_the_separation_apart():
    pool = [needle(x, rank_value=0.5 + x / 1000) for x in (-12.0, -10.0, -4.0, 0.0, 3.0, 10.0, 12.0)]
    for separation in (0.0, 5.0, 10.0, 15.0):
        plan = best_plan(pool, 5, targets(), separation)
        assert plan, separation
        for i, a in enumerate(plan):
            for b in plan[i + 1:]:
                assert axis_separation(a, b) >= separation, (separation, a["tip_lps"], b["tip_lps"])
        assert [n["rank"] for n in plan] == list(range(1, len(plan) + 1))
    assert len(best_plan(pool, 5, targets(), 0.0)) == 5
    # greedy, 15 mm: all cover 17 points, so the best ranked (x = 12) first; then the most new coverage
    # (x = -12 and -10 both add 17), the better ranked; then nothing is 15 mm from both
    assert [n["tip_lps"][0] for n in best_plan(pool, 5, targets(), 15.0)] == [12.0, -10.0]


def test_two_needles_closer_than_the_separation_give_one():
    pool = [needle(0.0), needle(4.0)]
    assert len(best_plan(pool, 2, targets(), 10.0)) == 1
    assert len(best_plan(pool, 2, targets(), 4.0)) == 2               # exactly the separation apart is allowed
    assert len(best_plan(pool, 2, targets(), 4.5)) == 1


def test_coverage_by_hand_and_the_needle_that_covers_more_is_taken():
    one = best_plan([needle(0.0)], 1, targets(), 10.0)
    assert one[0]["target_coverage"] == round(17 / 41, 4)            # x = -8..8 of -20..20
    edge = best_plan([needle(-20.0)], 1, targets(), 10.0)
    assert edge[0]["target_coverage"] == round(9 / 41, 4)            # x = -20..-12
    # a better-ranked needle off the target loses to one that covers it
    pool = [needle(40.0, rank_value=0.9), needle(15.0, rank_value=0.3)]
    assert best_plan(pool, 1, targets(), 10.0)[0]["tip_lps"][0] == 15.0
    summary = plan_summary(best_plan([needle(-12.0), needle(0.0), needle(12.0)], 3, targets(), 10.0), targets())
    assert summary["target_coverage"] == 1.0 and summary["needles"] == 3
    assert summary["cement_volume_ml"] == 6.0 and summary["min_clearance_mm"] == 3.88
    assert summary["max_breach_probability"] == 0.01


def test_length_coverage_counts_the_5_mm_bins_reached():
    column = np.column_stack([np.zeros(50), np.zeros(50), np.arange(0.0, 50.0)])       # z = 0..49: 10 bins
    plan = best_plan([needle(0.0, z=20.0)], 1, targets(column), 10.0)
    summary = plan_summary(plan, targets(column))
    assert summary["target_coverage"] == round(17 / 50, 4)            # z = 12..28
    assert summary["target_length_coverage"] == 0.4                    # bins 10-15, 15-20, 20-25, 25-30


def test_unsafe_needles_are_never_chosen_and_a_marginal_one_only_for_more_coverage():
    assert best_plan([needle(0.0, verdict="unsafe", rank_value=0.9)], 1, targets(), 10.0) == []
    pool = [needle(0.0, verdict="marginal", rank_value=0.9), needle(1.0, rank_value=0.3)]
    assert best_plan(pool, 1, targets(), 10.0)[0]["verdict"] == "safe"
    pool = [needle(0.0, verdict="marginal", rank_value=0.3), needle(60.0, rank_value=0.9)]   # the safe one: no target
    assert best_plan(pool, 1, targets(), 10.0)[0]["verdict"] == "safe"
    # covering the whole target instead of nothing outweighs the marginal penalty
    wide = targets(LINE[15:26])                                        # x = -5..5
    pool = [needle(0.0, verdict="marginal", rank_value=0.3), needle(60.0, rank_value=0.9)]
    assert best_plan(pool, 1, wide, 10.0)[0]["verdict"] == "marginal"


def test_choose_needles_keeps_to_the_techniques_asked_for():
    left = Targets("fracture", LINE, None)
    pool = CandidatePool(needles=[needle(0.0, technique="long_axis", rank_value=0.9), needle(12.0), needle(-12.0)],
                         targets={"left": left, "right": Targets("ala", LINE + [0, 0, 5], None)},
                         failures=[], margins={}, closest=[])
    assert len(pool.target_points.points) == 41                       # the ala fall-back is not a target
    short = choose_needles(pool, 3, {"short_axis"}, 10.0)
    assert {n["technique"] for n in short} == {"short_axis"} and len(short) == 2
    assert {n["technique"] for n in choose_needles(pool, 3, {"short_axis", "long_axis"}, 10.0)} == {
        "short_axis", "long_axis"}
    assert choose_needles(pool, 3, set(), 10.0) == []
