"""Step 10a: the dark marrow that the labelled sacrum walls in is labelled as its bone; the bays of
its surface and the rims of its lumens are not."""

import numpy as np
import pytest

from segmentation.bone import NEIGHBOUR_STEPS, open_directions
from segmentation.sacral import marrow_pockets
from trajplan import labels as lt

SPACING = np.array([1.0, 1.0, 1.0])


def _open_by_walking(wall: np.ndarray, free: np.ndarray) -> np.ndarray:
    """open_directions by walking each ray voxel by voxel (the definition)."""
    count = np.zeros(wall.shape, dtype=int)
    for voxel in np.ndindex(wall.shape):
        for step in NEIGHBOUR_STEPS:
            point = np.add(voxel, step)
            while all(0 <= p < n for p, n in zip(point, wall.shape)) and free[tuple(point)]:
                point = point + step
            inside = all(0 <= p < n for p, n in zip(point, wall.shape))
            count[voxel] += not (inside and wall[tuple(point)])
    return count


@pytest.mark.parametrize("seed", [1, 2])
def test_open_directions_counts_the_rays_that_lead_out(seed):
    rng = np.random.default_rng(seed)
    wall = rng.random((9, 8, 7)) < 0.25
    free = ~wall & (rng.random(wall.shape) < 0.8)
    assert np.array_equal(open_directions(wall, free), _open_by_walking(wall, free))


def _ala_with(pocket_open_to: str) -> tuple[np.ndarray, np.ndarray]:
    """A 40 mm block of ala bone with a 16 mm marrow hole in it (unlabelled) that a 2 mm crack opens to
    the soft tissue behind it (``"crack"``), or a bay of its dorsal surface 20 mm wide and 8 mm deep
    (``"bay"``); and the hole or bay."""
    labels = np.zeros((80, 80, 80), dtype=np.uint8)
    labels[20:60, 20:60, 20:60] = lt.value("ala_left")
    hole = np.zeros(labels.shape, dtype=bool)
    if pocket_open_to == "crack":
        hole[32:48, 32:48, 32:48] = True
        labels[39:41, 48:60, 25:55] = 0           # a fracture gap 2 mm wide through the back wall
    else:
        hole[30:50, 52:60, 30:50] = True
    labels[hole] = 0
    return labels, hole


def test_a_pocket_behind_a_crack_is_bone_and_a_bay_is_not():
    labels, hole = _ala_with("crack")
    pockets = marrow_pockets(labels, SPACING)
    # walled in though its axial sections open through the crack: 86 %, less the voxels in line with the
    # crack (which see out through it) and 1.5 mm around them
    assert pockets[hole].mean() > 0.8
    assert not pockets[39:41, 50:60].any()                # the crack's outer part stays soft tissue
    labels, hole = _ala_with("bay")
    assert not marrow_pockets(labels, SPACING)[hole].any()


def test_the_missed_rim_of_a_foramen_is_not_filled():
    # A foramen runs front to back through the ala; its label misses a 1.5 mm rim of the lumen.
    labels = np.zeros((80, 80, 80), dtype=np.uint8)
    labels[20:60, 20:60, 20:60] = lt.value("ala_left")
    x, _, z = np.ogrid[:80, :80, :80]
    radius = np.hypot(x - 40, z - 40) + np.zeros((1, 80, 1))
    labels[(radius <= 4.5) & (labels > 0)] = 0
    labels[(radius <= 3.0) & (np.arange(80)[None, :, None] >= 20) & (np.arange(80)[None, :, None] < 60)] = \
        lt.value("foramen_S1_left")
    rim = (radius > 3.0) & (radius <= 4.5) & (labels == 0)
    rim[:, :20] = rim[:, 60:] = False
    assert rim.sum() > 500
    assert not marrow_pockets(labels, SPACING)[rim].any()


def test_a_pocket_walled_in_by_sacrum_and_ilium_goes_to_the_sacrum_only_where_nearer_to_it():
    # Marrow walled in half by the ala and half by the ilium (a joint with no gap at this grid): as a whole
    # it is bounded by sacral bone less than POCKET_SACRAL_SHARE, which left all of it out; each voxel
    # nearer to the ala and more than POCKET_OTHER_CLEAR_MM from the ilium is the ala's now, each nearer
    # to the ilium stays unlabelled.
    labels = np.zeros((80, 60, 60), dtype=np.uint8)
    labels[10:40, 10:50, 10:50] = lt.value("ala_left")
    labels[40:70, 10:50, 10:50] = lt.value("ilium_left")
    pocket = np.zeros(labels.shape, dtype=bool)
    pocket[24:56, 20:40, 20:40] = True
    labels[pocket] = 0
    pockets = marrow_pockets(labels, SPACING)
    assert pockets[24:34][pocket[24:34]].mean() > 0.95
    assert not pockets[40:].any()
