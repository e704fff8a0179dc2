"""Needle-set selection (trajplan.planning): separation, coverage and verdicts on hand-made needles.

Every needle here is a short-axis needle running straight anterior (-y) from ``y = 40`` to its tip
at ``(x, 0, z)``, 30 mm of it in bone: its cement segment is the last 15 mm and it covers the
target points within 8 mm of that segment. Two such needles at ``x = a`` and ``x = b`` are
``|a - b|`` mm apart.
"""

from __future__ import annotations

import numpy as np
import pytest

from trajplan.labels import Side
from trajplan.needle import Needle, NeedleMetrics, NeedlePath, Technique, Verdict
from trajplan.planning.candidates import Targets
from trajplan.planning.plan import CandidatePool, choose_needles
from trajplan.planning.selection import TargetPoints, _segment_distance, best_plan, plan_summary

# target: 41 points 1 mm apart along x, at y = 0, z = 20
LINE = np.column_stack([np.arange(-20.0, 21.0), np.zeros(41), np.full(41, 20.0)])


def needle(x: float, *, z: float = 20.0, technique: str = "short_axis", side: str = "left",
           rank_value: float = 0.5, verdict: str = "safe", cement: float = 2.0) -> Needle:
    """A measured needle as the planner's pool holds it (what selection reads set; the rest neutral)."""
    metrics = NeedleMetrics(length_mm=40.0, length_in_bone_mm=30.0, length_in_ala_mm=0.0, length_outside_bone_mm=0.0,
                            tip_to_target_mm=None, target=None, mediolateral_angle_deg=0.0,
                            craniocaudal_angle_deg=0.0, gantry_tilt_deg=0.0, axis_angle_deg=0.0,
                            angle_to_surface_normal_deg=None, skin_to_bone_mm=None, approach_crosses=(),
                            cement_volume_ml=cement)
    return Needle(path=NeedlePath(Technique(technique), Side(side), 11, (x, 40.0, z), (x, 0.0, z)),
                  skin_entry_lps=None, verdict=Verdict(verdict), reasons=(), clearance_mm={"canal": 4.0 + x / 100},
                  tip_to_anterior_cortex_mm=None, ct_guard={}, metrics=metrics, score=rank_value,
                  breach_probability={"any": 0.01}, rank_value=rank_value)


def targets(points=LINE) -> TargetPoints:
    return TargetPoints.from_sides({"left": Targets("fracture", np.asarray(points, float), None)})


def tip(placed) -> tuple[float, float, float]:
    """A chosen needle's tip (LPS mm)."""
    return placed.needle.path.tip_lps


def axis_separation(a, b) -> float:
    """Distance between two of these parallel chosen needles (their axes differ only in x and z)."""
    return float(np.hypot(tip(a)[0] - tip(b)[0], tip(a)[2] - tip(b)[2]))


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
                assert axis_separation(a, b) >= separation, (separation, tip(a), tip(b))
        assert [n.rank for n in plan] == list(range(1, len(plan) + 1))
    assert len(best_plan(pool, 5, targets(), 0.0)) == 5
    # greedy, 15 mm: all cover 17 points, so the best ranked (x = 12) first; then the most new coverage
    # (x = -12 and -10 both add 17), the better ranked; then nothing is 15 mm from both
    assert [tip(n)[0] for n in best_plan(pool, 5, targets(), 15.0)] == [12.0, -10.0]


def test_two_needles_closer_than_the_separation_give_one():
    pool = [needle(0.0), needle(4.0)]
    assert len(best_plan(pool, 2, targets(), 10.0)) == 1
    assert len(best_plan(pool, 2, targets(), 4.0)) == 2               # exactly the separation apart is allowed
    assert len(best_plan(pool, 2, targets(), 4.5)) == 1


def test_coverage_by_hand_and_the_needle_that_covers_more_is_taken():
    one = best_plan([needle(0.0)], 1, targets(), 10.0)
    assert one[0].target_coverage == round(17 / 41, 4)            # x = -8..8 of -20..20
    edge = best_plan([needle(-20.0)], 1, targets(), 10.0)
    assert edge[0].target_coverage == round(9 / 41, 4)            # x = -20..-12
    # a better-ranked needle off the target loses to one that covers it
    pool = [needle(40.0, rank_value=0.9), needle(15.0, rank_value=0.3)]
    assert tip(best_plan(pool, 1, targets(), 10.0)[0])[0] == 15.0
    chosen = best_plan([needle(-12.0), needle(0.0), needle(12.0)], 3, targets(), 10.0)
    summary = plan_summary([p.needle for p in chosen], targets())
    assert summary["target_coverage"] == 1.0 and summary["needles"] == 3
    assert summary["cement_volume_ml"] == 6.0 and summary["min_clearance_mm"] == 3.88
    assert summary["max_breach_probability"] == 0.01


def test_length_coverage_counts_the_5_mm_bins_reached():
    column = np.column_stack([np.zeros(50), np.zeros(50), np.arange(0.0, 50.0)])       # z = 0..49: 10 bins
    plan = best_plan([needle(0.0, z=20.0)], 1, targets(column), 10.0)
    summary = plan_summary([p.needle for p in plan], targets(column))
    assert summary["target_coverage"] == round(17 / 50, 4)            # z = 12..28
    assert summary["target_length_coverage"] == 0.4                    # bins 10-15, 15-20, 20-25, 25-30


def test_unsafe_needles_are_never_chosen_and_a_marginal_one_only_for_more_coverage():
    assert best_plan([needle(0.0, verdict="unsafe", rank_value=0.9)], 1, targets(), 10.0) == []
    pool = [needle(0.0, verdict="marginal", rank_value=0.9), needle(1.0, rank_value=0.3)]
    assert best_plan(pool, 1, targets(), 10.0)[0].needle.verdict is Verdict.SAFE
    pool = [needle(0.0, verdict="marginal", rank_value=0.3), needle(60.0, rank_value=0.9)]   # the safe one: no target
    assert best_plan(pool, 1, targets(), 10.0)[0].needle.verdict is Verdict.SAFE
    # covering the whole target instead of nothing outweighs the marginal penalty
    wide = targets(LINE[15:26])                                        # x = -5..5
    pool = [needle(0.0, verdict="marginal", rank_value=0.3), needle(60.0, rank_value=0.9)]
    assert best_plan(pool, 1, wide, 10.0)[0].needle.verdict is Verdict.MARGINAL


def test_choose_needles_keeps_to_the_techniques_asked_for():
    left = Targets("fracture", LINE, None)
    pool = CandidatePool(needles=[needle(0.0, technique="long_axis", rank_value=0.9), needle(12.0), needle(-12.0)],
                         targets={"left": left, "right": Targets("ala", LINE + [0, 0, 5], None)},
                         failures=[], margins={}, closest=[])
    assert len(pool.target_points.points) == 41                       # the ala fall-back is not a target
    short = choose_needles(pool, 3, {Technique.SHORT_AXIS}, 10.0)
    assert {n.needle.technique for n in short} == {Technique.SHORT_AXIS} and len(short) == 2
    both = {Technique.SHORT_AXIS, Technique.LONG_AXIS}
    assert {n.needle.technique for n in choose_needles(pool, 3, both, 10.0)} == both
    assert choose_needles(pool, 3, set(), 10.0) == []
