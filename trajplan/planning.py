"""Ranked needle plans: candidates per technique and side, scores, robustness, multi-needle sets.

``plan_needles(labels, options)`` returns the content of ``plan.json`` (all but the
``software`` and ``input`` blocks, which the caller adds). For every requested
technique and side it screens thousands of entry x tip pairs, measures the best
few hundred exactly, runs the placement-error Monte Carlo on the best of those,
and then picks the needle set greedily: each next needle is the safe one that
covers the most still-uncovered target (fracture line or lesion), at least
``min_separation_mm`` from the needles already chosen.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
from scipy.spatial import cKDTree

from trajplan import labels as lt
from trajplan.candidates import TECHNIQUES, Targets, candidate_pairs, find_landmarks, find_targets
from trajplan.distance import build_distance_maps
from trajplan.errors import InputError, NoSafePathError
from trajplan.margins import CEMENT_SEGMENT_MM, COVERAGE_RADIUS_MM, WEIGHTS, resolve_margins
from trajplan.needle import radius_mm
from trajplan.robustness import breach_probability
from trajplan.scoring import apply_robustness, fast_slack, measure_path, path_angles, technique_ok
from trajplan.volume import Volume

SCHEMA_VERSION = 1
SHORTLIST = 80           # exactly measured per technique and side
ROBUST_SHORTLIST = 12    # Monte Carlo per technique and side
ALTERNATIVES = 5         # reported per technique and side
MARGINAL_PENALTY = 0.5   # a marginal needle is chosen only when it adds this much more coverage
TECHNIQUE_NAMES = {"short": ("short_axis",), "long": ("long_axis",), "both": TECHNIQUES}
SIDES = {"left": ("left",), "right": ("right",), "both": ("left", "right")}


@dataclass(frozen=True)
class PlanOptions:
    """What to plan; validated at construction (clear InputErrors)."""

    technique: str = "both"      # short|long|both
    gauge: int = 11              # 11|13
    needles: int = 2             # 1..5
    side: str = "both"           # left|right|both
    margins_mm: dict[str, float] | None = None
    min_separation_mm: float = 10.0
    entry_sigma_mm: float = 2.0
    angle_sigma_deg: float = 2.0
    mc_samples: int = 300
    seed: int = 0

    def __post_init__(self) -> None:
        if self.technique not in TECHNIQUE_NAMES:
            raise InputError(f"unknown technique {self.technique!r} (use short, long or both)")
        radius_mm(self.gauge)
        if self.side not in SIDES:
            raise InputError(f"unknown side {self.side!r} (use left, right or both)")
        if not 1 <= int(self.needles) <= 5:
            raise InputError(f"needles must be 1 to 5, got {self.needles}")
        if self.min_separation_mm < 0 or self.entry_sigma_mm < 0 or self.angle_sigma_deg < 0:
            raise InputError("separation and placement errors must not be negative")
        if not 10 <= self.mc_samples <= 100_000:
            raise InputError(f"mc_samples must be 10 to 100000, got {self.mc_samples}")
        resolve_margins(self.margins_mm)


def _pretty(structure: str) -> str:
    parts = structure.split("_")
    if parts[0] == "foramen":
        return f"{parts[1]} foramen ({parts[2]})"
    return structure.replace("_", " ")


def _plan_one(maps, marks, technique: str, side: str, options: PlanOptions, ct: Volume | None,
              seed: int) -> tuple[list[dict], str | None, Targets]:
    """Ranked measured needles of one technique and side, and why none is safe (if so)."""
    radius = radius_mm(options.gauge)
    targets = find_targets(maps, marks, side)
    entries, tips, normals = candidate_pairs(maps, marks, targets, technique, side, radius_mm=radius, seed=seed)
    vec = tips - entries
    length = np.linalg.norm(vec, axis=1)
    direction = vec / np.maximum(length, 1e-9)[:, None]
    angles = path_angles(direction, normals, 1.0 if side == "left" else -1.0, marks.axis)
    ok = technique_ok(technique, angles, length)
    if not ok.any():
        return [], f"no {technique.replace('_', '-')} path on the {side} meets the technique limits", targets
    entries, tips, normals = entries[ok], tips[ok], normals[ok]
    slack, outside = fast_slack(maps, entries, tips)
    clearance = slack - radius
    feasible = (clearance > -0.5) & (outside <= 1)
    order = np.argsort(-(np.minimum(clearance, 5.0) + 5.0 * feasible))
    if targets.kind in ("fracture", "lesion"):
        if targets.kind == "lesion":
            near = np.linalg.norm(tips - targets.centre, axis=1)
        else:
            near = cKDTree(targets.points).query(tips)[0]
        order = np.lexsort((near, -np.minimum(np.floor(clearance), 3.0), ~feasible))
    measured = [measure_path(maps, marks, entries[i], tips[i], technique=technique, side=side,
                             gauge=options.gauge, targets=targets, normal=normals[i], ct=ct)
                for i in order[:SHORTLIST]]
    safe = sorted((n for n in measured if n["safe"]), key=lambda n: -n["score"])
    why = None
    if not safe:
        best = max(measured, key=lambda n: min((c - maps.margins[s] for s, c in n["clearance_mm"].items()),
                                              default=0.0)) if measured else None
        if best is None:
            why = f"no {technique.replace('_', '-')} path on the {side}"
        else:
            worst = min(best["clearance_mm"].items(), key=lambda kv: kv[1] - maps.margins[kv[0]])
            why = (f"no safe {technique.replace('_', '-')} path on the {side}: the closest keeps "
                   f"{max(worst[1], 0.0):.1f} mm from the {_pretty(worst[0])} (margin {maps.margins[worst[0]]:g} mm)")
            if not best["reasons"] or set(best["reasons"]) <= {"outside_bone", "tip_outside_bone"}:
                why = f"no safe {technique.replace('_', '-')} path on the {side}: every candidate leaves the bone"
    robust = []
    for k, needle in enumerate(safe[:ROBUST_SHORTLIST]):
        breach = breach_probability(maps, needle["entry_lps"], needle["tip_lps"], radius=radius,
                                    samples=options.mc_samples, entry_sigma_mm=options.entry_sigma_mm,
                                    angle_sigma_deg=options.angle_sigma_deg, seed=seed * 1000 + k)
        robust.append(apply_robustness(needle, breach))
    robust.sort(key=lambda n: -n["rank_value"])
    return robust, why, targets


def _segment_distance(a0, a1, b0, b1) -> float:
    """Smallest distance between two segments (sampled finely; mm)."""
    t = np.linspace(0.0, 1.0, 41)[:, None]
    pa = a0 + t * (a1 - a0)
    pb = b0 + t * (b1 - b0)
    return float(cKDTree(pb).query(pa)[0].min())


def _coverage_sets(needles: list[dict], target_points: np.ndarray) -> list[np.ndarray]:
    """Per needle, the target points within COVERAGE_RADIUS_MM of its cement segment."""
    if not len(target_points):
        return [np.zeros(0, dtype=bool) for _ in needles]
    tree = cKDTree(target_points)
    out = []
    for n in needles:
        tip, entry = np.asarray(n["tip_lps"]), np.asarray(n["entry_lps"])
        d = (tip - entry) / max(np.linalg.norm(tip - entry), 1e-9)
        seg = min(CEMENT_SEGMENT_MM[n["technique"]], n["metrics"]["length_in_bone_mm"])
        pts = tip - np.linspace(0.0, seg, max(int(seg), 2))[:, None] * d
        covered = np.zeros(len(target_points), dtype=bool)
        for hit in tree.query_ball_point(pts, COVERAGE_RADIUS_MM):
            covered[hit] = True
        out.append(covered)
    return out


def select_needles(pool: list[dict], count: int, target_points: np.ndarray, min_separation: float) -> list[dict]:
    """Greedy set of up to ``count`` safe needles maximising target coverage, kept apart."""
    pool = [n for n in pool if n["safe"]]
    covers = _coverage_sets(pool, target_points)
    chosen: list[int] = []
    covered = np.zeros(len(target_points), dtype=bool)
    total = max(len(target_points), 1)
    while len(chosen) < count:
        best, best_value = None, -np.inf
        sides = {pool[i]["side"] for i in chosen}
        for i, n in enumerate(pool):
            if i in chosen:
                continue
            if any(_segment_distance(np.asarray(n["entry_lps"]), np.asarray(n["tip_lps"]),
                                     np.asarray(pool[j]["entry_lps"]), np.asarray(pool[j]["tip_lps"]))
                   < min_separation for j in chosen):
                continue
            gain = np.count_nonzero(covers[i] & ~covered) / total
            value = (gain + 0.2 * n["rank_value"] + (0.05 if n["side"] not in sides else 0.0)
                     - (MARGINAL_PENALTY if n["verdict"] == "marginal" else 0.0))
            if value > best_value:
                best, best_value = i, value
        if best is None:
            break
        chosen.append(best)
        covered |= covers[best]
    out = []
    for rank, i in enumerate(chosen, start=1):
        needle = dict(pool[i], rank=rank)
        needle["target_coverage"] = round(float(np.count_nonzero(covers[i]) / total), 4) if len(target_points) else None
        out.append(needle)
    return out


def best_plan(pool: list[dict], count: int, target_points: np.ndarray, min_separation: float) -> list[dict]:
    """The best greedy needle set over the technique subsets present in ``pool``.

    Greedy selection from the mixed pool can miss a better single-technique set, so
    each subset is tried; the set with the highest target coverage wins (then the
    higher summed rank value).
    """
    techniques = sorted({n["technique"] for n in pool})
    subsets = [set(techniques)] + ([{t} for t in techniques] if len(techniques) > 1 else [])
    best, best_key = [], (-1.0, -np.inf)
    for allowed in subsets:
        plan = select_needles([n for n in pool if n["technique"] in allowed], count, target_points,
                              min_separation)
        coverage = _plan_summary(plan, target_points)["target_coverage"] or 0.0
        key = (round(coverage, 4) + len(plan), sum(n["rank_value"] for n in plan))
        if key > best_key:
            best, best_key = plan, key
    return best


def _plan_summary(needles: list[dict], target_points: np.ndarray) -> dict:
    covers = _coverage_sets(needles, target_points)
    covered = np.zeros(len(target_points), dtype=bool)
    for c in covers:
        covered |= c
    clearances = [min(n["clearance_mm"].values()) for n in needles if n["clearance_mm"]]
    return {
        "needles": len(needles),
        "techniques": sorted({n["technique"] for n in needles}),
        "target_coverage": round(float(covered.mean()), 4) if len(target_points) else None,
        "cement_volume_ml": round(sum(n["metrics"]["cement_volume_ml"] for n in needles), 2),
        "min_clearance_mm": round(min(clearances), 2) if clearances else None,
        "max_breach_probability": max((n["breach_probability"]["any"] for n in needles), default=None),
    }


def _public(needle: dict) -> dict:
    return {k: v for k, v in needle.items() if k != "rank_value"}


def plan_needles(labels: Volume, options: PlanOptions, *, ct: Volume | None = None) -> dict:
    """Plan needle paths on a label map (and optionally its CT, for skin depth).

    Returns
    -------
    dict
        ``schema``, ``schema_version``, ``parameters``, ``needles`` (best first),
        ``alternatives``, ``comparison``, ``targets``, ``warnings``.

    Raises
    ------
    InputError
        No sacral bone in the labels, a side without ala, bad options.
    NoSafePathError
        No candidate meets the margins (the message names the closest call).
    """
    if not lt.sacral_bone(labels).any():
        raise InputError("the label map holds no sacral bone (sacrum, ala, anterior_cortex): nothing to plan on")
    margins = resolve_margins(options.margins_mm)
    maps = build_distance_maps(labels, margins)
    marks = find_landmarks(maps)
    results: dict[tuple[str, str], list[dict]] = {}
    warnings: list[str] = []
    failures: list[str] = []
    target_sets: dict[str, Targets] = {}
    for s_i, side in enumerate(SIDES[options.side]):
        for t_i, technique in enumerate(TECHNIQUE_NAMES[options.technique]):
            try:
                needles, why, targets = _plan_one(maps, marks, technique, side, options, ct,
                                                  seed=options.seed * 10 + s_i * 2 + t_i)
            except InputError as exc:
                if options.side != "both":
                    raise
                failures.append(str(exc))
                continue
            target_sets[side] = targets
            results[(technique, side)] = needles
            if why:
                failures.append(why)
    pool = sorted((n for ns in results.values() for n in ns), key=lambda n: -n["rank_value"])
    if not pool:
        raise NoSafePathError("; ".join(failures) or "no safe path")
    warnings.extend(failures)
    kinds = {t.kind for t in target_sets.values()}
    target_points = np.concatenate([t.points for t in target_sets.values() if t.kind != "ala"] or [np.zeros((0, 3))])
    chosen = best_plan(pool, options.needles, target_points, options.min_separation_mm)
    if len(chosen) < options.needles:
        warnings.append(f"only {len(chosen)} of {options.needles} needles fit safely "
                        f"at least {options.min_separation_mm:g} mm apart")
    comparison = {}
    for name, allowed in (("short_axis", {"short_axis"}), ("long_axis", {"long_axis"}),
                          ("mixed", {"short_axis", "long_axis"})):
        subset = [n for n in pool if n["technique"] in allowed]
        if subset:
            plan = best_plan(subset, options.needles, target_points, options.min_separation_mm)
            comparison[name] = _plan_summary(plan, target_points)
    alternatives = []
    for (technique, side), needles in results.items():
        for k, needle in enumerate(needles[:ALTERNATIVES], start=1):
            alternatives.append(dict(_public(needle), rank=k))
    return {
        "schema": "trajplan/plan",
        "schema_version": SCHEMA_VERSION,
        "parameters": {
            **{k: v for k, v in asdict(options).items() if k not in ("margins_mm", "entry_sigma_mm",
                                                                     "angle_sigma_deg", "mc_samples", "seed")},
            "margins_mm": margins,
            "weights": WEIGHTS,
            "placement_error": {"entry_sigma_mm": options.entry_sigma_mm,
                                "angle_sigma_deg": options.angle_sigma_deg,
                                "samples": options.mc_samples, "seed": options.seed},
        },
        "needles": [_public(n) for n in chosen],
        "alternatives": alternatives,
        "comparison": comparison,
        "targets": {side: {"kind": t.kind, "voxels": int(len(t.points)),
                           "centre_lps": (np.round(t.centre, 2).tolist() if t.centre is not None
                                          else np.round(t.points.mean(axis=0), 2).tolist())}
                    for side, t in target_sets.items()},
        "target_kinds": sorted(kinds),
        "summary": _plan_summary(chosen, target_points),
        "warnings": warnings,
    }
