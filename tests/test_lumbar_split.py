"""The lumbar spine parted from a sacral mask that took it in, by the sacroiliac joints (hand-built masks)."""

import numpy as np
from scipy import ndimage

from segmentation.parts import disc
from segmentation.separation import _joints_top, _lumbar_part

SPACING = np.array([1.0, 1.0, 1.0])
MIDLINE_MM = 70.0


def _pelvis(with_spine: bool = True) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(joined sacral mask, left ilium, right ilium, the lumbar block) on a 1 mm grid (L, P, S).

    The sacrum is a 100 mm wide block up to slice 60 with an ilium 4 mm beyond each side (the
    joints) up to slice 70; the lumbar block (40 mm wide, slices 64-109) sits on it through a
    10 x 10 x 4 mm bridge (a disc the dark-marrow fill made bone).
    """
    shape = (140, 60, 120)
    sacrum = np.zeros(shape, bool)
    sacrum[20:121, 10:50, 10:61] = True
    lumbar = np.zeros(shape, bool)
    if with_spine:
        lumbar[50:91, 10:50, 64:110] = True
        sacrum[65:76, 25:36, 61:64] = True
    left, right = np.zeros(shape, bool), np.zeros(shape, bool)
    left[125:140, 5:55, 0:71] = True
    right[0:16, 5:55, 0:71] = True
    return sacrum | lumbar, left, right, lumbar


def test_the_joints_top_is_where_the_sacrum_stops_meeting_both_ilia():
    joined, left, right, _ = _pelvis()
    contact = [joined & (ndimage.distance_transform_edt(~ilium) <= 6.0) for ilium in (left, right)]
    assert _joints_top((contact[0], contact[1])) == 60
    assert _joints_top((contact[0], np.zeros_like(left))) is None


def test_the_lumbar_block_is_cut_off_at_the_bridge_and_the_sacrum_keeps_its_whole_block():
    joined, left, right, lumbar = _pelvis()
    found = _lumbar_part(joined, (left, right), SPACING, MIDLINE_MM)
    assert found is not None
    sacrum_block = joined & ~lumbar
    sacrum_block[:, :, 61:] = False
    assert not (found & sacrum_block).any()
    assert (found & lumbar).sum() / lumbar.sum() > 0.99
    assert found.sum() - lumbar.sum() <= 10 * 10 * 3      # at most the bridge besides the block


def test_nothing_is_cut_from_a_sacrum_with_no_bone_above_its_joints():
    joined, left, right, _ = _pelvis(with_spine=False)
    assert _lumbar_part(joined, (left, right), SPACING, MIDLINE_MM) is None


def test_the_disc_is_soft_tissue_with_sacrum_below_and_L5_above_not_dark_bone_beside_them():
    shape = (60, 40, 60)
    sacrum = np.zeros(shape, bool)
    sacrum[10:50, 5:35, 5:30] = True
    l5 = np.zeros(shape, bool)
    l5[15:45, 5:35, 36:55] = True
    l5[5:10, 5:35, 20:36] = True                         # an articular process coming down beside the sacrum
    smooth = np.full(shape, 80.0, dtype=np.float32)
    solid = sacrum | l5
    found = disc(sacrum, l5, solid, smooth, SPACING, midline_i=30.0)
    gap = np.zeros(shape, bool)
    gap[15:45, 5:35, 30:36] = True
    assert (found & gap).sum() / gap.sum() > 0.9
    beside = np.zeros(shape, bool)
    beside[0:5, :, 20:30] = True                         # lateral of the sacrum, beside the articular process
    assert not (found & beside).any()
