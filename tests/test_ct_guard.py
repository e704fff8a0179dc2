"""The CT guard: the CT read along each needle contradicts labels that miss a gap, and stays
silent on needles that truly stay in bone (normal and severely osteoporotic phantoms)."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

import trajplan
from sample_ct.phantom import PhantomParams
from segmentation.pipeline import LESION_IN_FATTY_MARROW, Segmentation
from trajplan import labels as lt
from trajplan.planning import evaluate_path
from trajplan.planning.ct_guard import EXPECTED_DARK, ct_guard, entry_on_bone_edge, guard_profile, smoothed
from trajplan.planning.verify import axis_outside_bone, entry_offset_mm
from trajplan.volume import Volume

STEP = 0.5


def profile(*pieces: tuple[float, float], seed: int = 0, noise: float = 15.0) -> np.ndarray:
    """A CT profile from (length mm, HU) pieces, with noise."""
    hu = np.concatenate([np.full(int(round(mm / STEP)), value) for mm, value in pieces])
    return hu + np.random.default_rng(seed).normal(0.0, noise, len(hu))


def test_a_foramen_crossed_between_two_walls_is_seen_at_any_bone_density():
    for trabecular in (250.0, 120.0):
        hu = profile((1.5, 900), (10, trabecular), (1.5, 800), (6, 10), (1.5, 800), (10, trabecular))
        got = guard_profile(hu, STEP, np.zeros(len(hu), bool), reference=None, voxel_mm=1.0)
        assert got["reasons"] == ["ct_leaves_bone", "ct_crosses_cortex"], (trabecular, got)
        assert 5.0 <= got["leaves_bone_mm"] <= 7.0 and got["walls_crossed"] == 2


def test_trabecular_bone_alone_passes_even_when_dark_and_a_labelled_fracture_is_not_a_gap():
    rng = np.random.default_rng(1)
    for trabecular in (250.0, 100.0, 50.0):
        hu = profile((1.5, 900), (40, trabecular), noise=0.0) + rng.normal(0, 40, 83)
        got = guard_profile(hu, STEP, np.zeros(len(hu), bool), reference=None, voxel_mm=1.0)
        assert got["reasons"] == [] and got["walls_crossed"] == 0, (trabecular, got)
    hu = profile((1.5, 900), (15, 250), (5, 40), (5, 250))
    fracture = np.zeros(len(hu), bool)
    fracture[33:43] = True
    assert guard_profile(hu, STEP, fracture, reference=None, voxel_mm=1.0)["reasons"] == []
    assert guard_profile(hu, STEP, ~fracture & False, reference=None, voxel_mm=1.0)["reasons"] == ["ct_leaves_bone"]


def test_a_tip_in_soft_tissue_past_a_wall_is_seen_in_bone_too_uneven_for_a_soft_threshold():
    # Real sacrum 001 darkened (0.86 mm): the dorsal cortex, 4-5 mm of bone at 90-200 HU, a second wall
    # of 470-550 HU, then 3-7 mm of a foramen (14-64 HU) to the tip; the labelled bone near the path read
    # 212 HU with a spread too wide for a soft-tissue threshold (soft_hu null), the relative cortex 512 HU.
    reference = (211.8, 90.0)
    for tail_mm in (3.0, 6.0):
        hu = profile((1.5, 600), (4.5, 140), (1.5, 550), (tail_mm, 40), noise=20.0)
        got = guard_profile(hu, STEP, np.zeros(len(hu), bool), reference=reference, voxel_mm=0.86)
        assert got["soft_hu"] is None and got["walls_crossed"] == 0, got          # blind without the tip rule
        assert got["reasons"] == ["ct_tip_past_wall"] and tail_mm - 1.0 <= got["tip_soft_mm"] <= tail_mm, got
    # the same path ending in dark bone (100 HU), or in a target labelled dark by nature, is not marked
    hu = profile((1.5, 600), (4.5, 140), (1.5, 550), (6.0, 100), noise=20.0)
    assert guard_profile(hu, STEP, np.zeros(len(hu), bool), reference=reference, voxel_mm=0.86)["reasons"] == []
    hu = profile((1.5, 600), (4.5, 140), (1.5, 550), (6.0, 40), noise=20.0)
    lesion = np.arange(len(hu)) >= len(hu) - 14
    assert guard_profile(hu, STEP, lesion, reference=reference, voxel_mm=0.86)["reasons"] == []
    # a soft run that stops short of the tip is not this rule's (the wall and gap rules have it)
    hu = profile((1.5, 600), (4.5, 140), (1.5, 550), (3.0, 40), (4.0, 140), noise=20.0)
    assert guard_profile(hu, STEP, np.zeros(len(hu), bool), reference=reference, voxel_mm=0.86)["tip_soft_mm"] == 0.0


def _slab_case(beyond_hu: float, line_runs_on: bool) -> tuple[Volume, Volume]:
    """A 1 mm CT and labels along x: soft tissue, entry cortex, trabecular bone (ala), 6 mm of dense
    bone, a 2 mm dark line labelled fracture, then ``beyond_hu`` labelled ala (or fracture, where
    the line runs on along the axis)."""
    x = np.arange(80)
    hu = np.select([x < 20, x < 22, x < 45, x < 51, x < 53], [30.0, 700.0, 200.0, 800.0, 40.0], beyond_hu)
    label = np.select([x < 20, x < 51, x < 53], [0, lt.value("ala_left"), lt.value("fracture")],
                      lt.value("fracture") if line_runs_on else lt.value("ala_left"))
    ct = Volume(np.broadcast_to(hu[:, None, None], (80, 20, 20)).astype(np.float32).copy(), (1.0, 1.0, 1.0))
    labels = Volume(np.broadcast_to(label[:, None, None], (80, 20, 20)).astype(np.uint8).copy(), (1.0, 1.0, 1.0))
    return ct, labels


@pytest.mark.parametrize(("beyond_hu", "line_runs_on", "opens_out"), [
    (-120.0, False, True),      # fat past the line: the line is the bone's outside (the VHF pelvis's false one)
    (30.0, False, True),        # soft tissue past it
    (200.0, False, False),      # trabecular bone again: a crack inside the bone
    (-120.0, True, False),      # the labels run on in the line's plane: no far side to read
])
def test_a_fracture_line_at_the_tip_with_soft_tissue_beyond_it_is_unsafe_by_the_ct(beyond_hu, line_runs_on,
                                                                                    opens_out):
    ct, labels = _slab_case(beyond_hu, line_runs_on)
    axis = np.stack([np.linspace(20.0, 52.0, 65), np.full(65, 10.0), np.full(65, 10.0)], axis=1)
    got = ct_guard(ct, labels, axis, 0.5, labels.values_at(axis), dark_targets=EXPECTED_DARK)
    assert ("ct_fracture_opens_out" in got["reasons"]) is opens_out, got
    if line_runs_on:
        assert got["fracture_far_side_hu"] is None
    else:
        assert got["fracture_far_side_hu"] == pytest.approx(beyond_hu, abs=15.0), got
    # the dense bone and the dark line before the tip are excused as the line's margin and crack
    assert [r for r in got["reasons"] if r != "ct_fracture_opens_out"] == [], got


def test_a_groove_between_two_walls_is_seen_where_the_blur_hides_both_from_the_thresholds():
    # As on real sacrum 001 with its bone darkened (0.86 mm): a 1.5 mm groove of soft tissue between
    # two thin plates, in trabecular bone of 135 HU; smoothed, the plates stay below the cortex
    # threshold and the groove above the soft-tissue one.
    for seed in range(6):
        hu = profile((1.5, 900), (8, 135), (1.5, 320), (1.5, 40), (1.5, 420), (8, 135), seed=seed)
        got = guard_profile(hu, STEP, np.zeros(len(hu), bool), reference=(135.0, 30.0), voxel_mm=0.86)
        assert got["leaves_bone_mm"] == 0.0 and smoothed(hu, STEP)[6:].max() < got["cortex_hu"], got
        assert got["reasons"] == ["ct_crosses_cortex"] and got["walls_crossed"] == 2, (seed, got)
    # Dark marrow right under the entry cortex has one wall only (the entry's): not a groove.
    hu = profile((1.5, 900), (2.0, 60), (12, 135), (3, 420), (8, 135))
    got = guard_profile(hu, STEP, np.zeros(len(hu), bool), reference=(135.0, 30.0), voxel_mm=0.86)
    assert got["reasons"] == [] and got["walls_crossed"] == 0, got



def test_a_cleft_narrower_than_the_blur_between_two_walls_is_seen_though_no_darker_than_the_bone():
    # Real sacrum 001 with its bone darkened (0.86 mm), a short-axis needle 9 mm into the right ala:
    # a 1.5 mm cleft between two cortical plates read (trilinear, then smoothed) at 103 HU between
    # walls of 300 and 390 HU, in bone of 104 HU (66 HU labelled around it, spread 34): the needle
    # was called safe and left the reference bone for 2 mm.
    cleft = np.array([314, 289, 227, 161, 85, 67, 159, 251, 336, 432, 403], float)   # the CT every 0.5 mm
    for seed in range(6):
        hu = np.concatenate([profile((1.5, 400), (5, 90), seed=seed, noise=25.0), cleft,
                             profile((10, 90), seed=seed + 10, noise=25.0)])
        got = guard_profile(hu, STEP, np.zeros(len(hu), bool), reference=(66.0, 34.0), voxel_mm=0.86)
        assert got["soft_hu"] is None and smoothed(hu, STEP)[13:24].min() > 100.0, got   # no darker than the bone
        assert got["reasons"] == ["ct_crosses_cortex"] and got["walls_crossed"] == 2, (seed, got)
    # The same bone without the cleft, or with one wall only, is not marked.
    for seed in range(6):
        for hu in (profile((1.5, 400), (25, 100), seed=seed, noise=25.0),
                   profile((1.5, 400), (10, 100), (2, 380), (12, 100), seed=seed, noise=25.0)):
            got = guard_profile(hu, STEP, np.zeros(len(hu), bool), reference=(66.0, 34.0), voxel_mm=0.86)
            assert got["reasons"] == [] and got["walls_crossed"] == 0, (seed, got)


def test_a_gap_wider_than_the_window_between_two_walls_is_seen():
    # As on real sacrum 001 with its bone darkened, where a short-axis needle crossed a 4.5 mm gap
    # (30-65 HU) between its dorsal crest and the ala's cortex: the gap's minimum lay farther than
    # WALL_GAP_WINDOW_MM (3 mm) from the far wall, and the needle was called safe. Here 6 mm wide,
    # so that its minimum is farther than that from one wall wherever the noise puts it.
    for seed in range(6):
        hu = profile((1.5, 350), (3, 200), (1.5, 260), (6, 55), (1.0, 420), (10, 110), seed=seed, noise=10.0)
        got = guard_profile(hu, STEP, np.zeros(len(hu), bool), reference=(107.5, 33.5), voxel_mm=0.86)
        assert got["leaves_bone_mm"] < 3.0, (seed, got)
        assert got["reasons"] == ["ct_crosses_cortex"] and got["walls_crossed"] == 2, (seed, got)

def test_a_soft_tissue_gap_between_walls_is_seen_in_bone_too_uneven_for_the_relative_thresholds():
    # Real sacrum 001 with soft tissue added (0.86 mm), labels from its reference with the holes closed:
    # a short-axis needle crossed the entry cortex, a dorsal crest of 300 HU, 3 mm of soft tissue at
    # 30-41 HU and the ala's cortex at 410 HU, in bone of 156 HU; the labelled bone near it read 91 HU
    # with a spread of 114 HU, which leaves no soft-tissue threshold and puts the valley rule's peaks
    # out of reach. The needle was called safe and ran 3.4 mm outside the reference bone.
    reference = (91.0, 114.0)
    for seed in range(6):
        hu = profile((1.5, 520), (1.5, 90), (1.5, 330), (3.0, 35), (1.5, 430), (6, 156), seed=seed, noise=12.0)
        got = guard_profile(hu, STEP, np.zeros(len(hu), bool), reference=reference, voxel_mm=0.86)
        assert got["soft_hu"] is None, got
        assert got["reasons"] == ["ct_crosses_cortex"] and got["walls_crossed"] == 2, (seed, got)
    # The same path through dark bone (90 HU) instead of the gap, or with a soft gap under 2 mm (a
    # vessel channel), or with one wall only (dark marrow under the crest, no wall beyond), is not marked.
    for seed in range(6):
        for hu in (profile((1.5, 520), (1.5, 90), (1.5, 330), (3.0, 90), (1.5, 430), (6, 156), seed=seed, noise=12.0),
                   profile((1.5, 520), (1.5, 90), (1.5, 330), (1.0, 35), (1.5, 430), (6, 156), seed=seed, noise=12.0),
                   profile((1.5, 520), (1.5, 90), (1.5, 330), (3.0, 35), (10, 156), seed=seed, noise=12.0)):
            got = guard_profile(hu, STEP, np.zeros(len(hu), bool), reference=reference, voxel_mm=0.86)
            assert got["reasons"] == [] and got["walls_crossed"] == 0, (seed, got)


def scanned_slab(voxel_mm: float, edge_mm: float, *, outside_hu: float = 35.0) -> Volume:
    """A CT of a bone slab whose dorsal surface lies at y = ``edge_mm`` (LPS; the bone lies anterior,
    at smaller y): 1.5 mm of 900 HU cortex, then 200 HU trabecular bone, ``outside_hu`` behind
    it; drawn on a 0.1 mm grid and block-averaged to ``voxel_mm`` (the partial volume of a scan)."""
    fine = 0.1
    y = np.arange(0.0, 60.0, fine) + fine / 2
    hu = np.where(y > edge_mm, outside_hu, np.where(y > edge_mm - 1.5, 900.0, 200.0))
    per = int(round(voxel_mm / fine))
    column = hu[: len(hu) // per * per].reshape(-1, per).mean(axis=1)
    array = np.broadcast_to(column[None, :, None], (5, len(column), 5)).astype(np.float32)
    return Volume(array.copy(), spacing=(voxel_mm,) * 3, origin=(0.0, voxel_mm / 2, 0.0))


@pytest.mark.parametrize("voxel_mm", [1.0, 2.0, 3.0])
def test_a_bone_entry_a_voxel_proud_of_the_bone_moves_towards_its_edge_and_not_past_it(voxel_mm):
    edge = 30.0 + 0.3 * voxel_mm           # 0.3 of a voxel's cortex: that voxel is bright, its centre outside
    ct = scanned_slab(voxel_mm, edge)
    centres = ct.origin[1] + voxel_mm * np.arange(ct.shape[1])
    proud = centres[np.flatnonzero(ct.array[2, :, 2] > 100.0).max() + 1]    # one soft-tissue voxel labelled bone
    x = ct.index_to_world(np.array([[2.0, 0.0, 2.0]]))[0, 0]
    entry, tip = np.array([x, proud, 0.0]), np.array([x, proud - 30.0, 0.0])    # posterior to anterior
    moved = entry_on_bone_edge(ct, entry, tip)
    assert np.allclose(moved[[0, 2]], entry[[0, 2]])                           # along the axis
    assert proud - voxel_mm - 1e-6 <= moved[1] <= proud - 0.4 * voxel_mm       # forward, by 0.4 to 1 voxel
    assert moved[1] >= edge - 0.5, (voxel_mm, moved[1], edge)                   # not into the bone
    truth = Volume((np.indices(ct.shape)[1] * voxel_mm + ct.origin[1] <= edge).astype(np.uint8), spacing=ct.spacing,
                   origin=ct.origin)
    before = entry_offset_mm({"entry_lps": entry.tolist(), "tip_lps": tip.tolist()}, truth)
    after = entry_offset_mm({"entry_lps": moved.tolist(), "tip_lps": tip.tolist()}, truth)
    assert 0.0 <= after < before - 0.3 * voxel_mm, (before, after)


def test_a_bone_entry_without_a_brighter_cortex_beyond_stays_where_the_labels_put_it():
    ct = scanned_slab(2.0, 31.7, outside_hu=850.0)         # bone (another bone) on the outside too
    entry, tip = np.array([4.0, 33.0, 4.0]), np.array([4.0, 3.0, 4.0])
    assert np.array_equal(entry_on_bone_edge(ct, entry, tip), entry)


def test_the_entry_offset_is_signed_along_the_axis():
    bone = np.zeros((5, 60, 5), np.uint8)
    bone[:, :30] = 1                                       # bone at y < 30 (1 mm voxels: 29.5 its last centre)
    ref = Volume(bone, spacing=(1.0,) * 3)
    inward = {"tip_lps": [2.0, 5.0, 2.0]}
    assert entry_offset_mm({**inward, "entry_lps": [2.0, 33.0, 2.0]}, ref) == pytest.approx(3.5, abs=0.3)
    assert entry_offset_mm({**inward, "entry_lps": [2.0, 25.0, 2.0]}, ref) == pytest.approx(-4.5, abs=0.3)
    assert entry_offset_mm({"entry_lps": [2.0, 45.0, 2.0], "tip_lps": [2.0, 40.0, 2.0]}, ref) is None


def test_a_hole_crossed_in_bone_the_labels_left_out_before_the_planned_entry_counts_from_the_bone_entry():
    bone = np.zeros((5, 60, 5), np.uint8)
    bone[:, :40] = 1                                       # bone at y < 40 ...
    bone[:, 30:34] = 0                                     # ... with a 4 mm hole (a foramen) at y 30-34
    ref = Volume(bone, spacing=(1.0,) * 3)
    needle = {"skin_entry_lps": [2.0, 55.0, 2.0], "entry_lps": [2.0, 28.0, 2.0], "tip_lps": [2.0, 5.0, 2.0]}
    assert axis_outside_bone(needle, ref) == (0.0, False)                   # from the planned entry: in bone
    outside, _ = axis_outside_bone(needle, ref, from_reference_entry=True)  # from where it meets the bone
    assert outside == pytest.approx(4.0, abs=0.6)
    assert axis_outside_bone({**needle, "entry_lps": [2.0, 38.0, 2.0]}, ref)[0] == pytest.approx(4.0, abs=0.6)


@pytest.fixture(scope="module")
def phantom(phantom_of):
    return phantom_of(PhantomParams(seed=0, spacing=(2.0,) * 3, fracture="bilateral"))


def test_a_path_through_a_foramen_the_labels_missed_is_unsafe_by_the_ct(phantom):
    foramen = phantom.info["landmarks"]["foramina"]["foramen_S2_left"]
    lying = phantom.labels.array.copy()
    lying[lying == lt.value("foramen_S2_left")] = lt.value("sacrum")        # labels: solid bone there
    labels = phantom.labels.with_array(lying)
    middle = (np.asarray(foramen["dorsal_lps"]) + np.asarray(foramen["anterior_lps"])) / 2
    entry, tip = middle + [18.0, 0.0, 0.0], middle - [10.0, 0.0, 0.0]    # across it, ala to body
    blind = evaluate_path(labels, entry, tip, mc_samples=20)
    assert "foramen_S2_left" not in blind["reasons"] and blind["ct_guard"] == {"checked": False}
    seen = evaluate_path(labels, entry, tip, ct=phantom.ct, mc_samples=20)
    assert not seen["safe"] and seen["verdict"] == "unsafe"
    assert "ct_leaves_bone" in seen["reasons"], seen["ct_guard"]
    assert seen["ct_guard"]["leaves_bone_mm"] > 3.0 and seen["ct_guard"]["walls_crossed"] >= 1, seen["ct_guard"]


@pytest.mark.parametrize("params", [
    PhantomParams(seed=0, spacing=(2.0,) * 3, fracture="bilateral", position="prone"),
    PhantomParams(seed=3, spacing=(2.0,) * 3, fracture="bilateral", osteoporosis=1.0),
], ids=["normal", "severe_osteoporosis"])
def test_needles_in_bone_on_ground_truth_are_not_marked(params, plan_of):
    """Every needle planned on ground truth stays in bone: with the CT the guard marks none (the normal
    case's plan is test_planning's)."""
    plan = plan_of(params, needles=3, mc_samples=100)
    needles = plan["needles"] + plan["alternatives"]
    assert plan["outcome"] == "planned" and len(needles) >= 15
    for n in needles:
        assert n["ct_guard"]["checked"] and n["safe"], n
        assert n["ct_guard"]["walls_crossed"] == 0
        assert n["ct_guard"]["leaves_bone_mm"] is None or n["ct_guard"]["leaves_bone_mm"] <= 3.0


def test_an_approach_through_an_ilium_the_labels_missed_is_unsafe_by_the_ct(phantom):
    # On a real sacrum a plate of posterior ilium was labelled nothing, and a needle called safe crossed it.
    labels = phantom.labels
    ala = np.argwhere(lt.mask(labels, "ala_left"))
    ilium = np.argwhere(lt.mask(labels, "ilium_left"))
    tip = labels.index_to_world(ala.mean(axis=0).round()[None])[0]
    behind = ilium[ilium[:, 1] > ala[:, 1].mean() + 10]                  # posterior to the ala (P axis)
    through = labels.index_to_world(behind[np.argmin(np.linalg.norm(behind - ala.mean(axis=0), axis=1))][None])[0]
    direction = (tip - through) / np.linalg.norm(tip - through)
    along = np.arange(0.0, np.linalg.norm(tip - through), 0.25)
    points = np.rint(labels.world_to_index(through + along[:, None] * direction)).astype(int)
    in_sacrum = lt.sacral_bone(labels.array[tuple(points.T)])
    entry = through + along[np.argmax(in_sacrum)] * direction              # where the line enters the sacrum
    assert in_sacrum.any() and np.linalg.norm(tip - entry) > 5.0
    blind = labels.with_array(np.where(lt.mask(labels, "ilium_left"), 0, labels.array).astype(labels.array.dtype))
    seen = evaluate_path(blind, entry, tip, ct=phantom.ct, mc_samples=20)
    assert "ilium_left" not in seen["reasons"]                           # the labels no longer show it
    assert "ct_bone_on_approach" in seen["reasons"] and not seen["safe"], seen
    assert seen["ct_guard"]["approach_bone_mm"] >= 2.0, seen["ct_guard"]
    labelled = evaluate_path(labels, entry, tip, ct=phantom.ct, mc_samples=20)
    assert "ilium_left" in labelled["reasons"]


def test_an_entry_the_labels_put_two_voxels_proud_of_the_bone_is_unsafe_by_the_ct(phantom):
    # Real sacrum 003 at 3 mm: an ala labelled 1.5 voxels proud put a safe needle's bone entry 4.7 mm
    # before the reference bone, farther than the planner moves an entry onto the bone's edge.
    labels = phantom.labels
    voxel = float(np.max(labels.spacing))
    tip = labels.index_to_world(np.argwhere(lt.mask(labels, "ala_left")).mean(axis=0).round()[None])[0]
    along = np.arange(0.0, 80.0, 0.25)
    line = tip + along[:, None] * np.array([0.0, 1.0, 0.0])               # posterior from the tip
    inside = lt.sacral_bone(labels.array[tuple(np.rint(labels.world_to_index(line)).astype(int).T)])
    entry = line[np.flatnonzero(~inside)[0] - 1]                         # the last labelled bone, dorsally
    proud = labels.array.copy()
    grown = ndimage.binary_dilation(lt.sacral_bone(labels), iterations=2) & (proud == 0)
    proud[grown] = lt.value("ala_left")                                  # the labels stand two voxels proud
    outward = entry + 2.0 * voxel * np.array([0.0, 1.0, 0.0])
    on_bone = evaluate_path(labels, entry, tip, ct=phantom.ct, mc_samples=20)
    assert "ct_entry_off_bone" not in on_bone["reasons"]
    assert on_bone["ct_guard"]["entry_edge_mm"] <= voxel, on_bone["ct_guard"]
    off_bone = evaluate_path(labels.with_array(proud), outward, tip, ct=phantom.ct, mc_samples=20)
    assert "outside_bone" not in off_bone["reasons"]                     # the labels call it bone
    assert "ct_entry_off_bone" in off_bone["reasons"] and not off_bone["safe"], off_bone
    assert off_bone["ct_guard"]["entry_edge_mm"] > voxel, off_bone["ct_guard"]


def test_a_foramen_labelled_as_an_uncertain_lesion_is_not_excused_as_dark(phantom):
    # Dark fatty marrow and missed lumens pass for a lytic lesion; where the segmentation marks its
    # lesion uncertain, evaluate (and the viewer, through the plan's segmentation.lesion_uncertain)
    # read the CT there as the plan does: the gap is a gap.
    foramen = phantom.info["landmarks"]["foramina"]["foramen_S2_left"]
    lying = phantom.labels.array.copy()
    lying[lying == lt.value("foramen_S2_left")] = lt.value("lesion")
    labels = phantom.labels.with_array(lying)
    middle = (np.asarray(foramen["dorsal_lps"]) + np.asarray(foramen["anterior_lps"])) / 2
    entry, tip = middle + [18.0, 0.0, 0.0], middle - [10.0, 0.0, 0.0]
    trusted = evaluate_path(labels, entry, tip, ct=phantom.ct, mc_samples=20)
    assert "ct_leaves_bone" not in trusted["reasons"], trusted["ct_guard"]
    uncertain = evaluate_path(labels, entry, tip, ct=phantom.ct, mc_samples=20, lesion_uncertain=True)
    assert not uncertain["safe"] and "ct_leaves_bone" in uncertain["reasons"], uncertain["ct_guard"]
    assert uncertain["ct_guard"]["leaves_bone_mm"] > 3.0
    # trajplan.evaluate_path (trajplan evaluate) with a segmentation whose report marks the lesion uncertain
    marked = Segmentation(labels=labels, report={"structures": {"lesion": {"quality": LESION_IN_FATTY_MARROW}}})
    through_api = trajplan.evaluate_path(phantom.ct, marked, entry, tip, options=trajplan.PlanOptions(mc_samples=20))
    assert "ct_leaves_bone" in through_api.reasons and not through_api.safe, through_api.reasons
    # ... and a plan on it says so in plan.json, for the viewer's edits
    planned = trajplan.plan(phantom.ct, marked, options=trajplan.PlanOptions(needles=1, mc_samples=20)).to_json()
    assert planned["segmentation"]["lesion_uncertain"] is True
    assert "lesion" not in {t["kind"] for t in planned["targets"].values()}, planned["targets"]
    assert any(w.startswith("the lytic lesion found (0.0 ml; not targeted: no needle aims at it) is uncertain")
               for w in planned["warnings"]), planned["warnings"]
