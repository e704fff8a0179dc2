"""The CT's noise (segmentation.noise): measured in soft tissue beside bone, fat and air, and the
smoothing it calls for, which brings a noisy CT's smoothed noise back to a quiet one's."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from segmentation.bone import SMOOTH_MM
from segmentation.noise import MAX_SMOOTH_MM, QUIET_HU, noise_sd_hu, smoothing_mm


def _body(noise_hu: float, seed: int = 0, shape: tuple[int, int, int] = (96, 80, 40)) -> np.ndarray:
    """Air around an elliptic body of soft tissue (40 HU) with a fat layer (-100 HU) under its
    skin and a bone (700 HU) and a bowel of gas (-900 HU) inside, plus white noise of ``noise_hu``."""
    x, y = np.ogrid[:shape[0], :shape[1]]
    r = ((x - shape[0] / 2) / (shape[0] * 0.45)) ** 2 + ((y - shape[1] / 2) / (shape[1] * 0.45)) ** 2
    plane = np.where(r <= 1.0, -100.0, -1000.0)
    plane[r <= 0.7] = 40.0
    plane[20:35, 30:50] = 700.0
    plane[60:72, 20:32] = -900.0
    hu = np.repeat(plane[:, :, None], shape[2], axis=2).astype(np.float32)
    return hu + np.random.default_rng(seed).normal(0.0, noise_hu, shape).astype(np.float32)


@pytest.mark.parametrize("noise_hu", [5.0, 12.0, 20.0, 30.0, 60.0])
def test_the_noise_is_read_from_the_soft_tissue_within_3_percent(noise_hu):
    assert noise_sd_hu(_body(noise_hu)) == pytest.approx(noise_hu, rel=0.03)


def test_noise_that_neighbouring_voxels_share_reads_as_what_is_left_at_the_voxel_scale():
    smoothed = _body(0.0) + ndimage.gaussian_filter(np.random.default_rng(1).normal(0.0, 60.0, (96, 80, 40)), 1.0)
    measured = noise_sd_hu(smoothed)
    assert 0 < measured < 60.0 * 0.5


def test_no_noise_is_read_where_there_is_no_soft_tissue():
    bone_only = np.where(_body(10.0) > 300.0, 700.0, -1000.0).astype(np.float32)
    assert noise_sd_hu(bone_only) is None
    assert noise_sd_hu(np.zeros((4, 40, 40), dtype=np.float32)) is None     # thinner than a slab


def test_a_ct_no_noisier_than_the_quiet_one_or_on_a_coarser_grid_is_smoothed_as_before():
    fine, coarse = np.array([0.9, 0.9, 1.0]), np.array([1.0, 1.0, 1.25])
    for noise in (None, 0.0, 12.0, QUIET_HU):
        assert smoothing_mm(noise, fine) == SMOOTH_MM
    assert smoothing_mm(40.0, coarse) == SMOOTH_MM
    assert (SMOOTH_MM < smoothing_mm(QUIET_HU + 1.0, fine) < smoothing_mm(30.0, fine) < smoothing_mm(40.0, fine)
            < MAX_SMOOTH_MM)
    assert smoothing_mm(500.0, fine) == MAX_SMOOTH_MM


def test_the_smoothing_brings_a_noisy_cts_smoothed_noise_back_to_a_quiet_ones():
    spacing = np.array([1.0, 1.0, 1.0])
    rng = np.random.default_rng(2)
    quiet = ndimage.gaussian_filter(rng.normal(0.0, QUIET_HU, (60, 60, 60)), SMOOTH_MM / spacing).std()
    noise = 40.0
    noisy = ndimage.gaussian_filter(rng.normal(0.0, noise, (60, 60, 60)), smoothing_mm(noise, spacing) / spacing).std()
    plain = ndimage.gaussian_filter(rng.normal(0.0, noise, (60, 60, 60)), SMOOTH_MM / spacing).std()
    assert noisy == pytest.approx(quiet, rel=0.1)
    assert plain > 1.5 * quiet
