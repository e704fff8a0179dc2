"""Small hand-built label maps for the unit tests of the planning modules.

Every map is a :class:`~trajplan.volume.Volume` with identity direction and 1 mm voxels whose
voxel centres sit on whole millimetres, so ``world == index + origin`` and distances between
voxel centres can be worked out by hand. Structures are boxes given in world mm (inclusive
bounds on voxel centres), labelled with the values of :mod:`trajplan.labels`.

The mini sacrum (``mini_sacrum``), world LPS mm (+x left, +y posterior, +z superior):

======================  =====================================================
sacrum (body)           ``|x| <= 8``, ``-10 <= y <= 10``, ``0 <= z <= 50``
ala_left / ala_right    ``8 < x <= 25`` / ``-25 <= x < -8``, same y and z
anterior_cortex         the anterior face ``y in {-10, -9}`` over the whole width
canal                   ``|x| <= 3``, ``2 <= y <= 6``, the whole height
foramen_Sn_left/right   ``11 <= |x| <= 14``, all y, ``z in {c-1, c, c+1}`` with
                        c = 42, 32, 22, 12 for S1..S4
fracture (left)         ``18 <= x <= 19``, ``|y| <= 8``, ``15 <= z <= 40``
======================  =====================================================

and soft tissue (0) around it, 10 mm on every side.
"""

from __future__ import annotations

import numpy as np

from trajplan import labels as lt
from trajplan.volume import Volume

LEVEL_Z = {"S1": 42.0, "S2": 32.0, "S3": 22.0, "S4": 12.0}


def empty_map(lo: tuple[float, float, float], hi: tuple[float, float, float]) -> Volume:
    """An all-background 1 mm label map whose voxel centres run from ``lo`` to ``hi`` (world mm)."""
    lo_arr, hi_arr = np.asarray(lo, float), np.asarray(hi, float)
    shape = tuple(int(n) for n in np.rint(hi_arr - lo_arr) + 1)
    return Volume(np.zeros(shape, dtype=np.uint8), (1.0, 1.0, 1.0), lo_arr)


def paint(volume: Volume, name: str, lo, hi) -> None:
    """Label the voxels whose centres lie in the world box ``lo..hi`` (inclusive) ``name``, in place."""
    a = np.rint(volume.world_to_index(np.asarray(lo, float))).astype(int)
    b = np.rint(volume.world_to_index(np.asarray(hi, float))).astype(int)
    volume.array[a[0]:b[0] + 1, a[1]:b[1] + 1, a[2]:b[2] + 1] = lt.value(name)


def label_at(volume: Volume, points) -> np.ndarray:
    """Label values at world points ``(n, 3)`` (nearest voxel)."""
    idx = np.rint(volume.world_to_index(np.asarray(points, float))).astype(int)
    return volume.array[tuple(idx.T)]


def build_mini_sacrum(*, fracture: bool = True, lesion: str | None = None) -> Volume:
    """The mini sacrum of this module's docstring; ``lesion`` 'right' puts a 5 mm lesion cube in the
    right ala, 'outside' one in the soft tissue in front of the sacrum."""
    labels = empty_map((-35, -20, -10), (35, 20, 60))
    paint(labels, "sacrum", (-8, -10, 0), (8, 10, 50))
    paint(labels, "ala_left", (9, -10, 0), (25, 10, 50))
    paint(labels, "ala_right", (-25, -10, 0), (-9, 10, 50))
    paint(labels, "anterior_cortex", (-25, -10, 0), (25, -9, 50))
    paint(labels, "canal", (-3, 2, 0), (3, 6, 50))
    for level, z in LEVEL_Z.items():
        paint(labels, f"foramen_{level}_left", (11, -10, z - 1), (14, 10, z + 1))
        paint(labels, f"foramen_{level}_right", (-14, -10, z - 1), (-11, 10, z + 1))
    if fracture:
        paint(labels, "fracture", (18, -8, 15), (19, 8, 40))
    if lesion == "right":
        paint(labels, "lesion", (-20, -2, 28), (-16, 2, 32))
    elif lesion == "outside":
        paint(labels, "lesion", (-2, -18, 20), (2, -14, 24))
    return labels


def build_canal_line(half_width: float = 20.0) -> Volume:
    """A block of sacral bone (``|x|, |y| <= half_width``, ``0 <= z <= 60``) pierced along z by a canal
    one voxel thin at ``x = y = 0``: a point ``(d, 0, z)`` with ``0 <= z <= 60`` lies exactly ``d`` mm
    from the canal's nearest voxel centre. No other critical structure."""
    labels = empty_map((-half_width - 5, -half_width - 5, -5), (half_width + 5, half_width + 5, 65))
    paint(labels, "sacrum", (-half_width, -half_width, 0), (half_width, half_width, 60))
    paint(labels, "canal", (0, 0, 0), (0, 0, 60))
    return labels
