"""Choosing the needle set: target coverage, greedy selection at a minimum separation, set summaries.

Each next needle is the safe one that covers the most still-uncovered target (fracture
line or lesion) within COVERAGE_RADIUS_MM of its cement segment, at least the minimum
separation from the needles already chosen; its ranking value, a new side and a marginal
verdict tip the balance.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy.spatial import cKDTree

from trajplan.needle import Needle, PlacedNeedle, Verdict
from trajplan.planning.candidates import Targets
from trajplan.planning.defaults import CEMENT_SEGMENT_MM, COVERAGE_RADIUS_MM

MARGINAL_PENALTY = 0.5   # a marginal needle is chosen only when it adds this much more coverage
LENGTH_BIN_MM = 5.0      # cranio-caudal bin of the target length coverage


@dataclass(frozen=True)
class TargetPoints:
    """All target voxels of a plan (fracture line or lesion, both sides) and their length bins.

    ``bins`` gives each point a cranio-caudal bin (LENGTH_BIN_MM high) per side: a fracture
    line's length is covered where a needle's cement reach touches its bin.
    """

    points: np.ndarray     # (n, 3) LPS mm
    bins: np.ndarray       # (n,) int

    @classmethod
    def from_sides(cls, target_sets: dict[str, Targets]) -> TargetPoints:
        """Fracture / lesion targets of every side (ala fall-back targets are not counted)."""
        chosen = [(k, t) for k, t in enumerate(target_sets.values()) if t.kind != "ala"]
        if not chosen:
            return cls(np.zeros((0, 3)), np.zeros(0, dtype=int))
        points = np.concatenate([t.points for _, t in chosen])
        bins = np.concatenate([k * 100_000 + np.floor(t.points[:, 2] / LENGTH_BIN_MM).astype(int)
                               for k, t in chosen])
        return cls(points, bins)


def _segment_distance(a0, a1, b0, b1) -> float:
    """Smallest distance between two segments (sampled finely; mm)."""
    t = np.linspace(0.0, 1.0, 41)[:, None]
    pa = a0 + t * (a1 - a0)
    pb = b0 + t * (b1 - b0)
    return float(cKDTree(pb).query(pa)[0].min())


def _coverage_sets(needles: Sequence[Needle], target_points: np.ndarray) -> list[np.ndarray]:
    """Per needle, the target points within COVERAGE_RADIUS_MM of its cement segment."""
    if not len(target_points):
        return [np.zeros(0, dtype=bool) for _ in needles]
    tree = cKDTree(target_points)
    out = []
    for n in needles:
        tip, entry = n.path.tip, n.path.entry
        d = (tip - entry) / max(np.linalg.norm(tip - entry), 1e-9)
        seg = min(CEMENT_SEGMENT_MM[n.technique], n.metrics.length_in_bone_mm)
        pts = tip - np.linspace(0.0, seg, max(int(seg), 2))[:, None] * d
        covered = np.zeros(len(target_points), dtype=bool)
        for hit in tree.query_ball_point(pts, COVERAGE_RADIUS_MM):
            covered[hit] = True
        out.append(covered)
    return out


def _greedy(pool: Sequence[Needle], covers: list[np.ndarray], count: int, min_separation: float,
            start: tuple[int, ...] = ()) -> list[int]:
    """Indices of a greedy needle set from ``pool`` (safe needles), beginning with ``start``."""
    chosen = list(start)
    covered = np.zeros(len(covers[0]) if covers else 0, dtype=bool)
    for i in chosen:
        covered |= covers[i]
    total = max(len(covered), 1)
    while len(chosen) < count:
        best, best_value = None, -np.inf
        sides = {pool[i].side for i in chosen}
        for i, n in enumerate(pool):
            if i in chosen:
                continue
            if any(_segment_distance(n.path.entry, n.path.tip, pool[j].path.entry, pool[j].path.tip)
                   < min_separation for j in chosen):
                continue
            gain = np.count_nonzero(covers[i] & ~covered) / total
            value = (gain + 0.2 * n.rank_value + (0.05 if n.side not in sides else 0.0)
                     - (MARGINAL_PENALTY if n.verdict is Verdict.MARGINAL else 0.0))
            if value > best_value:
                best, best_value = i, value
        if best is None:
            break
        chosen.append(best)
        covered |= covers[best]
    return chosen


def _placed(pool: Sequence[Needle], covers: list[np.ndarray], chosen: list[int], targets: int) -> list[PlacedNeedle]:
    return [PlacedNeedle(pool[i], rank,
                         round(float(np.count_nonzero(covers[i]) / targets), 4) if targets else None)
            for rank, i in enumerate(chosen, start=1)]


def best_plan(pool: Sequence[Needle], count: int, targets: TargetPoints, min_separation: float) -> list[PlacedNeedle]:
    """The best greedy needle set over the technique subsets present in ``pool``.

    Greedy selection from the mixed pool can miss a better set, so it is also run
    within each technique alone, and, with both techniques, started from each
    single-technique set and filled up from the mixed pool. The set with the most
    needles, then the highest target coverage, then the higher summed rank value wins.
    """
    safe = [n for n in pool if n.safe]
    covers = _coverage_sets(safe, targets.points)
    techniques = sorted({n.technique for n in safe})
    tries = [_greedy(safe, covers, count, min_separation)]
    if len(techniques) > 1:
        for technique in techniques:
            own = [i for i, n in enumerate(safe) if n.technique == technique]
            alone = [own[i] for i in _greedy([safe[i] for i in own], [covers[i] for i in own], count, min_separation)]
            tries += [alone, _greedy(safe, covers, count, min_separation, tuple(alone))]
    best, best_key = [], (-1.0, -np.inf)
    for chosen in tries:
        plan = _placed(safe, covers, chosen, len(targets.points))
        coverage = plan_summary([p.needle for p in plan], targets)["target_coverage"] or 0.0
        key = (round(coverage, 4) + len(plan), sum(p.needle.rank_value for p in plan))
        if key > best_key:
            best, best_key = plan, key
    return best


def plan_summary(needles: Sequence[Needle], targets: TargetPoints) -> dict:
    """Coverage, cement, clearance and breach figures of one needle set (``plan.json`` ``summary``).

    ``target_coverage`` is the fraction of target voxels within the cement reach of a
    needle; ``target_length_coverage`` the fraction of the target's cranio-caudal
    length bins (per side) that a needle reaches.
    """
    covered = np.zeros(len(targets.points), dtype=bool)
    for c in _coverage_sets(needles, targets.points):
        covered |= c
    clearances = [min(n.clearance_mm.values()) for n in needles if n.clearance_mm]
    length = None
    if len(targets.points):
        all_bins = np.unique(targets.bins)
        length = round(float(len(np.unique(targets.bins[covered])) / len(all_bins)), 4)
    return {
        "needles": len(needles),
        "techniques": sorted({n.technique.value for n in needles}),
        "target_coverage": round(float(covered.mean()), 4) if len(targets.points) else None,
        "target_length_coverage": length,
        "cement_volume_ml": round(sum(n.metrics.cement_volume_ml for n in needles), 2),
        "min_clearance_mm": round(min(clearances), 2) if clearances else None,
        "max_breach_probability": max((n.breach_probability["any"] for n in needles), default=None),
    }
