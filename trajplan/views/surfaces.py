"""Label map -> smoothed surface meshes in world (LPS mm) coordinates."""

from __future__ import annotations

import numpy as np
from skimage import measure

from trajplan import labels as lt
from trajplan.volume import Volume

# What the 3D views show: (group name, label names, colour label, opacity).
SURFACE_GROUPS: tuple[tuple[str, tuple[str, ...], str, float], ...] = (
    ("sacrum", lt.SACRAL_BONE, "sacrum", 0.25),
    ("ilium", ("ilium_left", "ilium_right"), "ilium_left", 0.12),
    ("canal", ("canal",), "canal", 0.9),
    ("foramina", lt.FORAMINA, "foramen_S1_left", 0.9),
    ("anterior_cortex", ("anterior_cortex",), "anterior_cortex", 0.35),
    ("si_joints", ("si_joint_left", "si_joint_right"), "si_joint_left", 0.8),
    ("fracture", ("fracture",), "fracture", 1.0),
    ("lesion", ("lesion",), "lesion", 1.0),
)


def mask_surface(mask: np.ndarray, volume: Volume, *, step_size: int = 1) -> tuple[np.ndarray, np.ndarray] | None:
    """Marching-cubes surface of a boolean mask on ``volume``'s grid (every ``step_size``-th voxel).

    Returns
    -------
    (vertices (n, 3) in LPS mm, triangles (m, 3)) or None for an empty mask.
    """
    idx = np.argwhere(mask)
    if len(idx) < 4:
        return None
    lo = np.maximum(idx.min(axis=0) - 1, 0)
    hi = np.minimum(idx.max(axis=0) + 2, mask.shape)
    sub = np.pad(mask[lo[0]:hi[0], lo[1]:hi[1], lo[2]:hi[2]], 1).astype(np.float32)
    verts, faces, _, _ = measure.marching_cubes(sub, level=0.5, step_size=step_size)
    index = verts - 1 + lo
    return volume.index_to_world(index), faces


def label_surfaces(labels: Volume, *, smooth_iterations: int = 20) -> dict:
    """PyVista meshes of :data:`SURFACE_GROUPS` present in ``labels``: name -> (mesh, rgb, opacity).

    The marching-cubes meshes are smoothed, not decimated: decimating them took half the time of
    the plan's 3D picture (3.7 of 7.1 s on the 1 mm phantom of ``benchmarks/plan.py``) and rendering
    the full meshes off-screen costs no more. ``scene.html`` caps each mesh's triangles itself.
    """
    import pyvista as pv

    out = {}
    for name, members, colour_of, opacity in SURFACE_GROUPS:
        surface = mask_surface(lt.mask(labels, *members), labels)
        if surface is None:
            continue
        verts, faces = surface
        mesh = pv.PolyData(verts, np.hstack([np.full((len(faces), 1), 3), faces]).astype(np.int64))
        if smooth_iterations:
            mesh = mesh.smooth(n_iter=smooth_iterations, relaxation_factor=0.1)
        out[name] = (mesh, tuple(c / 255 for c in lt.color(colour_of)), opacity)
    return out
