"""Robustness to placement error: Monte Carlo breach probabilities of a planned path.

The operator's needle deviates from the plan by an entry offset (2-D Gaussian in
the plane perpendicular to the needle, sigma ``entry_sigma_mm``) and an angular
error (two independent Gaussian tilts, sigma ``angle_sigma_deg``) about the entry.
The needle keeps its planned length. A sample breaches a structure when the
needle's surface reaches it (clearance < 0; not merely inside the margin).
"""

from __future__ import annotations

import numpy as np

from trajplan.planning.defaults import ANGLE_SIGMA_DEG, CRITICAL_STRUCTURES, ENTRY_SIGMA_MM, MC_SAMPLES
from trajplan.planning.distance import DistanceMaps

AXIS_SAMPLES = 32


def perturbed_paths(entry: np.ndarray, tip: np.ndarray, *, samples: int, entry_sigma_mm: float,
                    angle_sigma_deg: float, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """``samples`` perturbed (entries, tips) around a planned path."""
    length = float(np.linalg.norm(tip - entry))
    d = (tip - entry) / length
    helper = np.array([1.0, 0.0, 0.0]) if abs(d[0]) < 0.9 else np.array([0.0, 1.0, 0.0])
    u = np.cross(d, helper)
    u /= np.linalg.norm(u)
    v = np.cross(d, u)
    offsets = rng.normal(0.0, entry_sigma_mm, size=(samples, 2))
    tilts = np.tan(np.deg2rad(rng.normal(0.0, angle_sigma_deg, size=(samples, 2))))
    entries = entry + offsets[:, :1] * u + offsets[:, 1:] * v
    dirs = d + tilts[:, :1] * u + tilts[:, 1:] * v
    dirs /= np.linalg.norm(dirs, axis=1, keepdims=True)
    return entries, entries + length * dirs


def breach_probability(maps: DistanceMaps, entry, tip, *, radius: float, samples: int = MC_SAMPLES,
                       entry_sigma_mm: float = ENTRY_SIGMA_MM, angle_sigma_deg: float = ANGLE_SIGMA_DEG,
                       seed: int = 0) -> dict[str, float]:
    """Probability (0..1) that placement error breaches each structure, and ``"any"``.

    Only structures with a non-zero probability are listed, besides ``"any"``.
    """
    rng = np.random.default_rng(seed)
    entries, tips = perturbed_paths(np.asarray(entry, float), np.asarray(tip, float), samples=samples,
                                    entry_sigma_mm=entry_sigma_mm, angle_sigma_deg=angle_sigma_deg, rng=rng)
    crop = maps.labels
    fractions = np.linspace(0.0, 1.0, AXIS_SAMPLES)[None, :, None]
    start = crop.world_to_index(entries)[:, None, :]
    pts = start + fractions * (crop.world_to_index(tips)[:, None, :] - start)
    loss = radius + maps.half_voxel_mm
    any_breach = np.zeros(samples, dtype=bool)
    out: dict[str, float] = {}
    for structure in CRITICAL_STRUCTURES:
        breached = (maps.gather(maps.distance[structure], pts).min(axis=1) - loss) < 0.0
        any_breach |= breached
        if breached.any():
            out[structure] = round(float(breached.mean()), 4)
    return {"any": round(float(any_breach.mean()), 4), **out}
