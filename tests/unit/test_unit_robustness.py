"""Placement-error Monte Carlo (trajplan.robustness) beside a canal one voxel thin (``unit_maps.build_canal_line``).

A needle parallel to the canal at ``d`` mm breaches it when the nearest voxel centre of a point
of its axis lies closer than radius + half the voxel diagonal (2.391 mm for an 11 G needle in
1 mm voxels). With entry error only, every sample is the planned needle shifted by a 2-D
Gaussian offset, so the breach probability is the Gaussian mass of the 21 unit voxel cells
whose centres lie within that reach of the canal: a number worked out without the code.
"""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import norm

from trajplan.needle import radius_mm
from trajplan.planning.defaults import resolve_margins
from trajplan.planning.distance import build_distance_maps
from trajplan.planning.robustness import breach_probability, perturbed_paths

RADIUS = radius_mm(11)


@pytest.fixture(scope="module")
def maps(canal_line):
    return build_distance_maps(canal_line, resolve_margins())


def needle_at(d: float) -> tuple[list[float], list[float]]:
    """A 40 mm needle parallel to the canal, ``d`` mm to its left."""
    return [d, 0.0, 10.0], [d, 0.0, 50.0]


def gaussian_mass_within_reach(d: float, sigma: float, reach: float) -> float:
    """P(the nearest voxel centre of (d + N(0, sigma), N(0, sigma)) is within ``reach`` of (0, 0))."""
    cells = [(i, j) for i in range(-4, 5) for j in range(-4, 5) if i * i + j * j < reach * reach]
    assert len(cells) == 21

    def mass(c, mean):
        return norm.cdf(c + 0.5, mean, sigma) - norm.cdf(c - 0.5, mean, sigma)

    return float(sum(mass(i, d) * mass(j, 0.0) for i, j in cells))


def test_zero_spread_gives_zero_breach_probability_beside_the_canal_and_one_through_it(maps):
    reach = RADIUS + maps.half_voxel_mm
    assert reach == pytest.approx(1.525 + np.sqrt(3) / 2)
    for d in (3.0, 4.0, 6.0, 15.0):                          # clear: d > 2.391
        entry, tip = needle_at(d)
        got = breach_probability(maps, entry, tip, radius=RADIUS, samples=50,
                                 entry_sigma_mm=0.0, angle_sigma_deg=0.0)
        assert got == {"any": 0.0}, d
    for d in (0.0, 1.0, 2.0):                                # within reach: every sample breaches
        entry, tip = needle_at(d)
        got = breach_probability(maps, entry, tip, radius=RADIUS, samples=50,
                                 entry_sigma_mm=0.0, angle_sigma_deg=0.0)
        assert got == {"any": 1.0, "canal": 1.0}, d


def test_a_needle_within_the_spread_of_the_canal_may_breach_it_and_one_far_away_does_not(maps):
    entry, tip = needle_at(4.0)                              # clear by 1.6 mm, inside a 2 mm spread
    got = breach_probability(maps, entry, tip, radius=RADIUS, samples=300)
    assert 0.0 < got["any"] < 0.5 and got["canal"] == got["any"]
    nearer = breach_probability(maps, *needle_at(3.0), radius=RADIUS, samples=300)
    assert nearer["any"] > got["any"]
    far = breach_probability(maps, *needle_at(18.0), radius=RADIUS, samples=300)
    assert far == {"any": 0.0}                               # 15.6 mm clear: more than 6 sigma at the tip
    assert breach_probability(maps, entry, tip, radius=RADIUS, samples=300) == got     # seeded
    assert breach_probability(maps, entry, tip, radius=3 * RADIUS, samples=300)["any"] > got["any"]


@pytest.mark.parametrize("d", [1.0, 3.0, 6.0])
def test_breach_probability_under_entry_error_is_the_gaussian_mass_within_reach(maps, d):
    entry, tip = needle_at(d)
    got = breach_probability(maps, entry, tip, radius=RADIUS, samples=4000, entry_sigma_mm=2.0,
                             angle_sigma_deg=0.0, seed=1)
    expected = gaussian_mass_within_reach(d, 2.0, RADIUS + maps.half_voxel_mm)
    # 4000 samples: standard error at most 0.008
    assert got["any"] == pytest.approx(expected, abs=0.025), (d, got, expected)


def test_perturbed_paths_keep_length_and_offset_the_entry_across_the_needle():
    rng = np.random.default_rng(0)
    entry, tip = np.array([1.0, 2.0, 3.0]), np.array([21.0, -18.0, 13.0])
    length = np.linalg.norm(tip - entry)
    d = (tip - entry) / length
    entries, tips = perturbed_paths(entry, tip, samples=500, entry_sigma_mm=2.0, angle_sigma_deg=3.0, rng=rng)
    assert entries.shape == tips.shape == (500, 3)
    assert np.allclose(np.linalg.norm(tips - entries, axis=1), length)
    assert np.allclose((entries - entry) @ d, 0.0, atol=1e-9)                       # offsets across the needle
    assert np.std(np.linalg.norm(entries - entry, axis=1)) > 0.5
    angles = np.degrees(np.arccos(np.clip((tips - entries) @ d / length, -1, 1)))
    assert 2.0 < np.median(angles) < 5.0                     # Rayleigh median of 3 deg tilts: 3.5 deg
    still_e, still_t = perturbed_paths(entry, tip, samples=5, entry_sigma_mm=0.0, angle_sigma_deg=0.0, rng=rng)
    assert np.allclose(still_e, entry) and np.allclose(still_t, tip)
