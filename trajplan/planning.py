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
from trajplan.ct_guard import REASON_TEXT
from trajplan.distance import build_distance_maps
from trajplan.errors import InputError, NoSafePathError
from trajplan.margins import CEMENT_SEGMENT_MM, COVERAGE_RADIUS_MM, resolve_margins, resolve_weights
from trajplan.needle import radius_mm
from trajplan.robustness import breach_probability
from trajplan.scoring import apply_robustness, fast_slack, measure_path, path_angles, technique_ok
from trajplan.settings import settings_json
from trajplan.volume import Volume

SCHEMA_VERSION = 1
SHORTLIST = 80           # exactly measured per technique and side
ROBUST_SHORTLIST = 12    # Monte Carlo per technique and side
ALTERNATIVES = 5         # reported per technique and side
MARGINAL_PENALTY = 0.5   # a marginal needle is chosen only when it adds this much more coverage
LONG_AXIS_FORAMINA = ("S1", "S2", "S3", "S4")   # a long-axis path is planned only where these are labelled
TECHNIQUE_NAMES = {"short": ("short_axis",), "long": ("long_axis",), "both": TECHNIQUES}
SIDES = {"left": ("left",), "right": ("right",), "both": ("left", "right")}
COMPARED_TECHNIQUES = {"short_axis": {"short_axis"}, "long_axis": {"long_axis"},
                       "mixed": {"short_axis", "long_axis"}}
LENGTH_BIN_MM = 5.0      # cranio-caudal bin of the target length coverage


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
    weights: dict[str, float] | None = None            # overrides of trajplan.margins.WEIGHTS
    needle_lengths_mm: tuple[float, ...] | None = None  # None: trajplan.card.STANDARD_NEEDLE_LENGTHS_MM

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
        resolve_weights(self.weights)
        if self.needle_lengths_mm is not None and (
                not len(self.needle_lengths_mm) or not all(0 < float(v) <= 500 for v in self.needle_lengths_mm)):
            raise InputError(f"needle lengths must be 1 or more lengths of 0 to 500 mm, got {self.needle_lengths_mm}")


def _pretty(structure: str) -> str:
    parts = structure.split("_")
    if parts[0] == "foramen":
        return f"{parts[1]} foramen ({parts[2]})"
    return structure.replace("_", " ")


def _plan_one(maps, marks, technique: str, side: str, options: PlanOptions, ct: Volume | None,
              seed: int) -> tuple[list[dict], str | None, Targets]:
    """Measured needles of one technique and side with breach probabilities, and why none is safe.

    The safe ones by ranking value; when none is safe, the closest unsafe ones (largest smallest
    clearance above margin first, up to ALTERNATIVES) and the reason.

    Raises
    ------
    InputError
        For a long-axis path on a side where a foramen of LONG_AXIS_FORAMINA is not labelled:
        the path runs beside the foramina, so one not found could lie on it.
    """
    if technique == "long_axis":
        missing = [level for level in LONG_AXIS_FORAMINA if maps.tree(f"foramen_{level}_{side}") is None]
        if missing:
            which = f"foramen {missing[0]} is" if len(missing) == 1 else f"foramina {', '.join(missing)} are"
            raise InputError(f"no long-axis path planned on the {side}: {which} not labelled on that side, "
                             "and the long axis runs beside the foramina")
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
                             gauge=options.gauge, targets=targets, normal=normals[i], ct=ct,
                             weights=resolve_weights(options.weights))
                for i in order[:SHORTLIST]]
    safe = sorted((n for n in measured if n["safe"]), key=lambda n: -n["score"])
    closest = sorted(measured, key=lambda n: -_above_margin(n, maps.margins))[:ALTERNATIVES] if not safe else []
    why = None
    if not safe:
        best = closest[0] if closest else None
        if best is None:
            why = f"no {technique.replace('_', '-')} path on the {side}"
        else:
            worst = min(best["clearance_mm"].items(), key=lambda kv: kv[1] - maps.margins[kv[0]])
            why = (f"no safe {technique.replace('_', '-')} path on the {side}: the closest keeps "
                   f"{max(worst[1], 0.0):.1f} mm from the {_pretty(worst[0])} (margin {maps.margins[worst[0]]:g} mm)")
            if not best["reasons"] or set(best["reasons"]) <= {"outside_bone", "tip_outside_bone"}:
                why = f"no safe {technique.replace('_', '-')} path on the {side}: every candidate leaves the bone"
            elif set(best["reasons"]) <= set(REASON_TEXT):
                why = (f"no safe {technique.replace('_', '-')} path on the {side}: on the closest, "
                       + " and ".join(REASON_TEXT[r] for r in best["reasons"]))
    robust = []
    for k, needle in enumerate(safe[:ROBUST_SHORTLIST] or closest):
        breach = breach_probability(maps, needle["entry_lps"], needle["tip_lps"], radius=radius,
                                    samples=options.mc_samples, entry_sigma_mm=options.entry_sigma_mm,
                                    angle_sigma_deg=options.angle_sigma_deg, seed=seed * 1000 + k)
        robust.append(apply_robustness(needle, breach, resolve_weights(options.weights)))
    if safe:
        robust.sort(key=lambda n: -n["rank_value"])
    return robust, why, targets


def _above_margin(needle: dict, margins: dict[str, float]) -> float:
    """The smallest clearance above its margin (mm) of a measured needle."""
    return min((c - margins[s] for s, c in needle["clearance_mm"].items()), default=0.0)


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


def _greedy(pool: list[dict], covers: list[np.ndarray], count: int, min_separation: float,
            start: tuple[int, ...] = ()) -> list[int]:
    """Indices of a greedy needle set from ``pool`` (safe needles), beginning with ``start``."""
    chosen = list(start)
    covered = np.zeros(len(covers[0]) if covers else 0, dtype=bool)
    for i in chosen:
        covered |= covers[i]
    total = max(len(covered), 1)
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
    return chosen


def _ranked(pool: list[dict], covers: list[np.ndarray], chosen: list[int], targets: int) -> list[dict]:
    out = []
    for rank, i in enumerate(chosen, start=1):
        needle = dict(pool[i], rank=rank)
        needle["target_coverage"] = round(float(np.count_nonzero(covers[i]) / targets), 4) if targets else None
        out.append(needle)
    return out


def best_plan(pool: list[dict], count: int, targets: "TargetPoints", min_separation: float) -> list[dict]:
    """The best greedy needle set over the technique subsets present in ``pool``.

    Greedy selection from the mixed pool can miss a better set, so it is also run
    within each technique alone, and, with both techniques, started from each
    single-technique set and filled up from the mixed pool. The set with the most
    needles, then the highest target coverage, then the higher summed rank value wins.
    """
    safe = [n for n in pool if n["safe"]]
    covers = _coverage_sets(safe, targets.points)
    techniques = sorted({n["technique"] for n in safe})
    tries = [_greedy(safe, covers, count, min_separation)]
    if len(techniques) > 1:
        for technique in techniques:
            own = [i for i, n in enumerate(safe) if n["technique"] == technique]
            alone = [own[i] for i in _greedy([safe[i] for i in own], [covers[i] for i in own], count, min_separation)]
            tries += [alone, _greedy(safe, covers, count, min_separation, tuple(alone))]
    best, best_key = [], (-1.0, -np.inf)
    for chosen in tries:
        plan = _ranked(safe, covers, chosen, len(targets.points))
        coverage = plan_summary(plan, targets)["target_coverage"] or 0.0
        key = (round(coverage, 4) + len(plan), sum(n["rank_value"] for n in plan))
        if key > best_key:
            best, best_key = plan, key
    return best


@dataclass(frozen=True)
class TargetPoints:
    """All target voxels of a plan (fracture line or lesion, both sides) and their length bins.

    ``bins`` gives each point a cranio-caudal bin (LENGTH_BIN_MM high) per side: a fracture
    line's length is covered where a needle's cement reach touches its bin.
    """

    points: np.ndarray     # (n, 3) LPS mm
    bins: np.ndarray       # (n,) int

    @classmethod
    def from_sides(cls, target_sets: dict[str, Targets]) -> "TargetPoints":
        """Fracture / lesion targets of every side (ala fall-back targets are not counted)."""
        chosen = [(k, t) for k, t in enumerate(target_sets.values()) if t.kind != "ala"]
        if not chosen:
            return cls(np.zeros((0, 3)), np.zeros(0, dtype=int))
        points = np.concatenate([t.points for _, t in chosen])
        bins = np.concatenate([k * 100_000 + np.floor(t.points[:, 2] / LENGTH_BIN_MM).astype(int)
                               for k, t in chosen])
        return cls(points, bins)


def plan_summary(needles: list[dict], targets: TargetPoints) -> dict:
    """Coverage, cement, clearance and breach figures of one needle set.

    ``target_coverage`` is the fraction of target voxels within the cement reach of a
    needle; ``target_length_coverage`` the fraction of the target's cranio-caudal
    length bins (per side) that a needle reaches.
    """
    covered = np.zeros(len(targets.points), dtype=bool)
    for c in _coverage_sets(needles, targets.points):
        covered |= c
    clearances = [min(n["clearance_mm"].values()) for n in needles if n["clearance_mm"]]
    length = None
    if len(targets.points):
        all_bins = np.unique(targets.bins)
        length = round(float(len(np.unique(targets.bins[covered])) / len(all_bins)), 4)
    return {
        "needles": len(needles),
        "techniques": sorted({n["technique"] for n in needles}),
        "target_coverage": round(float(covered.mean()), 4) if len(targets.points) else None,
        "target_length_coverage": length,
        "cement_volume_ml": round(sum(n["metrics"]["cement_volume_ml"] for n in needles), 2),
        "min_clearance_mm": round(min(clearances), 2) if clearances else None,
        "max_breach_probability": max((n["breach_probability"]["any"] for n in needles), default=None),
    }


def _public(needle: dict) -> dict:
    return {k: v for k, v in needle.items() if k != "rank_value"}


@dataclass(frozen=True)
class CandidatePool:
    """Every measured needle of a case (all techniques and sides asked for), best first."""

    needles: list[dict]
    targets: dict[str, Targets]    # by side
    failures: list[str]            # why a technique or side has no safe needle
    margins: dict[str, float]
    closest: list[dict]            # per technique and side without a safe needle: its best unsafe ones

    @property
    def target_points(self) -> TargetPoints:
        """The fracture / lesion points that needle sets are scored on."""
        return TargetPoints.from_sides(self.targets)


def candidate_pool(labels: Volume, options: PlanOptions, *, ct: Volume | None = None,
                   require_safe: bool = True) -> CandidatePool:
    """Measure and rank candidate needles for every technique and side in ``options``.

    ``needles`` holds the safe ones; ``closest`` the best unsafe ones (up to ALTERNATIVES) of
    each technique and side that has no safe needle.

    Raises
    ------
    InputError
        No sacral bone in the labels; a technique and side that cannot be planned (no ala, no
        dorsal surface, a foramen missing for the long axis) when that pair alone is asked for.
    NoSafePathError
        With ``require_safe``: no candidate meets the margins (the message names the closest call).
    """
    if not lt.sacral_bone(labels).any():
        raise InputError("the label map holds no sacral bone (sacrum, ala, anterior_cortex): nothing to plan on")
    margins = resolve_margins(options.margins_mm)
    maps = build_distance_maps(labels, margins)
    marks = find_landmarks(maps)
    needles: list[dict] = []
    closest: list[dict] = []
    failures: list[str] = []
    target_sets: dict[str, Targets] = {}
    for s_i, side in enumerate(SIDES[options.side]):
        for t_i, technique in enumerate(TECHNIQUE_NAMES[options.technique]):
            try:
                found, why, targets = _plan_one(maps, marks, technique, side, options, ct,
                                                seed=options.seed * 10 + s_i * 2 + t_i)
            except InputError as exc:
                if len(SIDES[options.side]) == 1 and len(TECHNIQUE_NAMES[options.technique]) == 1:
                    raise                  # the one technique and side asked for cannot be planned
                failures.append(str(exc))
                continue
            target_sets[side] = targets
            (closest if why else needles).extend(found)
            if why:
                failures.append(why)
    if not needles and (require_safe or not target_sets):
        raise NoSafePathError("; ".join(failures) or "no safe path")
    needles.sort(key=lambda n: -n["rank_value"])
    return CandidatePool(needles, target_sets, failures, margins, closest)


def choose_needles(pool: CandidatePool, count: int, techniques: set[str], min_separation_mm: float) -> list[dict]:
    """The best set of up to ``count`` needles from ``pool`` using only ``techniques``."""
    subset = [n for n in pool.needles if n["technique"] in techniques]
    return best_plan(subset, count, pool.target_points, min_separation_mm) if subset else []


def plan_needles(labels: Volume, options: PlanOptions, *, ct: Volume | None = None) -> dict:
    """Plan needle paths on a label map (and optionally its CT, for skin depth).

    No safe needle is a result, not an error: ``outcome`` is then ``"no_safe_path"``,
    ``needles`` is empty, ``alternatives`` holds the best unsafe candidates of each technique
    and side (verdict ``unsafe`` with their reasons) and ``warnings`` says what blocks each.

    Returns
    -------
    dict
        ``schema``, ``schema_version``, ``outcome`` (``planned`` | ``no_safe_path``),
        ``parameters``, ``needles`` (best first), ``alternatives``, ``comparison``, ``targets``,
        ``warnings``.

    Raises
    ------
    InputError
        No sacral bone in the labels, a side without ala, bad options.
    NoSafePathError
        Only when no technique and side could be planned at all (no target anywhere).
    """
    pool = candidate_pool(labels, options, ct=ct, require_safe=False)
    targets = pool.target_points
    warnings = list(pool.failures)
    chosen = best_plan(pool.needles, options.needles, targets, options.min_separation_mm)
    if chosen and len(chosen) < options.needles:
        warnings.append(f"only {len(chosen)} of {options.needles} needles fit safely "
                        f"at least {options.min_separation_mm:g} mm apart")
    comparison = {}
    for name, allowed in COMPARED_TECHNIQUES.items():
        plan = choose_needles(pool, options.needles, allowed, options.min_separation_mm)
        if plan:
            comparison[name] = plan_summary(plan, targets)
    alternatives = []
    for technique in TECHNIQUES:
        for side in SIDES["both"]:
            ranked = [n for n in pool.needles + pool.closest if n["technique"] == technique and n["side"] == side]
            alternatives.extend(dict(_public(n), rank=k) for k, n in enumerate(ranked[:ALTERNATIVES], start=1))
    return {
        "schema": "trajplan/plan",
        "schema_version": SCHEMA_VERSION,
        "outcome": "planned" if chosen else "no_safe_path",
        "parameters": {
            **{k: v for k, v in asdict(options).items() if k not in ("margins_mm", "entry_sigma_mm", "angle_sigma_deg",
                                                                     "mc_samples", "seed", "weights",
                                                                     "needle_lengths_mm")},
            "margins_mm": pool.margins,
            "weights": resolve_weights(options.weights),
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
                    for side, t in pool.targets.items()},
        "target_kinds": sorted({t.kind for t in pool.targets.values()}),
        "summary": plan_summary(chosen, targets),
        "warnings": warnings,
        "settings": settings_json(options),
    }
