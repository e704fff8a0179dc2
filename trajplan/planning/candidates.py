"""Candidate needle paths per technique and side: entry points on the dorsal bone surface,
targets in the ala, on the fracture line or in the lesion.

Short axis (CT-guided): entries on the dorsal surface of the ala at the level of the
target, tips on the fracture line (or in the lesion, or in the S1-S2 ala).
Long axis (fluoroscopy-guided): entries on the inferior dorsal ala at S4, tips in the
S1 ala. Technique limits are applied later, in :mod:`trajplan.planning.scoring`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from trajplan import labels as lt
from trajplan.distance import distance_mm
from trajplan.errors import InputError
from trajplan.labels import Side
from trajplan.needle import Technique
from trajplan.planning.distance import DistanceMaps

MAX_ENTRIES = 160
MAX_TARGETS = 80
LESION_MIN_BONE_SHARE = 0.3      # a lesion with less sacral bone around it lies outside the sacrum


@dataclass(frozen=True)
class Landmarks:
    """Where the sacrum is: its midline, level heights, long axis and dorsal entry surface."""

    midline_x: float                       # world x of the sacral midline (canal)
    level_z: dict[str, float]              # S1..S4 -> world z of the foramina (or estimate)
    axis: np.ndarray                       # unit vector S4 -> S1 along the sacrum
    inward_normal: np.ndarray              # (3, n) world inward normals at the surface voxels
    surface_index: np.ndarray              # (n, 3) crop indices of dorsal-facing surface voxels
    depth_mm: np.ndarray                   # distance of each voxel to the outside of the bone

    def side_of(self, x: np.ndarray) -> np.ndarray:
        """+1 where world x lies on the patient's left of the midline, -1 on the right."""
        return np.where(np.asarray(x) >= self.midline_x, 1.0, -1.0)


def _centroid(maps: DistanceMaps, names: tuple[str, ...]) -> np.ndarray | None:
    idx = np.argwhere(lt.mask(maps.labels, *names))
    return maps.labels.index_to_world(idx).mean(axis=0) if len(idx) else None


def find_landmarks(maps: DistanceMaps) -> Landmarks:
    """Midline, level heights (from the foramina), long axis and dorsal surface of the sacrum."""
    crop = maps.labels
    bone_world = crop.index_to_world(np.argwhere(maps.bone))
    canal = _centroid(maps, ("canal",))
    midline_x = float(canal[0] if canal is not None else np.median(bone_world[:, 0]))
    zmin, zmax = np.percentile(bone_world[:, 2], [2, 98])
    level_z = {}
    fractions = {"S1": 0.78, "S2": 0.58, "S3": 0.42, "S4": 0.28}   # fallback: along the bone height
    for level, fraction in fractions.items():
        centre = _centroid(maps, (f"foramen_{level}_left", f"foramen_{level}_right"))
        level_z[level] = float(centre[2]) if centre is not None else float(zmin + fraction * (zmax - zmin))
    top = _centroid(maps, ("foramen_S1_left", "foramen_S1_right"))
    bottom = _centroid(maps, ("foramen_S4_left", "foramen_S4_right"))
    if top is None or bottom is None:
        axis = np.array([0.0, -0.5, 1.0])
    else:
        axis = top - bottom
    axis = axis / np.linalg.norm(axis)

    # Dorsal-facing bone surface that borders soft tissue (not a joint, lumen or other bone).
    soft = crop.array == 0
    surface = maps.bone & ndimage.binary_dilation(soft)
    smooth = ndimage.gaussian_filter(maps.bone.astype(np.float32), sigma=1.5 / crop.spacing)
    grad_index = np.stack(np.gradient(smooth), axis=0)                      # d/d(index)
    idx = np.argwhere(surface)
    g = grad_index[:, idx[:, 0], idx[:, 1], idx[:, 2]] / crop.spacing[:, None]
    inward = crop.direction @ g
    inward /= np.maximum(np.linalg.norm(inward, axis=0), 1e-6)
    dorsal = -inward[1] > 0.3                                               # outward normal points posterior
    depth = distance_mm(maps.bone, crop.spacing)
    return Landmarks(midline_x=midline_x, level_z=level_z, axis=axis,
                     inward_normal=inward[:, dorsal], surface_index=idx[dorsal], depth_mm=depth)


@dataclass(frozen=True)
class Targets:
    """Where cement should go on one side: points (world), their kind and a centre."""

    kind: str                  # "fracture", "lesion" or "ala"
    points: np.ndarray         # (n, 3) LPS mm of target voxels (all of them, for coverage)
    centre: np.ndarray | None  # lesion centre (LPS mm)


def lesion_bone_share(maps: DistanceMaps) -> float | None:
    """The share of sacral bone in the two voxels around the ``lesion`` label (None without one).

    Below LESION_MIN_BONE_SHARE the lesion lies outside the sacrum: no cement target.
    """
    lesion_voxels = lt.mask(maps.labels, "lesion")
    if not lesion_voxels.any():
        return None
    shell = ndimage.binary_dilation(lesion_voxels, iterations=2) & ~lesion_voxels
    return float(np.mean(maps.bone[shell])) if shell.any() else 1.0


def find_targets(maps: DistanceMaps, marks: Landmarks, side: Side, *, lesion: bool = True) -> Targets:
    """Fracture voxels of ``side``, else the lesion (unless ``lesion`` is False, or the lesion lies
    outside the sacrum: :func:`lesion_bone_share`), else the S1-S2 ala of that side."""
    crop = maps.labels
    sign = side.sign
    if lesion:
        share = lesion_bone_share(maps)
        lesion = share is None or share >= LESION_MIN_BONE_SHARE
    for kind in ("fracture", "lesion") if lesion else ("fracture",):
        idx = np.argwhere(lt.mask(crop, kind))
        if not len(idx):
            continue
        world = crop.index_to_world(idx)
        if kind == "lesion":
            centre = world.mean(axis=0)
            on_side = marks.side_of(centre[0]) == sign or abs(centre[0] - marks.midline_x) < 10.0
            if on_side:
                return Targets(kind, world, centre)
            continue
        mine = marks.side_of(world[:, 0]) == sign
        if mine.any():
            return Targets(kind, world[mine], None)
    ala = np.argwhere(lt.mask(crop, f"ala_{side}") & (marks.depth_mm >= 4.0))
    if not len(ala):
        raise InputError(f"no ala on the {side} side in the label map")
    world = crop.index_to_world(ala)
    band = (world[:, 2] >= marks.level_z["S2"] - 5.0)
    return Targets("ala", world[band] if band.any() else world, None)


def _subsample(points: np.ndarray, count: int, rng: np.random.Generator) -> np.ndarray:
    if len(points) <= count:
        return points
    return points[np.sort(rng.choice(len(points), size=count, replace=False))]


def candidate_pairs(maps: DistanceMaps, marks: Landmarks, targets: Targets, technique: Technique, side: Side,
                    *, radius_mm: float, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """All entry x tip pairs of a technique on one side.

    Returns
    -------
    entries, tips : (n, 3) arrays, LPS mm
    normals : (n, 3) inward surface normal at each entry

    Raises
    ------
    InputError
        When the side has no ala, or no dorsal bone surface to enter.
    """
    crop = maps.labels
    rng = np.random.default_rng(seed)
    sign = side.sign
    ala = lt.mask(crop, f"ala_{side}", "fracture")
    if not lt.mask(crop, f"ala_{side}").any():
        raise InputError(f"no ala on the {side} side in the label map")
    surface_world = crop.index_to_world(marks.surface_index)
    surface_ala = ala[tuple(marks.surface_index.T)] & (marks.side_of(surface_world[:, 0]) == sign)
    z = surface_world[:, 2]
    if technique is Technique.SHORT_AXIS:
        if targets.kind == "ala":
            keep = surface_ala & (z >= marks.level_z["S3"])
        else:
            tz = targets.points[:, 2]
            keep = surface_ala & (z >= tz.min() - 15.0) & (z <= tz.max() + 15.0)
        target_pts = targets.points
        if targets.kind == "lesion":
            near = np.linalg.norm(target_pts - targets.centre, axis=1)
            target_pts = target_pts[near <= max(near.max() * 0.5, 2.0)]
    elif technique is Technique.LONG_AXIS:
        low, high = marks.level_z["S4"] - 10.0, 0.5 * (marks.level_z["S3"] + marks.level_z["S4"])
        keep = surface_ala & (z >= low) & (z <= high)
        s1 = np.argwhere(lt.mask(crop, f"ala_{side}", "fracture") & (marks.depth_mm >= radius_mm + 2.0))
        s1_world = crop.index_to_world(s1)
        s1_world = s1_world[(s1_world[:, 2] >= marks.level_z["S1"] - 8.0)
                            & (marks.side_of(s1_world[:, 0]) == sign)]
        slack = maps.gather(maps.slack, crop.world_to_index(s1_world)) if len(s1_world) else np.zeros(0)
        target_pts = s1_world[slack >= radius_mm + 1.0]
    else:
        raise InputError(f"unknown technique {technique!r} (use short_axis or long_axis)")
    if not keep.any():
        raise InputError(f"no dorsal bone surface to enter for a {technique.adjective} "
                         f"path on the {side}")
    if not len(target_pts):
        raise InputError(f"no target in the {side} ala for a {technique.adjective} path")
    pick = _subsample(np.flatnonzero(keep), MAX_ENTRIES, rng)
    entries = surface_world[pick]
    normals = marks.inward_normal[:, pick].T
    tips = _subsample(target_pts, MAX_TARGETS, rng)
    e = np.repeat(entries, len(tips), axis=0)
    n = np.repeat(normals, len(tips), axis=0)
    t = np.tile(tips, (len(entries), 1))
    return e, t, n
