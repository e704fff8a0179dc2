"""The canal's axial holes broken by an interlaminar gap stay one canal (segmentation.lumens._canal_pieces)."""

from __future__ import annotations

import numpy as np

from segmentation.lumens import find_canal
from segmentation.metrics import enclosed_canal

SPACING = np.array([2.0, 2.0, 2.0])


def sacrum_with_canal(gap_slices: range, stray_x: int | None = None) -> np.ndarray:
    """A block of bone (canonical axes) with a canal 10 x 8 mm running head to foot through it, its ring
    open posteriorly over ``gap_slices``; with ``stray_x`` a second hole as large, off to the side."""
    bone = np.zeros((60, 40, 40), dtype=bool)
    bone[10:50, 8:32, 2:38] = True
    bone[27:32, 18:22, :] = False                 # the canal: 5 x 4 voxels
    for z in gap_slices:
        bone[23:36, 18:32, z] = False             # its roof open to the back, wider than the closing bridges
    if stray_x is not None:
        bone[stray_x:stray_x + 5, 18:22, 24:34] = False
    return bone


def test_a_canal_open_behind_for_two_slices_is_found_above_and_below_the_gap():
    bone = sacrum_with_canal(range(20, 22))
    canal = find_canal(bone, SPACING, midline_i=29.0)
    assert canal[27:32, 18:22, 2:20].all() and canal[27:32, 18:22, 22:38].all()


def test_a_hole_beyond_the_gap_limits_is_not_the_canal():
    far = sacrum_with_canal(range(20, 28))         # 16 mm open: more than CANAL_PIECE_GAP_MM
    canal = find_canal(far, SPACING, midline_i=29.0)
    assert canal[27:32, 18:22, 2:20].all() and not canal[:, :, 28:].any()
    aside = sacrum_with_canal(range(20, 22), stray_x=40)   # a hole 22 mm to the side
    canal = find_canal(aside, SPACING, midline_i=29.0)
    assert not canal[40:45].any()


def test_the_reference_canal_is_the_closed_ring_near_the_centre():
    # segmentation.metrics.enclosed_canal, the validation's reference canal: holes of the axial
    # sections within 15 mm of the sacrum's centre left to right, not the open slices nor a hole aside.
    bone = sacrum_with_canal(range(20, 22), stray_x=40)
    canal = enclosed_canal(bone, SPACING)
    assert canal[27:32, 18:22, 2:20].all() and canal[27:32, 18:22, 22:38].all()
    assert not canal[:, :, 20:22].any() and not canal[40:45].any()
