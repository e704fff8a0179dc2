"""Per-path metrics, verdicts and scores.

Two stages: :func:`fast_slack` screens many candidates at once with one gather per
axis sample on the combined slack map; :func:`measure_path` measures a shortlisted
path exactly (KD-trees of voxel centres, axis steps of EXACT_STEP_MM, 0.5 mm) and gives its
verdict, as a :class:`~trajplan.needle.Needle`.

Clearance of a structure = distance from the needle's outer surface to the
structure's voxels (as cubes), conservatively: (distance from the axis to the
nearest voxel centre) - needle radius - half the voxel diagonal - half the axis step.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
from scipy import ndimage

from trajplan import labels as lt
from trajplan.labels import Side
from trajplan.needle import Needle, NeedleMetrics, NeedlePath, Technique, Verdict, diameter_mm
from trajplan.planning.ahead import labels_ahead, read_ahead
from trajplan.planning.candidates import Landmarks, Targets
from trajplan.planning.ct_guard import EXPECTED_DARK, ct_guard
from trajplan.planning.defaults import (
    CEMENT_FILL_FRACTION,
    CEMENT_RADIUS_MM,
    CEMENT_SEGMENT_MM,
    CLEARANCE_CAP_MM,
    CLEARANCE_SCALE_MM,
    CRITICAL_STRUCTURES,
    LONG_AXIS_MAX_AXIS_ANGLE_DEG,
    LONG_AXIS_MIN_LENGTH_MM,
    MARGINAL_BAND_MM,
    MARGINAL_BREACH_PROBABILITY,
    MAX_OUTSIDE_BONE_MM,
    SHAFT_ENTRY_MM,
    SHORT_AXIS_MAX_GANTRY_TILT_DEG,
    SHORT_AXIS_MAX_NORMAL_ANGLE_DEG,
    SHORT_AXIS_MEDIOLATERAL_RANGE_DEG,
    SHORT_AXIS_MIN_LENGTH_MM,
    STUDY_MEAN_CEMENT_ML,
    TARGET_SCALE_MM,
    WEIGHTS,
)
from trajplan.planning.distance import DistanceMaps
from trajplan.volume import Volume

FAST_SAMPLES = 24
EXACT_STEP_MM = 0.5
SKIN_HU = -400.0
MAX_SKIN_DEPTH_MM = 250.0
APPROACH_CHECK_MM = 80.0
APPROACH_STEP_MM = 0.5
REASON_TEXT = {
    "outside_bone": "more than 1 mm of the path outside the bone",
    "tip_outside_bone": "the tip outside the bone",
    "shaft_outside_bone": "the needle's shaft runs out through the bone's surface past its entry",
}
APPROACH_FORBIDDEN = ("ilium_left", "ilium_right", "L5", *lt.LUMENS, "si_joint_left", "si_joint_right", "L5_S1_disc",
                      "coccyx")


# ------------------------------------------------------------------ geometry
def path_angles(direction: np.ndarray, normal: np.ndarray | None, side_sign: float,
                axis: np.ndarray) -> dict[str, float]:
    """Angles (degrees) of unit needle directions ``(..., 3)`` (entry -> tip, LPS).

    - ``angle_to_surface_normal_deg``: to the inward normal of the bone at the entry;
    - ``mediolateral_angle_deg``: in the axial plane from straight anterior, positive
      when the needle heads laterally as it advances (medial-to-lateral);
    - ``craniocaudal_angle_deg``: out of the axial plane, positive cephalad;
    - ``gantry_tilt_deg``: the tilt of an axial-like image plane (containing the
      left-right axis) that holds the whole needle;
    - ``axis_angle_deg``: to the long axis of the sacrum (S4 -> S1).
    """
    d = np.asarray(direction, dtype=float)
    dx, dy, dz = d[..., 0], d[..., 1], d[..., 2]
    out = {
        "mediolateral_angle_deg": np.degrees(np.arctan2(dx * side_sign, -dy)),
        "craniocaudal_angle_deg": np.degrees(np.arcsin(np.clip(dz, -1, 1))),
        "gantry_tilt_deg": np.degrees(np.arctan2(dz, np.maximum(-dy, 1e-9))),
        "axis_angle_deg": np.degrees(np.arccos(np.clip(d @ axis, -1, 1))),
    }
    if normal is not None:
        out["angle_to_surface_normal_deg"] = np.degrees(np.arccos(np.clip(np.sum(d * normal, axis=-1), -1, 1)))
    return out


def technique_ok(technique: Technique, angles: dict[str, np.ndarray], length: np.ndarray) -> np.ndarray:
    """The hard technique limits (see :mod:`trajplan.planning.defaults`)."""
    if technique is Technique.SHORT_AXIS:
        lo, hi = SHORT_AXIS_MEDIOLATERAL_RANGE_DEG
        return ((angles["angle_to_surface_normal_deg"] <= SHORT_AXIS_MAX_NORMAL_ANGLE_DEG)
                & (np.abs(angles["gantry_tilt_deg"]) <= SHORT_AXIS_MAX_GANTRY_TILT_DEG)
                & (angles["mediolateral_angle_deg"] >= lo) & (angles["mediolateral_angle_deg"] <= hi)
                & (length >= SHORT_AXIS_MIN_LENGTH_MM))
    return (angles["axis_angle_deg"] <= LONG_AXIS_MAX_AXIS_ANGLE_DEG) & (length >= LONG_AXIS_MIN_LENGTH_MM)


# ------------------------------------------------------------------ fast stage
def fast_slack(maps: DistanceMaps, entries: np.ndarray, tips: np.ndarray, *,
               samples: int = FAST_SAMPLES, chunk: int = 8192) -> tuple[np.ndarray, np.ndarray]:
    """Screen paths: smallest slack (distance - margin, mm) on the axis, and samples outside bone.

    One nearest-voxel gather per axis sample on the combined slack map, vectorised
    over all paths. Subtract the needle radius from the slack to get the screening
    clearance above margin. End points beyond the map are clamped to its edge (so
    every sample is), and the flat voxel index is built axis by axis in int32: a
    chunk's temporaries stay in the cache, which is what bounds the speed.

    Returns
    -------
    min_slack : (n,) float32
    outside : (n,) int, number of axis samples (excluding the entry) outside the sacral bone
    """
    crop = maps.labels
    upper = np.asarray(maps.slack.shape, dtype=np.float32) - 1
    half = np.float32(0.5)              # floor(index + 0.5) is the nearest voxel
    start = np.clip(crop.world_to_index(entries).astype(np.float32), 0, upper) + half
    step = np.clip(crop.world_to_index(tips).astype(np.float32), 0, upper) + half - start
    fractions = np.linspace(0.0, 1.0, samples, dtype=np.float32)
    shape = maps.slack.shape
    strides = (shape[1] * shape[2], shape[2], 1)
    slack, outside_map = maps.slack.reshape(-1), (~maps.bone).reshape(-1).view(np.uint8)
    min_slack = np.empty(len(entries), dtype=np.float32)
    outside = np.empty(len(entries), dtype=np.int32)
    for lo in range(0, len(entries), chunk):
        hi = min(lo + chunk, len(entries))
        flat = np.zeros((hi - lo, samples), dtype=np.int32)
        coord = np.empty((hi - lo, samples), dtype=np.float32)
        for axis in range(3):
            np.multiply(step[lo:hi, axis, None], fractions, out=coord)
            coord += start[lo:hi, axis, None]
            flat += coord.astype(np.int32) * np.int32(strides[axis])
        min_slack[lo:hi] = slack[flat].min(axis=1)
        outside[lo:hi] = outside_map[flat[:, 1:]].sum(axis=1, dtype=np.int32)
    return min_slack, outside


# ------------------------------------------------------------------ exact stage
def _axis_points(entry: np.ndarray, tip: np.ndarray, step: float = EXACT_STEP_MM) -> np.ndarray:
    length = float(np.linalg.norm(tip - entry))
    n = max(int(np.ceil(length / step)) + 1, 2)
    return entry + np.linspace(0.0, 1.0, n)[:, None] * (tip - entry)


def _clearances(maps: DistanceMaps, axis_pts: np.ndarray, radius: float) -> dict[str, float]:
    loss = radius + maps.half_voxel_mm + EXACT_STEP_MM / 2
    out = {}
    for structure in CRITICAL_STRUCTURES:
        tree = maps.tree(structure)
        if tree is None:
            continue
        d, _ = tree.query(axis_pts, distance_upper_bound=CLEARANCE_CAP_MM + loss)
        out[structure] = round(float(min(np.min(d), CLEARANCE_CAP_MM + loss) - loss), 2)
    return out


def _runs_outside(inside: np.ndarray, step: float) -> float:
    """Longest run (mm) of consecutive axis samples outside the bone (after the entry)."""
    longest = run = 0
    for flag in inside[1:]:
        run = 0 if flag else run + 1
        longest = max(longest, run)
    return longest * step


def shaft_depth_mm(maps: DistanceMaps, axis_pts: np.ndarray, radius: float) -> float | None:
    """How deep (mm) the needle's outer surface stays below the outer surface of the labelled
    anatomy along its axis ``axis_pts`` (bone entry to tip), past the first SHAFT_ENTRY_MM (and two
    voxels) of it; negative where the shaft runs out through the surface. None for a path too short
    to have such a part.

    The depth of an axis point is its distance to the nearest unlabelled voxel centre outside the
    labels (trilinear in :attr:`DistanceMaps.depth`; a pocket walled in by labels is not outside) less
    half a voxel (the surface lies between that voxel and the
    labelled one beside it), less the needle's radius. Every structure inside the bone has its own
    margin; this is the bone's outer surface, which has none: a short-axis needle laid just under
    the dorsal cortex of the ala runs with its shaft in the cortex and out of it (real sacrum 001,
    0.86 mm: a needle called safe whose axis came within 0.2 mm of the labelled surface, 9 mm past
    its entry, and left the reference bone there).
    """
    spacing = np.asarray(maps.labels.spacing, dtype=float)
    along = np.linalg.norm(axis_pts - axis_pts[0], axis=1)
    past = axis_pts[along >= max(SHAFT_ENTRY_MM, 2.0 * float(spacing.max()))]
    if not len(past):
        return None
    depth = ndimage.map_coordinates(maps.depth, maps.labels.world_to_index(past).T, order=1, mode="nearest")
    return round(float(depth.min()) - 0.5 * float(spacing.mean()) - radius, 2)


def skin_entry(ct: Volume | None, entry: np.ndarray, direction: np.ndarray) -> np.ndarray | None:
    """Where the extended needle line meets the skin (HU < -400 beyond), or None."""
    if ct is None:
        return None
    steps = np.arange(1.0, MAX_SKIN_DEPTH_MM, 1.0)
    pts = entry[None, :] - steps[:, None] * direction[None, :]
    idx = np.rint(ct.world_to_index(pts)).astype(int)
    inside = np.all((idx >= 0) & (idx < np.asarray(ct.shape)), axis=1)
    if not inside.all():
        steps, idx = steps[inside], idx[inside]
        if not len(steps) or not inside[0]:
            return None
    hu = ct.array[idx[:, 0], idx[:, 1], idx[:, 2]]
    air = np.flatnonzero(hu < SKIN_HU)
    if not len(air):
        return None
    return entry - steps[air[0]] * direction


def approach_labels(maps: DistanceMaps, entry: np.ndarray, direction: np.ndarray,
                    skin: np.ndarray | None) -> np.ndarray:
    """The labels on the approach, every APPROACH_STEP_MM from a voxel outside the bone entry back
    to the skin point (without one, APPROACH_CHECK_MM back). Only the planning crop is labelled."""
    reach = float(np.linalg.norm(entry - skin)) if skin is not None else APPROACH_CHECK_MM
    steps = np.arange(maps.half_voxel_mm * 2, reach, APPROACH_STEP_MM)
    return maps.labels.values_at(entry[None, :] - steps[:, None] * direction[None, :])


def approach_crossings(approach: np.ndarray) -> list[str]:
    """What the needle would cross between the skin and its bone entry (``approach``:
    :func:`approach_labels`) that no needle may: a bone (ilium, L5), a nerve lumen, an SI joint, the
    L5-S1 disc, the coccyx (a bone needle cannot be driven through it and on across the
    sacrococcygeal joint)."""
    values = set(np.unique(approach).tolist())
    return [name for name in APPROACH_FORBIDDEN if lt.value(name) in values]


def approach_outside_bone_mm(approach: np.ndarray) -> float:
    """Where the approach (:func:`approach_labels`) meets sacral bone before the bone entry: the
    longest run (mm) outside sacral bone between the farthest such bone and the entry (0 when the
    approach meets none). The needle enters the bone there, so the run counts as outside the bone
    after its entry (real sacrum 003 with noise of sd 25 HU: a left short axis called safe ran 27 mm
    through labelled sacral bone, past a labelled S2 foramen before it, to a planned entry on the
    far side of a pocket of fatty marrow labelled nothing)."""
    bone = lt.sacral_bone(approach)
    if not bone.any():
        return 0.0
    farthest = int(np.flatnonzero(bone)[-1])
    return _runs_outside(np.concatenate([[True], bone[:farthest + 1]]), APPROACH_STEP_MM)


def cement_volume_ml(maps: DistanceMaps, tip: np.ndarray, direction: np.ndarray, technique: Technique,
                     length_in_bone: float) -> float:
    """Trabecular bone within CEMENT_RADIUS_MM of the distal needle segment x fill fraction (ml)."""
    segment = min(CEMENT_SEGMENT_MM[technique], max(length_in_bone, 1.0))
    crop = maps.labels
    pts = tip - np.linspace(0.0, segment, max(int(segment), 2))[:, None] * direction
    lo = np.floor(crop.world_to_index(pts.min(axis=0) - CEMENT_RADIUS_MM)).astype(int)
    hi = np.ceil(crop.world_to_index(pts.max(axis=0) + CEMENT_RADIUS_MM)).astype(int)
    lo, hi = np.minimum(lo, hi), np.maximum(lo, hi)
    lo, hi = np.clip(lo, 0, crop.shape), np.clip(hi + 1, 0, crop.shape)
    box = tuple(slice(a, b) for a, b in zip(lo, hi))
    trabecular = lt.mask(crop.array[box], "sacrum", "ala_left", "ala_right", "fracture", "lesion")
    idx = np.argwhere(trabecular) + lo
    if not len(idx):
        return 0.0
    world = crop.index_to_world(idx)
    rel = world - tip
    t = np.clip(rel @ -direction, 0.0, segment)
    dist = np.linalg.norm(rel + t[:, None] * direction, axis=1)
    voxels = int(np.count_nonzero(dist <= CEMENT_RADIUS_MM))
    return round(voxels * crop.voxel_volume_ml * CEMENT_FILL_FRACTION, 2)


def measure_path(maps: DistanceMaps, marks: Landmarks, entry: np.ndarray, tip: np.ndarray, *,
                 technique: Technique, side: Side, gauge: int, targets: Targets | None = None,
                 normal: np.ndarray | None = None, ct: Volume | None = None,
                 weights: dict[str, float] | None = None,
                 dark_targets: tuple[str, ...] = EXPECTED_DARK) -> Needle:
    """Exact metrics and verdict of one path, without breach probabilities (scored with
    ``weights``, by default the defaults). Entry and tip are kept rounded to 0.01 mm, as written.
    ``dark_targets``: the labels the CT guard trusts to be dark by nature (:func:`ct_guard`)."""
    entry, tip = np.asarray(entry, float), np.asarray(tip, float)
    radius = diameter_mm(gauge) / 2.0
    length = float(np.linalg.norm(tip - entry))
    direction = (tip - entry) / max(length, 1e-9)
    axis_pts = _axis_points(entry, tip)
    step = length / max(len(axis_pts) - 1, 1)
    crop = maps.labels
    label_at = crop.values_at(axis_pts)
    in_bone = np.isin(label_at, [lt.value(n) for n in lt.SACRAL_BONE])
    in_ala = np.isin(label_at, [lt.value(f"ala_{side.value}"), lt.value("fracture")])

    clearance = _clearances(maps, axis_pts, radius)
    reasons = [s for s, c in clearance.items() if c < maps.margins[s]]
    outside = _runs_outside(in_bone, step)
    if outside > MAX_OUTSIDE_BONE_MM:
        reasons.append("outside_bone")
    if not in_bone[-1]:
        reasons.append("tip_outside_bone")
    shaft_depth = shaft_depth_mm(maps, axis_pts, radius)
    if shaft_depth is not None and shaft_depth < 0.0:
        reasons.append("shaft_outside_bone")
    skin = skin_entry(ct, entry, direction)
    guard = ct_guard(ct, crop, axis_pts, step, label_at, skin, dark_targets)
    reasons.extend(guard.pop("reasons"))

    cortex = maps.tree("anterior_cortex")
    tip_to_cortex = (round(float(cortex.query(tip)[0] - maps.half_voxel_mm), 2) if cortex is not None else None)
    tip_to_target = None
    target_kind = targets.kind if targets is not None else None
    if targets is not None and targets.kind == "lesion":
        tip_to_target = round(float(np.linalg.norm(tip - targets.centre)), 2)
    elif targets is not None and targets.kind == "fracture":
        tip_to_target = round(float(np.min(np.linalg.norm(targets.points - tip, axis=1))), 2)

    if normal is None:
        i = np.rint(crop.world_to_index(entry)).astype(int)
        near = np.argmin(np.linalg.norm(marks.surface_index - i, axis=1)) if len(marks.surface_index) else None
        normal = marks.inward_normal[:, near] if near is not None else None
    angles = {k: round(float(v), 2) for k, v in path_angles(direction, normal, side.sign, marks.axis).items()}
    approach = approach_labels(maps, entry, direction, skin)
    crossed = approach_crossings(approach)
    reasons.extend(name for name in crossed if name not in reasons)
    if approach_outside_bone_mm(approach) > MAX_OUTSIDE_BONE_MM and "outside_bone" not in reasons:
        reasons.append("outside_bone")
    bone_ahead, ahead_reason = read_ahead(labels_ahead(crop, tip, direction))
    if ahead_reason is not None and in_bone[-1]:
        reasons.append(ahead_reason)
    length_in_bone = min(float(np.count_nonzero(in_bone[1:]) * step), length)
    metrics = NeedleMetrics(
        length_mm=round(length, 2),
        length_in_bone_mm=round(length_in_bone, 2),
        length_in_ala_mm=round(min(float(np.count_nonzero(in_ala[1:]) * step), length), 2),
        length_outside_bone_mm=round(float(np.count_nonzero(~in_bone[1:]) * step), 2),
        tip_to_target_mm=tip_to_target,
        target=target_kind,
        mediolateral_angle_deg=angles["mediolateral_angle_deg"],
        craniocaudal_angle_deg=angles["craniocaudal_angle_deg"],
        gantry_tilt_deg=angles["gantry_tilt_deg"],
        axis_angle_deg=angles["axis_angle_deg"],
        angle_to_surface_normal_deg=angles.get("angle_to_surface_normal_deg"),
        skin_to_bone_mm=round(float(np.linalg.norm(entry - skin)), 1) if skin is not None else None,
        approach_crosses=tuple(crossed),
        cement_volume_ml=cement_volume_ml(maps, tip, direction, technique, length_in_bone),
        bone_ahead_mm=bone_ahead if in_bone[-1] else 0.0,
        shaft_depth_mm=shaft_depth,
    )
    min_above = min((c - maps.margins[s] for s, c in clearance.items()), default=CLEARANCE_CAP_MM)
    if reasons:
        verdict = Verdict.UNSAFE
    else:
        verdict = Verdict.MARGINAL if min_above < MARGINAL_BAND_MM else Verdict.SAFE
    return Needle(
        path=NeedlePath(technique=technique, side=side, gauge=int(gauge),
                        entry_lps=_rounded(entry), tip_lps=_rounded(tip)),
        skin_entry_lps=_rounded(skin) if skin is not None else None,
        verdict=verdict,
        reasons=tuple(reasons),
        clearance_mm=clearance,
        tip_to_anterior_cortex_mm=tip_to_cortex,
        ct_guard=guard,
        metrics=metrics,
        score=round(score_path(technique, clearance, maps.margins, metrics, weights), 4),
    )


def _rounded(point: np.ndarray) -> tuple[float, float, float]:
    """A point rounded to 0.01 mm, as ``plan.json`` holds it."""
    x, y, z = (round(float(v), 2) for v in point)
    return x, y, z


def score_path(technique: Technique, clearance: dict[str, float], margins: dict[str, float],
               metrics: NeedleMetrics, weights: dict[str, float] | None = None) -> float:
    """Weighted score in [0, 1] (``weights``, by default :data:`trajplan.planning.defaults.WEIGHTS`)."""
    weights = {**WEIGHTS, **(weights or {})}
    above = min((c - margins[s] for s, c in clearance.items()), default=CLEARANCE_CAP_MM)
    terms = {"clearance": float(np.clip(above / CLEARANCE_SCALE_MM, 0.0, 1.0))}
    target = metrics.tip_to_target_mm
    terms["target"] = float(np.exp(-target / TARGET_SCALE_MM)) if target is not None else 0.5
    if technique is Technique.SHORT_AXIS:
        normal = metrics.angle_to_surface_normal_deg or 0.0
        tilt = abs(metrics.gantry_tilt_deg)
        terms["technique_fit"] = float(np.clip(1 - 0.5 * normal / SHORT_AXIS_MAX_NORMAL_ANGLE_DEG
                                               - 0.5 * tilt / SHORT_AXIS_MAX_GANTRY_TILT_DEG, 0, 1))
    else:
        terms["technique_fit"] = float(np.clip(1 - metrics.axis_angle_deg / LONG_AXIS_MAX_AXIS_ANGLE_DEG, 0, 1))
    terms["cement"] = float(np.clip(metrics.cement_volume_ml / STUDY_MEAN_CEMENT_ML, 0, 1))
    total = sum(weights[k] for k in terms)
    return sum(weights[k] * v for k, v in terms.items()) / total


def apply_robustness(needle: Needle, breach: dict[str, float], weights: dict[str, float] | None = None) -> Needle:
    """The needle with its breach probabilities and ranking value; a safe needle with a likely
    breach becomes marginal."""
    weights = {**WEIGHTS, **(weights or {})}
    verdict = needle.verdict
    if needle.safe and breach.get("any", 0.0) > MARGINAL_BREACH_PROBABILITY:
        verdict = Verdict.MARGINAL
    return replace(needle, verdict=verdict, breach_probability=breach,
                   rank_value=round(needle.score - weights["robustness"] * breach.get("any", 0.0), 4))
