"""Ranked needle plans: the entry point :func:`plan_needles`.

``plan_needles(labels, options)`` returns the content of ``plan.json`` (all but the
``software`` and ``input`` blocks, which the caller adds). For every requested
technique and side it screens thousands of entry x tip pairs
(:mod:`~trajplan.planning.candidates`, :func:`~trajplan.planning.scoring.fast_slack`),
measures the best few hundred exactly (:func:`~trajplan.planning.scoring.measure_path`),
runs the placement-error Monte Carlo on the best of those
(:mod:`~trajplan.planning.robustness`), and then picks the needle set
(:mod:`~trajplan.planning.selection`). Needles are :class:`~trajplan.needle.Needle`
objects until :func:`~trajplan.needle.needle_json` writes them into the plan.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace

import numpy as np
from scipy.spatial import cKDTree

from trajplan.errors import InputError, NoSafePathError
from trajplan.labels import Side
from trajplan.needle import Needle, PlacedNeedle, Technique, Verdict, needle_json, radius_mm
from trajplan.planning.ahead import REASON_TEXT as AHEAD_TEXT
from trajplan.planning.candidates import (
    LESION_MIN_BONE_SHARE,
    Landmarks,
    Targets,
    candidate_pairs,
    find_landmarks,
    find_targets,
    lesion_bone_share,
)
from trajplan.planning.ct_guard import EXPECTED_DARK, REASON_TEXT, entry_on_bone_edge, trusted_dark
from trajplan.planning.defaults import resolve_margins, resolve_weights
from trajplan.planning.distance import DistanceMaps, build_distance_maps
from trajplan.planning.options import SIDE_CHOICES, TECHNIQUE_CHOICES, PlanOptions, settings_json
from trajplan.planning.robustness import breach_probability
from trajplan.planning.scoring import REASON_TEXT as SCORING_TEXT
from trajplan.planning.scoring import apply_robustness, fast_slack, measure_path, path_angles, technique_ok
from trajplan.planning.selection import TargetPoints, best_plan, plan_summary
from trajplan.volume import Volume

SCHEMA_VERSION = 1
SHORTLIST = 80           # exactly measured per technique and side
ROBUST_SHORTLIST = 12    # Monte Carlo per technique and side
ALTERNATIVES = 5         # reported per technique and side
UNTRUSTED_REASON = "segmentation_implausible"   # a needle's reason when the labels' sacrum is implausible
LONG_AXIS_FORAMINA = ("S1", "S2", "S3", "S4")   # a long-axis path is planned only where these are labelled
COMPARED_TECHNIQUES = {"short_axis": {Technique.SHORT_AXIS}, "long_axis": {Technique.LONG_AXIS},
                       "mixed": set(Technique)}


def _pretty(structure: str) -> str:
    parts = structure.split("_")
    if parts[0] == "foramen":
        return f"{parts[1]} foramen ({parts[2]})"
    return structure.replace("_", " ")


def _no_safe_reason(technique: Technique, side: Side, closest: list[Needle], margins: dict[str, float]) -> str:
    """Why no candidate of ``technique`` on ``side`` is safe, from the closest unsafe one."""
    if not closest:
        return f"no {technique.adjective} path on the {side}"
    best = closest[0]
    worst = min(best.clearance_mm.items(), key=lambda kv: kv[1] - margins[kv[0]])
    if not best.reasons or set(best.reasons) <= {"outside_bone", "tip_outside_bone", "shaft_outside_bone"}:
        return f"no safe {technique.adjective} path on the {side}: every candidate leaves the bone"
    words = {**REASON_TEXT, **AHEAD_TEXT, **SCORING_TEXT}
    if set(best.reasons) <= set(words) or worst[1] >= margins[worst[0]]:
        # Every reason has its words, or the closest keeps every margin and is stopped by another rule
        # (a structure named then was crossed on the approach, or lies ahead of the tip).
        return (f"no safe {technique.adjective} path on the {side}: on the closest, "
                + " and ".join(words.get(r, f"{_pretty(r)} ({r})") for r in best.reasons))
    return (f"no safe {technique.adjective} path on the {side}: the closest keeps "
            f"{max(worst[1], 0.0):.1f} mm from the {_pretty(worst[0])} (margin {margins[worst[0]]:g} mm)")


def _plan_one(maps: DistanceMaps, marks: Landmarks, technique: Technique, side: Side, options: PlanOptions,
              ct: Volume | None, seed: int, *, lesion: bool = True,
              dark_targets: tuple[str, ...] = EXPECTED_DARK) -> tuple[list[Needle], str | None, Targets]:
    """Measured needles of one technique and side with breach probabilities, and why none is safe.

    The safe ones by ranking value; when none is safe, the closest unsafe ones (largest smallest
    clearance above margin first, up to ALTERNATIVES) and the reason.

    Raises
    ------
    InputError
        For a long-axis path on a side where a foramen of LONG_AXIS_FORAMINA is not labelled:
        the path runs beside the foramina, so one not found could lie on it.
    """
    if technique is Technique.LONG_AXIS:
        missing = [level for level in LONG_AXIS_FORAMINA if maps.tree(f"foramen_{level}_{side}") is None]
        if missing:
            which = f"foramen {missing[0]} is" if len(missing) == 1 else f"foramina {', '.join(missing)} are"
            raise InputError(f"no long-axis path planned on the {side}: {which} not labelled on that side, "
                             "and the long axis runs beside the foramina")
    radius = radius_mm(options.gauge)
    weights = resolve_weights(options.weights)
    targets = find_targets(maps, marks, side, lesion=lesion)
    entries, tips, normals = candidate_pairs(maps, marks, targets, technique, side, radius_mm=radius, seed=seed)
    vec = tips - entries
    length = np.linalg.norm(vec, axis=1)
    direction = vec / np.maximum(length, 1e-9)[:, None]
    angles = path_angles(direction, normals, side.sign, marks.axis)
    ok = technique_ok(technique, angles, length)
    if not ok.any():
        return [], f"no {technique.adjective} path on the {side} meets the technique limits", targets
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
    shortlist = order[:SHORTLIST]        # with a CT, entered where the bone's edge is (labels can stand proud)
    starts = [entries[i] if ct is None else entry_on_bone_edge(ct, entries[i], tips[i]) for i in shortlist]
    measured = [measure_path(maps, marks, start, tips[i], technique=technique, side=side,
                             gauge=options.gauge, targets=targets, normal=normals[i], ct=ct, weights=weights,
                             dark_targets=dark_targets)
                for start, i in zip(starts, shortlist)]
    safe = sorted((n for n in measured if n.safe), key=lambda n: -n.score)
    closest = sorted(measured, key=lambda n: -_above_margin(n, maps.margins))[:ALTERNATIVES] if not safe else []
    why = None if safe else _no_safe_reason(technique, side, closest, maps.margins)
    robust = []
    for k, needle in enumerate(safe[:ROBUST_SHORTLIST] or closest):
        breach = breach_probability(maps, needle.path.entry, needle.path.tip, radius=radius,
                                    samples=options.mc_samples, entry_sigma_mm=options.entry_sigma_mm,
                                    angle_sigma_deg=options.angle_sigma_deg, seed=seed * 1000 + k)
        robust.append(apply_robustness(needle, breach, weights))
    if safe:
        robust.sort(key=lambda n: -n.rank_value)
    return robust, why, targets


def _above_margin(needle: Needle, margins: dict[str, float]) -> float:
    """The smallest clearance above its margin (mm) of a measured needle."""
    return min((c - margins[s] for s, c in needle.clearance_mm.items()), default=0.0)


@dataclass(frozen=True)
class CandidatePool:
    """Every measured needle of a case (all techniques and sides asked for), best first."""

    needles: list[Needle]
    targets: dict[str, Targets]    # by side ("left", "right")
    failures: list[str]            # why a technique or side has no safe needle, or passes over the lesion
    margins: dict[str, float]
    closest: list[Needle]          # per technique and side without a safe needle: its best unsafe ones

    @property
    def target_points(self) -> TargetPoints:
        """The fracture / lesion points that needle sets are scored on."""
        return TargetPoints.from_sides(self.targets)


@dataclass(frozen=True)
class _SidePlan:
    """The measured needles of every technique asked for on one side."""

    needles: list[Needle]          # safe
    closest: list[Needle]          # the best unsafe ones of each technique without a safe needle
    failures: list[str]
    targets: Targets | None        # None when no technique could be planned on the side


def _plan_side(maps: DistanceMaps, marks: Landmarks, side: Side, s_i: int, techniques: tuple[Technique, ...],
               options: PlanOptions, ct: Volume | None, *, lesion: bool, alone: bool,
               dark_targets: tuple[str, ...]) -> _SidePlan:
    """Every technique of ``techniques`` planned on ``side`` (``alone``: the only side and
    technique asked for, whose InputError is raised rather than kept as a failure;
    ``dark_targets``: see :func:`measure_path`)."""
    needles: list[Needle] = []
    closest: list[Needle] = []
    failures: list[str] = []
    targets = None
    for t_i, technique in enumerate(techniques):
        try:
            found, why, targets = _plan_one(maps, marks, technique, side, options, ct,
                                            seed=options.seed * 10 + s_i * 2 + t_i, lesion=lesion,
                                            dark_targets=dark_targets)
        except InputError as exc:
            if alone:
                raise                  # the one technique and side asked for cannot be planned
            failures.append(str(exc))
            continue
        (closest if why else needles).extend(found)
        if why:
            failures.append(why)
    return _SidePlan(needles, closest, failures, targets)


def _aims_at_lesion(maps: DistanceMaps, marks: Landmarks, side: Side) -> bool:
    """Whether ``side`` would target the lesion (no fracture on that side, a lesion on it or on the
    midline); False where :func:`find_targets` cannot say (its error is raised or kept when the side is planned)."""
    try:
        return find_targets(maps, marks, side).kind == "lesion"
    except InputError:
        return False


def candidate_pool(labels: Volume, options: PlanOptions, *, ct: Volume | None = None,
                   require_safe: bool = True, lesion_uncertain: bool = False,
                   implausible: str | None = None) -> CandidatePool:
    """Measure and rank candidate needles for every technique and side in ``options``.

    ``needles`` holds the safe ones; ``closest`` the best unsafe ones (up to ALTERNATIVES) of
    each technique and side that has no safe needle. A lesion label outside the sacrum is not aimed at
    (:func:`trajplan.planning.candidates.find_targets`), with a warning. With ``lesion_uncertain`` (the segmentation
    marked its lesion uncertain: dark fatty marrow can pass for one, and may be a hole in the bone
    the labels missed), a side that would target the lesion is planned on its ala instead, with a
    warning, and the CT guard does not take the lesion for dark by nature (fatty marrow
    has no bright rim to excuse: :func:`trajplan.planning.ct_guard.trusted_dark`). With ``implausible`` (why the
    segmentation says its sacrum cannot be a whole sacrum: too small, or off the body's midline)
    no needle is safe: each is measured as usual, then made unsafe with the reason
    ``segmentation_implausible`` (:func:`untrusted_labels`).

    Raises
    ------
    InputError
        No sacral bone in the labels; a technique and side that cannot be planned (no ala, no
        dorsal surface, a foramen missing for the long axis) when that pair alone is asked for.
    NoSafePathError
        With ``require_safe``: no candidate meets the margins (the message names the closest call).
    """
    margins = resolve_margins(options.margins_mm)
    maps = build_distance_maps(labels, margins)                 # InputError without sacral bone
    marks = find_landmarks(maps)
    needles: list[Needle] = []
    closest: list[Needle] = []
    failures: list[str] = []
    target_sets: dict[str, Targets] = {}
    sides, techniques = SIDE_CHOICES[options.side], TECHNIQUE_CHOICES[options.technique]
    alone = len(sides) == 1 and len(techniques) == 1
    dark = trusted_dark(lesion_uncertain)
    share = lesion_bone_share(maps)
    if share is not None and share < LESION_MIN_BONE_SHARE:
        failures.append(f"the lesion label lies outside the sacrum (only {100 * share:.0f} % of the voxels around "
                        "it are sacral bone): it is not aimed at, the fracture or the ala of each side is targeted "
                        "instead; check the lesion on the images")
    for s_i, side in enumerate(sides):
        aim_past = lesion_uncertain and _aims_at_lesion(maps, marks, side)
        planned = _plan_side(maps, marks, side, s_i, techniques, options, ct, lesion=not aim_past, alone=alone,
                             dark_targets=dark)
        if aim_past:
            planned = replace(planned, failures=[
                f"the lesion found is marked uncertain by the segmentation (dark fatty marrow can pass for one): "
                f"the {side} ala is targeted instead; confirm the lesion on the images before aiming at it",
                *planned.failures])
        if planned.targets is not None:
            target_sets[side.value] = planned.targets
        needles.extend(planned.needles)
        closest.extend(planned.closest)
        failures.extend(planned.failures)
    if implausible:
        needles, closest, untrusted = untrusted_labels(needles, closest, implausible)
        failures = untrusted + failures
    if not needles and (require_safe or not target_sets):
        raise NoSafePathError("; ".join(failures) or "no safe path")
    needles.sort(key=lambda n: -n.rank_value)
    return CandidatePool(needles, target_sets, failures, margins, closest)


def untrusted_labels(needles: list[Needle], closest: list[Needle],
                     implausible: str) -> tuple[list[Needle], list[Needle], list[str]]:
    """Needles measured on labels whose sacrum is implausible (``implausible`` says why), all made
    unsafe: (no safe needles, the best ALTERNATIVES of each technique and side, the one failure).

    A needle's clearances are only as good as the labels: on a sacrum too small to be whole, or an
    ilium taken for the sacrum (real case 003 at 3 mm on one noise draw: 8 of 13 needles called
    safe crossed the ilium), a needle that keeps its margins may still cross a foramen or the
    cortex. Each keeps its measurements, ranking and its own reasons after ``segmentation_implausible``.
    """
    untrusted = [untrusted_needle(n) for best in best_of_each(needles + closest) for n in best]
    return [], untrusted, [untrusted_warning(implausible)]


def best_of_each(needles: list[Needle]) -> list[list[Needle]]:
    """The first ALTERNATIVES of ``needles`` (best first) of each technique and side: short axis
    first, then long axis; left, then right within each."""
    return [[n for n in needles if n.technique is technique and n.side is side][:ALTERNATIVES]
            for technique in Technique for side in Side]


def untrusted_needle(needle: Needle) -> Needle:
    """``needle`` made unsafe for labels whose sacrum is implausible: UNTRUSTED_REASON first in its reasons."""
    return replace(needle, verdict=Verdict.UNSAFE, reasons=(UNTRUSTED_REASON, *needle.reasons))


def untrusted_warning(implausible: str) -> str:
    """The warning of a plan or evaluation on labels whose sacrum is implausible (``implausible`` says why)."""
    return (f"no needle is called safe, for the segmentation's sacrum is implausible: {implausible}. Check the "
            "labels on the images, correct them if need be, and plan on them with --labels (a label file, or "
            "this plan's folder)")


def choose_needles(pool: CandidatePool, count: int, techniques: set[Technique],
                   min_separation_mm: float) -> list[PlacedNeedle]:
    """The best set of up to ``count`` needles from ``pool`` using only ``techniques``."""
    subset = [n for n in pool.needles if n.technique in techniques]
    return best_plan(subset, count, pool.target_points, min_separation_mm) if subset else []


def plan_needles(labels: Volume, options: PlanOptions, *, ct: Volume | None = None,
                 lesion_uncertain: bool = False, implausible: str | None = None) -> dict:
    """Plan needle paths on a label map (and optionally its CT, for skin depth).

    ``lesion_uncertain``: the segmentation marked the lesion uncertain; a side without a safe
    path to it is then planned on its ala (see :func:`candidate_pool`). ``implausible``: why the
    segmentation says its sacrum cannot be a whole sacrum (``segmentation.json``'s
    ``implausible_reason``); no needle is then safe, and the outcome is ``no_safe_path`` with the
    best candidates in ``alternatives`` (see :func:`untrusted_labels`).

    No safe needle is a result, not an error: ``outcome`` is then ``"no_safe_path"``,
    ``needles`` is empty, ``alternatives`` holds the best unsafe candidates of each technique
    and side (verdict ``unsafe`` with their reasons) and ``warnings`` says what blocks each.

    Returns
    -------
    dict
        ``schema``, ``schema_version``, ``outcome`` (``planned`` | ``no_safe_path``),
        ``parameters``, ``needles`` (best first), ``alternatives``, ``comparison``, ``targets``,
        ``warnings``, ``settings``: the content of ``plan.json`` (``docs/plan_json.md``).

    Raises
    ------
    InputError
        No sacral bone in the labels, a side without ala, bad options.
    NoSafePathError
        Only when no technique and side could be planned at all (no target anywhere).
    """
    pool = candidate_pool(labels, options, ct=ct, require_safe=False, lesion_uncertain=lesion_uncertain,
                          implausible=implausible)
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
            comparison[name] = plan_summary([p.needle for p in plan], targets)
    alternatives = [needle_json(n, rank=k) for best in best_of_each(pool.needles + pool.closest)
                    for k, n in enumerate(best, start=1)]
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
        "needles": [needle_json(p) for p in chosen],
        "alternatives": alternatives,
        "comparison": comparison,
        "targets": {side: {"kind": t.kind, "voxels": int(len(t.points)),
                           "centre_lps": (np.round(t.centre, 2).tolist() if t.centre is not None
                                          else np.round(t.points.mean(axis=0), 2).tolist())}
                    for side, t in pool.targets.items()},
        "target_kinds": sorted({t.kind for t in pool.targets.values()}),
        "summary": plan_summary([p.needle for p in chosen], targets),
        "warnings": warnings,
        "settings": settings_json(options),
    }
