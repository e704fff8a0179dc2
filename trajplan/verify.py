"""Independent re-check of a planned needle against a label map.

Shares no code with :mod:`trajplan.scoring`: the needle's outer surface (cylinder and
tip disc) is sampled densely and its exact distance to the voxels of a structure,
taken as cubes, is measured. Used by the tests and the validation script to confirm
that what the planner calls safe is safe.
"""

from __future__ import annotations

import numpy as np
from scipy.spatial import cKDTree

from trajplan import labels as lt
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


def distance_to_structure(points: np.ndarray, labels: Volume, name: str) -> float:
    """Exact smallest distance (mm) from ``points`` to the voxels (as cubes) of a structure."""
    idx = np.argwhere(labels.array == lt.value(name))
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
        d = distance_to_structure(points, labels, structure)
        if d < margin - 1e-6:
            violations[structure] = round(d, 2)
    return violations
