"""Independent re-check of a planned needle against a label map.

Shares no code with :mod:`trajplan.planning.scoring`: the needle's outer surface (cylinder and
tip disc) is sampled densely and its exact distance to the voxels of a structure,
taken as cubes, is measured. Used by the tests and the validation script to confirm
that what the planner calls safe is safe.
"""

from __future__ import annotations

import numpy as np
from scipy.spatial import cKDTree

from trajplan import labels as lt
from trajplan.planning.ct_guard import runs
from trajplan.volume import Volume


def needle_surface_points(entry, tip, radius: float, step: float = 0.2, around: int = 16) -> np.ndarray:
    """Dense points (LPS mm) on a needle's outer surface: the cylinder and the tip disc."""
    entry, tip = np.asarray(entry, float), np.asarray(tip, float)
    d = (tip - entry) / np.linalg.norm(tip - entry)
    u = np.cross(d, [1.0, 0, 0] if abs(d[0]) < 0.9 else [0, 1.0, 0])
    u /= np.linalg.norm(u)
    v = np.cross(d, u)
    phi = np.linspace(0, 2 * np.pi, around, endpoint=False)
    ring = radius * (np.cos(phi)[:, None] * u + np.sin(phi)[:, None] * v)
    t = np.arange(0.0, np.linalg.norm(tip - entry) + 1e-9, step)
    cylinder = (entry + t[:, None] * d)[:, None, :] + ring[None, :, :]
    disc = tip + np.linspace(0, 1, 5)[:, None, None] * ring[None, :, :]
    return np.concatenate([cylinder.reshape(-1, 3), disc.reshape(-1, 3)])


def distance_to_structure(points: np.ndarray, labels: Volume, name: str, within_mm: float | None = None) -> float:
    """Exact smallest distance (mm) from ``points`` to the voxels (as cubes) of a structure.

    With ``within_mm`` only the voxels in the box of the points widened by that much are
    searched, and ``inf`` means "farther than ``within_mm``" (fast on fine, large label maps).
    """
    if within_mm is None:
        array, origin = labels.array, np.zeros(3, dtype=int)
    else:
        box = np.array([points.min(axis=0) - within_mm, points.max(axis=0) + within_mm])
        corners = labels.world_to_index(np.array([[box[i, 0], box[j, 1], box[k, 2]]
                                                  for i in (0, 1) for j in (0, 1) for k in (0, 1)]))
        lo = np.clip(np.floor(corners.min(axis=0)).astype(int) - 1, 0, labels.shape)    # voxel cubes reach
        hi = np.clip(np.ceil(corners.max(axis=0)).astype(int) + 2, 0, labels.shape)     # half a voxel in
        array, origin = labels.array[lo[0]:hi[0], lo[1]:hi[1], lo[2]:hi[2]], lo
    idx = np.argwhere(array == lt.value(name)) + origin
    if not len(idx):
        return float("inf")
    tree = cKDTree(labels.index_to_world(idx))
    _, nearest = tree.query(points, k=min(8, len(idx)))
    nearest = np.asarray(nearest).reshape(len(points), -1)
    p_index = labels.world_to_index(points)[:, None, :]
    gap = np.maximum(np.abs(p_index - idx[nearest]) - 0.5, 0.0) * labels.spacing
    return float(np.linalg.norm(gap, axis=2).min())


def recheck(needle: dict, labels: Volume, margins: dict[str, float]) -> dict[str, float]:
    """Structures whose margin the needle violates on ``labels``: name -> measured distance (mm)."""
    points = needle_surface_points(needle["entry_lps"], needle["tip_lps"], needle["diameter_mm"] / 2)
    violations = {}
    for structure, margin in margins.items():
        d = distance_to_structure(points, labels, structure, within_mm=margin + 1.0)
        if d < margin - 1e-6:
            violations[structure] = round(d, 2)
    return violations


def _mask_on_line(reference: Volume, start: np.ndarray, stop: np.ndarray,
                  step_mm: float) -> tuple[np.ndarray, np.ndarray]:
    """The values of ``reference`` (nearest voxel; 0 outside it) at points every ``step_mm`` or
    less from ``start`` to ``stop``, and their distances from ``start`` (mm)."""
    count = max(int(np.ceil(np.linalg.norm(stop - start) / step_mm)), 1) + 1
    along = np.linspace(0.0, 1.0, count)
    index = np.rint(reference.world_to_index(start + along[:, None] * (stop - start))).astype(int)
    inside = np.all((index >= 0) & (index < reference.shape), axis=1)
    out = np.zeros(count, dtype=reference.array.dtype)
    out[inside] = reference.array[tuple(index[inside].T)]
    return out, along * np.linalg.norm(stop - start)


def _first_run(flags: np.ndarray, along: np.ndarray, min_mm: float) -> float | None:
    """Where (``along``, mm) the first run of True in ``flags`` at least ``min_mm`` long begins, or None."""
    return next((float(along[a]) for a, b in runs(flags) if along[b - 1] - along[a] >= min_mm), None)


def axis_outside_bone(needle: dict, reference: Volume, *, bone: int = 1, forbidden: tuple[int, ...] = (),
                      end_tolerance_mm: float = 1.0, step_mm: float = 0.25,
                      from_reference_entry: bool = False) -> tuple[float, bool]:
    """How a needle's axis sits in a reference bone mask (a solid bone whose lumens are holes).

    Returns the length (mm) of the axis between the bone entry and the tip, less
    ``end_tolerance_mm`` at each end, that lies outside the voxels valued ``bone``, and whether
    the axis from the skin entry (the bone entry where there is none) to the tip meets a voxel
    valued one of ``forbidden`` (for example the ilia). A needle whose axis leaves a solid
    bone after entering it has crossed one of its holes (canal, foramen, joint gap) or its cortex.
    With ``from_reference_entry`` the stretch starts where the axis from the skin entry first
    runs into the reference bone for ``end_tolerance_mm`` or more (a graze of its edge is not an
    entry), when that lies before the planned bone entry (bone that the labels left out: the
    needle is in it from there on).
    """
    entry, tip = np.asarray(needle["entry_lps"], float), np.asarray(needle["tip_lps"], float)
    skin = np.asarray(needle.get("skin_entry_lps") or needle["entry_lps"], float)
    if from_reference_entry:
        approach, along = _mask_on_line(reference, skin, tip, step_mm)
        start = _first_run(approach == bone, along, end_tolerance_mm)
        if start is not None and start < float(np.linalg.norm(entry - skin)):
            entry = skin + (tip - skin) * start / max(float(along[-1]), 1e-9)
    found, distance = _mask_on_line(reference, entry, tip, step_mm)
    length = float(distance[-1])
    core = (distance >= end_tolerance_mm) & (distance <= length - end_tolerance_mm)
    outside_mm = float(np.count_nonzero(core & (found != bone)) * length / max(len(found) - 1, 1))
    crosses = bool(forbidden) and bool(np.isin(_mask_on_line(reference, skin, tip, step_mm)[0], forbidden).any())
    return outside_mm, crosses


def entry_offset_mm(needle: dict, reference: Volume, *, bone: int = 1, reach_mm: float = 20.0,
                    step_mm: float = 0.25) -> float | None:
    """Where a needle's axis enters a reference bone mask, from its planned bone entry (mm along
    the axis; positive where the bone begins deeper than planned, negative where it begins before).

    The reference entry is the start of the run of bone on the axis that holds the planned entry
    (followed back at most ``reach_mm``) or, where the planned entry lies outside the bone, of the
    first run after it. None when the axis meets no such bone before the tip.
    """
    entry, tip = np.asarray(needle["entry_lps"], float), np.asarray(needle["tip_lps"], float)
    direction = (tip - entry) / np.linalg.norm(tip - entry)
    found, distance = _mask_on_line(reference, entry - reach_mm * direction, tip, step_mm)
    inside = found == bone
    at_entry = int(np.searchsorted(distance, reach_mm))
    if inside[at_entry]:
        outside_before = np.flatnonzero(~inside[:at_entry])
        start = outside_before[-1] + 1 if len(outside_before) else 0
    else:
        after = np.flatnonzero(inside[at_entry:])
        if not len(after):
            return None
        start = at_entry + after[0]
    return round(float(distance[start] - reach_mm), 2)
