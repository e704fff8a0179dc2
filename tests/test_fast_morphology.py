"""The segmentation's fast stand-ins give what the scipy operations they replace give (distances to float32
precision, the same voxels at every threshold read)."""

import os

import numpy as np
import pytest
from scipy import ndimage
from skimage.segmentation import expand_labels

from segmentation.bone import (
    ball,
    closing,
    dilated,
    dilated_by_ball,
    eroded_by_ball,
    expanded_labels,
    fill_holes,
    opening,
    piece_maxima,
    piece_sizes_and_heights,
)
from segmentation.parts import FRACTURE_ACROSS_MM, FRACTURE_SHEET_MM, FRACTURE_SIDE_MM, _fracture_sheets, fracture_lines
from segmentation.separation import EROSION_STEPS_MM, _Erosions
from trajplan import labels as lt
from trajplan.distance import distance_mm, threads


def _blobs(shape=(60, 50, 40), seed=1) -> np.ndarray:
    mask = ndimage.gaussian_filter(np.random.default_rng(seed).random(shape), 3) > 0.5
    mask[:5] = True                     # touching the array's edge: eroded from the outside too
    return mask


@pytest.mark.parametrize("spacing", [(1.0, 1.0, 1.0), (2.0, 2.0, 2.0), (0.8, 0.8, 1.0), (0.86, 0.86, 1.0),
                                     (2.0, 2.0, 3.0), (0.7, 0.7, 1.25)])
def test_erosion_by_distance_equals_binary_erosion_by_ball(spacing):
    mask, spacing = _blobs(), np.asarray(spacing)
    erosions = _Erosions(mask, spacing)
    for depth in EROSION_STEPS_MM:
        expected = ndimage.binary_erosion(mask, structure=ball(depth, spacing))
        assert np.array_equal(erosions(depth), expected), depth


@pytest.mark.parametrize("spacing", [(1.0, 1.0, 1.0), (0.86, 0.86, 1.0), (0.97, 0.97, 1.0), (3.0, 3.0, 3.0),
                                     (2.0, 2.0, 3.0)])
def test_morphology_by_ball_equals_scipy_with_the_ball(spacing):
    mask, spacing = _blobs(), np.asarray(spacing)
    for radius in (0.5, 1.0, 1.5, 2.0, 3.0, 4.0, 5.0):         # 0.5 mm on a coarse grid: no reach, scipy itself
        structure = ball(radius, spacing)
        assert np.array_equal(eroded_by_ball(mask, radius, spacing), ndimage.binary_erosion(mask, structure))
        assert np.array_equal(dilated_by_ball(mask, radius, spacing), ndimage.binary_dilation(mask, structure))
        assert np.array_equal(opening(mask, radius, spacing), ndimage.binary_opening(mask, structure))
        assert np.array_equal(closing(mask, radius, spacing),
                              ndimage.binary_closing(mask, structure, border_value=0)), radius


@pytest.mark.parametrize("structure", [ball(2.5, np.array([0.8, 0.8, 1.0])), np.ones((3, 3, 3), dtype=bool),
                                       np.ones((3, 1, 1), dtype=bool)])
def test_dilation_in_the_bounding_box_equals_binary_dilation(structure):
    small = np.zeros((60, 50, 40), dtype=bool)
    small[20:24, 30:33, 10:12] = True
    small[0, 49, 39] = True                 # at the array's corner: the box is clipped there
    for mask in (small, _blobs(), np.zeros_like(small)):
        assert np.array_equal(dilated(mask, structure), ndimage.binary_dilation(mask, structure=structure))


@pytest.mark.parametrize("where", ["inside", "at_an_edge", "whole"])
def test_holes_filled_in_the_bounding_box_equal_binary_fill_holes(where):
    # a box of bone with cavities: closed ones (holes), and ones open to the box's side or the array's edge
    region = {"inside": np.s_[10:50, 8:45, 5:40], "at_an_edge": np.s_[0:40, 20:60, 10:50], "whole": np.s_[:]}[where]
    cavities = ndimage.gaussian_filter(np.random.default_rng(5).random((70, 60, 50)), 2) > 0.53
    mask = np.zeros((70, 60, 50), dtype=bool)
    mask[region] = ~cavities[region]
    expected = ndimage.binary_fill_holes(mask)
    assert (expected & ~mask).sum() > 50 and (~expected[region]).any()   # holes, and cavities that are not
    np.testing.assert_array_equal(fill_holes(mask), expected)
    pieces, _ = ndimage.label(expected & ~mask)
    sizes = np.bincount(pieces.ravel())
    small = mask | ((pieces > 0) & (sizes[pieces] <= 10))
    assert (small != expected).any()
    np.testing.assert_array_equal(fill_holes(mask, max_voxels=10), small)


def test_piece_sizes_heights_and_maxima_equal_scipy_measurements():
    mask = np.random.default_rng(0).random((40, 30, 20)) > 0.7
    pieces, count = ndimage.label(mask)
    index = np.arange(1, count + 1)
    sizes, heights = piece_sizes_and_heights(pieces, count)
    assert np.array_equal(sizes, ndimage.sum_labels(mask, pieces, index).astype(int))
    assert np.allclose(heights, [c[2] for c in ndimage.center_of_mass(mask, pieces, index)])
    values = np.random.default_rng(1).random((40, 1, 20))
    expected = ndimage.maximum(np.broadcast_to(values, mask.shape), pieces, index)
    assert np.allclose(piece_maxima(values, pieces, count), expected)


@pytest.mark.parametrize("spacing", [(1.0, 1.0, 1.0), (0.86, 0.86, 1.0), (2.0, 1.25, 3.0)])
def test_distance_in_mm_equals_scipy_distance_transform(spacing):
    mask = _blobs()
    expected = ndimage.distance_transform_edt(mask, sampling=spacing)
    found = distance_mm(mask, spacing)
    assert found.shape == mask.shape and np.all(found[~mask] == 0)
    assert np.allclose(found, expected, rtol=0, atol=1e-5)
    for threshold in (1.5, 2.5, 3.0, 4.5, 6.0):          # the thresholds the segmentation reads it at
        assert np.array_equal(found > threshold, expected > threshold), threshold


def test_distances_on_every_thread_count_are_the_same_and_dask_workers_get_one_thread(monkeypatch):
    mask = _blobs()
    monkeypatch.setenv("OMP_NUM_THREADS", "1")          # what dask's nanny sets for its workers
    assert threads() == 1
    one = distance_mm(mask, (0.86, 0.86, 1.0))
    monkeypatch.setenv("OMP_NUM_THREADS", "2")
    assert threads() == min(2, len(os.sched_getaffinity(0)))
    assert np.array_equal(distance_mm(mask, (0.86, 0.86, 1.0)), one)
    monkeypatch.setenv("OMP_NUM_THREADS", "many")       # not a count: every CPU this process may use
    assert threads() == len(os.sched_getaffinity(0))


def test_distance_in_mm_without_an_outside_is_infinite():
    assert np.all(np.isinf(distance_mm(np.ones((4, 5, 6), dtype=bool), (1.0, 1.0, 1.0))))
    assert np.all(distance_mm(np.zeros((4, 5, 6), dtype=bool), 2.0) == 0)


@pytest.mark.parametrize("spacing", [(1.0, 1.0, 1.0), (0.86, 0.86, 1.0), (2.0, 2.0, 3.0)])
@pytest.mark.parametrize("reach_mm", [2.0, 4.5, 12.0])
def test_labels_expanded_in_their_box_equal_expand_labels(spacing, reach_mm):
    # Three labelled blobs in the middle of a larger array (the box is smaller than the array),
    # the nearest label given at equal distances as skimage gives it.
    labels = np.zeros((90, 80, 60), dtype=np.int32)
    inner, _ = ndimage.label(_blobs((40, 36, 30), seed=3))
    labels[30:70, 25:61, 20:50] = np.minimum(inner, 3)
    expected = expand_labels(labels, distance=reach_mm, spacing=spacing)
    assert np.array_equal(expanded_labels(labels, reach_mm, np.asarray(spacing)), expected)
    assert not expanded_labels(np.zeros_like(labels), reach_mm, np.asarray(spacing)).any()


def test_fracture_lines_in_the_alae_box_equal_those_on_the_whole_array():
    # A textured ala block with a dark crack, well inside a larger array.
    spacing = np.array([0.8, 0.8, 1.0])
    shape = (110, 70, 80)
    x, y, z = np.meshgrid(*[np.arange(n, dtype=float) for n in shape], indexing="ij")
    ala = (x >= 35) & (x < 75) & (y >= 20) & (y < 50) & (z >= 15) & (z < 65)
    texture = ndimage.gaussian_filter(np.random.default_rng(2).normal(0.0, 1.0, shape), 1.0)
    hu = np.where(ala & (np.abs(x - 60.0) <= 0.75), 0.0, 150.0 + 25.0 * texture / texture.std())
    hu = ndimage.gaussian_filter(np.where(ala, hu, 40.0), 0.5).astype(np.float32)
    found = fracture_lines(hu, ala, spacing)
    sigma = (FRACTURE_ACROSS_MM / 0.8, FRACTURE_SHEET_MM / 0.8, FRACTURE_SHEET_MM / 1.0)
    whole = _fracture_sheets(hu, ala, spacing, sigma, int(round(FRACTURE_SIDE_MM / 0.8)))
    assert found.sum() > 100                                  # the crack is found
    assert np.array_equal(found, whole)


def test_label_mask_by_look_up_table_equals_isin():
    labels = np.random.default_rng(4).integers(0, 40, (30, 20, 10)).astype(np.uint8)
    for names in (lt.SACRAL_BONE, ("canal",), ("ilium_left", "L5")):
        values = [lt.value(n) for n in names]
        assert np.array_equal(lt.mask(labels, *names), np.isin(labels, values))
        assert np.array_equal(lt.mask(labels.astype(np.int32), *names), np.isin(labels, values))


@pytest.mark.parametrize("far", [False, True])
def test_pockets_given_the_nearest_sacral_label_in_their_box_as_on_the_whole_array(far):
    from segmentation.sacral import _given_to_nearest_sacral_label

    labels = np.zeros((80, 70, 60), dtype=np.uint8)
    labels[20:60, 20:50, 10:50] = lt.value("sacrum")
    labels[20:60, 20:50, 30:50][_blobs((40, 30, 20), seed=5)] = lt.value("ala_left")
    where = np.zeros(labels.shape, dtype=bool)
    where[30:40, 28:40, 25:35] = True                       # a pocket inside the bone
    labels[where] = 0
    if far:                                                 # and a voxel 15 voxels from any sacral bone
        where[5, 5, 5] = True
    sacral = lt.sacral_bone(labels)
    _, nearest = ndimage.distance_transform_edt(~sacral, return_indices=True)
    expected = labels.copy()
    expected[where] = labels[tuple(nearest)][where]
    assert np.array_equal(_given_to_nearest_sacral_label(labels, where), expected)
    assert {lt.name(v) for v in np.unique(expected[where])} == {"sacrum", "ala_left"}


def test_pieces_labelled_in_their_box_equal_scipy_labels_and_measurements():
    from segmentation.separation import MIN_PIECE_ML, _pieces

    spacing = np.array([0.8, 0.8, 1.0])
    mask = np.zeros((90, 80, 70), dtype=bool)
    mask[20:70, 15:65, 10:60] = _blobs((50, 50, 50), seed=6)[:, :, :50]
    labels, pieces = _pieces(mask, spacing)
    expected, count = ndimage.label(mask)
    assert np.array_equal(labels, expected)
    sizes = ndimage.sum_labels(mask, expected, np.arange(1, count + 1)) * np.prod(spacing) / 1000.0
    assert [p.label for p in pieces] == [i + 1 for i in np.flatnonzero(sizes >= MIN_PIECE_ML)]
    for piece in pieces:
        box = ndimage.find_objects(expected)[piece.label - 1]
        assert np.allclose(piece.centre, np.array(ndimage.center_of_mass(expected == piece.label)) * spacing)
        assert np.allclose(piece.lo, [b.start * h for b, h in zip(box, spacing)])
        assert np.allclose(piece.hi, [(b.stop - 1) * h for b, h in zip(box, spacing)])
