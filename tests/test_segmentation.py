"""Segmentation against phantom ground truth, external masks, bad input, the real CT."""

from __future__ import annotations

import json
import logging

import numpy as np
import pytest
import SimpleITK as sitk
from scipy import ndimage

from sample_ct.phantom import PhantomParams, make_phantom
from segmentation.metrics import compare, dice
from segmentation.pipeline import segment, write_segmentation
from trajplan import labels as lt
from trajplan.errors import InputError
from trajplan.io.files import read_volume_file
from trajplan.io.reader import read_ct
from trajplan.volume import Volume

# Levels this version reaches on 2 mm phantoms of normal to moderately osteoporotic bone
# (the project's targets are higher; see docs/validation.md).
CASES = {
    "normal_bilateral_prone": PhantomParams(seed=0, spacing=(2.0,) * 3, fracture="bilateral", position="prone"),
    "osteoporotic_left_lesion": PhantomParams(seed=8, spacing=(2.0,) * 3, fracture="left", lesion="right",
                                              osteoporosis=0.5),
}


@pytest.fixture(scope="module", params=list(CASES))
def result(request, phantom_of):
    phantom = phantom_of(CASES[request.param])
    return phantom, segment(phantom.ct)


def test_agreement_with_ground_truth(result):
    phantom, seg = result
    assert seg.labels.same_geometry(phantom.ct)
    figures = compare(seg.labels, phantom.labels)
    assert figures["dice_sacral_bone"] >= 0.95, figures
    assert figures["dice_ala"] >= 0.79, figures            # 0.926 and 0.803 (0.866 and 0.782 from the foramina's lumen)
    assert figures["dice_canal"] >= 0.89, figures          # 0.922 and 0.900 (0.899 and 0.871 with a median width limit)
    assert figures["dice_foramina"] >= 0.74, figures       # 0.754 and 0.771 (0.723 and 0.731)
    assert figures["foramina_S1_S3_detected"] == 6, figures
    assert figures["foramina_named"] == figures["foramina_levels"] == 8, figures
    # 0.52 and 2.0 mm (was 1.2, 3.5)
    assert figures["cortex_msd_mm"] <= 0.8 and figures["cortex_hd95_mm"] <= 2.5, figures
    assert figures["fracture_recall"] >= 0.25, figures      # 0.30 on the 2 mm osteoporotic case
    assert figures["fracture_false_ml"] <= 1.0, figures
    assert "no cortex" not in (seg.report["partial_reason"] or ""), seg.report["partial_reason"]
    for side in ("left", "right"):       # the joint sheet, not the bone beside it, carries the joint label
        truth = lt.mask(phantom.labels, f"si_joint_{side}")
        found = lt.mask(seg.labels, f"si_joint_{side}")
        assert (truth & found).sum() >= 0.6 * truth.sum(), side
        assert (found & ~truth).sum() <= 2.0 * truth.sum(), side


def test_neighbours_are_separated(result):
    phantom, seg = result
    sacral = lt.sacral_bone(seg.labels)
    for neighbour in ("ilium_left", "ilium_right", "L5"):
        truth = lt.mask(phantom.labels, neighbour)
        assert (sacral & truth).sum() <= 0.01 * sacral.sum(), neighbour
        assert dice(lt.mask(seg.labels, neighbour), truth) > 0.8, neighbour


@pytest.mark.slow   # a 1.25 mm phantom
def test_large_ct_located_coarse_then_segmented_in_a_crop_gives_the_full_resolution_result(monkeypatch):
    from segmentation import pipeline

    phantom = make_phantom(PhantomParams(seed=3, spacing=(1.25,) * 3, fracture="right"))
    monkeypatch.setattr(pipeline, "LOCATE_ABOVE_VOXELS", 0)
    located = segment(phantom.ct)
    assert located.report["notes"][0].startswith("sacrum located on a 2 x 2 x 2 mm grid"), located.report["notes"]
    monkeypatch.setattr(pipeline, "LOCATE_ABOVE_VOXELS", 10**12)
    whole = segment(phantom.ct)
    assert located.labels.same_geometry(whole.labels)
    for name in ("sacrum", "ala_left", "ala_right", "anterior_cortex", "fracture", "canal", "foramen_S1_left",
                 "foramen_S2_right", "si_joint_left"):
        a, b = lt.mask(located.labels, name), lt.mask(whole.labels, name)
        assert a.any() and dice(a, b) >= 0.98, name
    for neighbour in ("ilium_left", "ilium_right", "L5"):     # from the 2 mm pass beyond the crop
        assert dice(lt.mask(located.labels, neighbour), lt.mask(phantom.labels, neighbour)) > 0.8, neighbour
    assert located.report["structures"]["canal"]["voxels"] == int(lt.mask(located.labels, "canal").sum())


@pytest.mark.slow   # a 1.25 mm phantom, segmented twice
def test_a_crop_that_loses_an_ilium_is_segmented_again_on_the_whole_ct(monkeypatch):
    # Varied phantom 111 (1 mm): the crop's split left the articular part of the left ilium unlabelled,
    # so no joint band lay there, and four needles called safe passed within 1.3 mm of the true joint.
    from segmentation import pipeline

    phantom = make_phantom(PhantomParams(seed=3, spacing=(1.25,) * 3, fracture="right"))
    monkeypatch.setattr(pipeline, "LOCATE_ABOVE_VOXELS", 0)
    segment_grid = pipeline._segment_grid
    crops = []

    def losing_the_left_ilium_in_the_crop(ct, **kwargs):
        result = segment_grid(ct, **kwargs)
        if "midline_x_mm" in kwargs:                       # the crop (given the located midline) loses it
            crops.append(ct.shape)
            labels = result.labels.array.copy()
            labels[labels == lt.value("ilium_left")] = 0
            result = pipeline.Segmentation(labels=result.labels.with_array(labels), report=result.report)
        return result

    monkeypatch.setattr(pipeline, "_segment_grid", losing_the_left_ilium_in_the_crop)
    seg = segment(phantom.ct)
    assert crops, "the CT was not located and cropped"
    assert not any(note.startswith("sacrum located") for note in seg.report["notes"]), seg.report["notes"]
    for neighbour in ("ilium_left", "ilium_right"):
        assert dice(lt.mask(seg.labels, neighbour), lt.mask(phantom.labels, neighbour)) > 0.8, neighbour
    assert dice(lt.mask(seg.labels, "si_joint_left"), lt.mask(phantom.labels, "si_joint_left")) > 0.5


def test_a_crop_cuts_the_sacrum_only_where_its_face_is_not_the_cts_own():
    from segmentation.pipeline import _cut_by_the_crop

    sacral = np.zeros((10, 12, 14), dtype=bool)
    sacral[3:6, 4:8, 5:14] = True                    # reaches the crop's upper face on index axis 2
    shape = (40, 40, 40)
    assert _cut_by_the_crop(sacral, np.array([5, 5, 5]), np.array([15, 17, 19]), shape) == "index axis 2, upper"
    assert _cut_by_the_crop(sacral, np.array([5, 5, 26]), np.array([15, 17, 40]), shape) == ""   # the CT ends there
    sacral[0, 5, 6] = True
    assert _cut_by_the_crop(sacral, np.array([5, 5, 26]), np.array([15, 17, 40]), shape) == "index axis 0, lower"


@pytest.mark.slow   # a 1.25 mm phantom, segmented twice
def test_a_crop_that_cuts_the_sacrum_is_segmented_again_on_the_whole_ct(monkeypatch):
    # Real case 003 with noise of sd 25 HU: the crop's split took the bone below the sacral seed as
    # sacrum, down to the crop's lower face, which cut it (the CT goes on 11 mm below), and the result
    # was flagged "cut by the field of view" where the field of view cuts nothing.
    from segmentation import pipeline

    phantom = make_phantom(PhantomParams(seed=3, spacing=(1.25,) * 3, fracture="right"))
    monkeypatch.setattr(pipeline, "LOCATE_ABOVE_VOXELS", 0)
    monkeypatch.setattr(pipeline, "LOCATE_PAD_MM", (45.0, 35.0, 0.0))     # cropped at the located ends
    seg = segment(phantom.ct)
    assert not seg.report["notes"][0].startswith("sacrum located"), seg.report["notes"]
    assert "cut by the field of view" not in (seg.report["partial_reason"] or "")
    assert dice(lt.sacral_bone(seg.labels), lt.sacral_bone(phantom.labels)) >= 0.97


def test_located_ilium_fills_what_the_crop_left_unlabelled_away_from_the_sacrum():
    # Real case 003 at its own spacing: the crop's bone split left 15 mm of the posterior left ilium
    # unlabelled, and a needle called safe crossed it; the 2 mm located pass had it.
    from segmentation.pipeline import LOCATED_BONE_CLEAR_MM, _with_located_neighbours

    spacing = np.array([1.0, 1.0, 1.0])
    sacrum, ilium, joint = lt.value("sacrum"), lt.value("ilium_left"), lt.value("si_joint_left")
    fine = np.zeros((60, 30, 20), dtype=np.uint8)
    fine[:20] = sacrum
    fine[20:22] = joint
    fine[30:45] = ilium                                  # the crop's ilium: its end (45-60) unlabelled
    located = np.zeros_like(fine)
    located[22:60] = ilium                               # the located ilium: coarse, reaching the joint
    out = _with_located_neighbours(fine, located, spacing)
    assert (out[45:60] == ilium).all()                   # the missed end is the ilium's again
    assert (out[:22] == fine[:22]).all()                 # the crop's sacrum and joint stand
    gap = out[22:30]                                     # unlabelled in the crop, the ilium in the located pass
    near = np.arange(22, 30) - 19 <= LOCATED_BONE_CLEAR_MM   # within reach of the crop's sacrum (its last row: 19)
    assert (gap[near] == 0).all() and (gap[~near] == ilium).all()


@pytest.mark.slow   # a 1.25 mm phantom
def test_L5_joined_to_a_tilted_sacrum_is_split_off_and_the_cortex_stops_at_the_endplate():
    # At 1.25 mm the thin back of this wedge-shaped disc is bridged: L5 stays joined to the
    # sacral seed at the depth that separates the ilia, and the S1 endplate, tilted forward,
    # is what a ray from the front meets first above the promontory.
    phantom = make_phantom(PhantomParams(seed=117, spacing=(1.25,) * 3, fracture="right", osteoporosis=0.5,
                                         position="prone"))
    seg = segment(phantom.ct)
    assert any(note.startswith("L5 and the sacrum seeded apart") for note in seg.report["notes"]), seg.report
    truth_l5 = lt.mask(phantom.labels, "L5")
    assert (lt.sacral_bone(seg.labels) & truth_l5).sum() * seg.labels.voxel_volume_ml < 0.5     # 28 ml before
    assert dice(lt.mask(seg.labels, "L5"), truth_l5) > 0.9
    figures = compare(seg.labels, phantom.labels)
    assert figures["cortex_hd95_mm"] <= 4.0, figures        # 36 mm with L5 joined, 24 mm with a vertical axis
    assert figures["foramina_named"] == figures["foramina_levels"] == 8, figures


@pytest.mark.slow   # a 1.25 mm phantom
def test_crop_whose_split_takes_in_the_ilia_falls_back_to_the_whole_ct(monkeypatch):
    # The crop around the located sacrum cuts this phantom's ilia open at two faces; the split
    # in the crop then names a sacrum that takes in parts of both ilia (Dice 0.75 with the
    # located one), and the whole CT is segmented instead.
    from segmentation import pipeline

    phantom = make_phantom(PhantomParams(seed=115, spacing=(1.25,) * 3, lesion="left", osteoporosis=0.54,
                                         position="prone"))
    monkeypatch.setattr(pipeline, "LOCATE_ABOVE_VOXELS", 0)
    seg = segment(phantom.ct)
    assert not seg.report["notes"][0].startswith("sacrum located"), seg.report["notes"]
    assert dice(lt.sacral_bone(seg.labels), lt.sacral_bone(phantom.labels)) >= 0.97
    for side in ("left", "right"):
        assert (lt.sacral_bone(seg.labels) & lt.mask(phantom.labels, f"ilium_{side}")).sum() \
            <= 0.01 * lt.sacral_bone(seg.labels).sum(), side


@pytest.mark.slow   # a 1.5 mm phantom
def test_canal_keeps_to_its_width_where_the_foramina_crowd_low_down():
    # Low in the sacrum the foramina join the canal's axial hole in most slices; a running
    # median of the hole's width then let the canal swallow the S3 foramina's dorsal branches
    # (45 % of each S3 labelled canal, canal Dice 0.84, foramina 0.51).
    phantom = make_phantom(PhantomParams(seed=108, spacing=(1.5,) * 3, fracture="left", osteoporosis=0.69))
    seg = segment(phantom.ct)
    figures = compare(seg.labels, phantom.labels)
    assert figures["dice_canal"] >= 0.87, figures           # 0.900
    assert figures["dice_foramina"] >= 0.7, figures         # 0.758
    for side in ("left", "right"):
        s3 = lt.mask(phantom.labels, f"foramen_S3_{side}")
        assert (s3 & lt.mask(seg.labels, "canal")).sum() <= 0.1 * s3.sum(), side          # 4 %


def test_foramen_levels_are_not_joined_along_the_canal_nor_taken_from_its_hiatus():
    # With the canal's width limit a voxel short of its wall, a strip up its side joined S2 to
    # S3; the hiatus below the canal (open behind) was taken for S4 and the names moved up.
    phantom = make_phantom(PhantomParams(seed=308, spacing=(2.0,) * 3, fracture="left", osteoporosis=0.52,
                                         variation=1.1))
    seg = segment(phantom.ct)
    figures = compare(seg.labels, phantom.labels)
    assert figures["foramina_named"] == figures["foramina_levels"] == 8, figures     # 4 of 8 before
    canal_as_foramen = lt.mask(phantom.labels, "canal") & lt.mask(seg.labels, *lt.FORAMINA)
    assert canal_as_foramen.sum() * phantom.labels.voxel_volume_ml <= 0.3             # 0.15 ml (0.6 before)


def _contrast_bowel(phantom):
    """The phantom's CT with a slab of 300 HU (contrast-filled bowel; noise of sd 20 HU) on the front
    of the sacrum, 24 mm deep, 60 mm wide and 80 mm high, touching its anterior cortex."""
    hu = phantom.ct.array.copy()
    cortex = lt.mask(phantom.labels, "anterior_cortex")
    i, j, k = np.ogrid[:hu.shape[0], :hu.shape[1], :hu.shape[2]]
    spacing = phantom.ct.spacing
    front = np.where(cortex.any(axis=1), np.argmax(cortex, axis=1), 0)[:, None, :]       # anterior is low j
    centre = np.argwhere(cortex).mean(axis=0)
    slab = ((np.abs(i - centre[0]) * spacing[0] <= 30) & (np.abs(k - centre[2]) * spacing[2] <= 40)
            & (j < front) & ((front - j) * spacing[1] <= 24))
    filled = slab & (hu < 100)
    hu[filled] = 300.0 + np.random.default_rng(0).normal(0.0, 20.0, int(filled.sum()))
    return phantom.ct.with_array(hu)


def _metal_hips(phantom):
    """The phantom's CT with a 3500 HU sphere of 20 mm radius at the foot of each ilium (hip prostheses)."""
    hu = phantom.ct.array.copy()
    i, j, k = np.ogrid[:hu.shape[0], :hu.shape[1], :hu.shape[2]]
    for side in ("left", "right"):
        ilium = np.argwhere(lt.mask(phantom.labels, f"ilium_{side}"))
        c = ilium[ilium[:, 2] < np.percentile(ilium[:, 2], 10)].mean(axis=0) * phantom.ct.spacing
        hu[(i * phantom.ct.spacing[0] - c[0]) ** 2 + (j * phantom.ct.spacing[1] - c[1]) ** 2
           + (k * phantom.ct.spacing[2] - c[2]) ** 2 <= 20.0 ** 2] = 3500.0
    return phantom.ct.with_array(hu)


def _lower_half_cut_off(phantom):
    """The phantom's CT without the slices below the middle of the sacrum."""
    heights = np.argwhere(lt.mask(phantom.labels, "sacrum"))[:, 2]
    return phantom.ct.crop((0, 0, int(np.median(heights))), phantom.ct.shape)


@pytest.mark.parametrize("scene, reason", [
    (_contrast_bowel, "shows no cortex brighter than the bone behind it"),
    (_metal_hips, "metal (> 3000 HU"),
    (_lower_half_cut_off, "the sacrum is cut by the field of view (cranio-caudal)"),
])
def test_scenes_that_can_spoil_the_sacrum_are_flagged_partial_with_the_reason(scene, reason):
    # Contrast-filled bowel on the sacrum's pelvic surface is as bright as bone, and is taken into it
    # (its sacral bone 197 ml against 81 ml): the surface then has no cortex of its own (80 % of it).
    phantom = make_phantom(PhantomParams(seed=3, spacing=(2.0,) * 3, fracture="left"))
    seg = segment(scene(phantom))
    assert seg.report["partial"] and reason in seg.report["partial_reason"], seg.report["partial_reason"]
    assert lt.mask(seg.labels, "sacrum").sum() * seg.labels.voxel_volume_ml >= 30


def test_written_files(result, tmp_path):
    phantom, seg = result
    written = write_segmentation(seg, tmp_path)
    labels = read_volume_file(written["labels"])
    assert labels.same_geometry(phantom.ct) and np.array_equal(labels.array, seg.labels.array)
    sacrum = sitk.GetArrayFromImage(sitk.ReadImage(str(written["sacrum"]))).transpose(2, 1, 0)
    assert np.array_equal(sacrum > 0, lt.sacral_bone(seg.labels))
    assert json.loads(written["labels_json"].read_text()) == lt.table_json()
    report = json.loads(written["report"].read_text())
    canal = report["structures"]["canal"]
    assert canal["voxels"] == int(lt.mask(seg.labels, "canal").sum())
    assert np.isclose(canal["volume_ml"], canal["voxels"] * seg.labels.voxel_volume_ml, atol=1e-3)
    assert report["partial"] is False


def test_external_sacrum_mask_on_another_grid(caplog):
    phantom = make_phantom(PhantomParams(seed=2, spacing=(2.0,) * 3, fracture="right"))
    truth = phantom.labels.with_array(lt.sacral_bone(phantom.labels).astype(np.uint8))
    coarse = truth.resample((2.5, 2.5, 2.5), interpolator="nearest")
    with caplog.at_level(logging.WARNING, logger="trajplan"):
        seg = segment(phantom.ct, sacrum_mask=coarse)
    assert "resampled" in caplog.text
    assert dice(lt.sacral_bone(seg.labels), lt.sacral_bone(phantom.labels)) > 0.9
    assert seg.report["source"] == "external sacrum mask"
    far = Volume(np.ones((10, 10, 10), np.uint8), (2.0, 2.0, 2.0), (5000.0, 5000.0, 5000.0))
    with pytest.raises(InputError, match="does not overlap"):
        segment(phantom.ct, sacrum_mask=far)


# A CT without a sacrum (the upper abdomen of ts_example_dicom) is refused with NoSacrumError: checked through
# the command line (exit 2, one line) by test_cli.py::test_no_sacrum_in_upper_abdomen_dicom on the same CT.


@pytest.mark.slow   # segments the real CT
def test_real_ct_sacrum_found_and_kept_off_its_neighbours(shared_ct):
    ct = read_ct(shared_ct / "ts_example_ct.nii.gz")
    seg = segment(ct)
    assert any(note.startswith("bones separated by random walks") for note in seg.report["notes"])
    assert "random-walk fallback" in seg.report["partial_reason"]
    sacral = lt.sacral_bone(seg.labels)
    # About 210 ml on a reference kept outside the project. 90.9 ml, alae 18.3 and 14.0 ml, until the
    # marrow pockets went to the bone they lie nearer to (104.7 ml, 23.8 and 18.8 ml) and, on a grid this
    # coarse, may lead out in two directions (step 10a): 108.4 ml, 23.4 and 22.3 ml.
    assert sacral.sum() * ct.voxel_volume_ml > 105
    for side in lt.SIDES:
        assert seg.report["structures"][f"ala_{side}"]["volume_ml"] >= 20.0
    masks = {name: read_volume_file(shared_ct / "ts_example_masks" / f"{name}.nii.gz").array > 0.5
             for name in ("hip_left", "hip_right", "vertebrae_L5", "femur_left", "femur_right")}
    for name, mask in masks.items():
        assert (mask & sacral).sum() <= 0.02 * sacral.sum(), name
    for side in ("left", "right"):      # the ilia beside it are the reference hips
        assert dice(lt.mask(seg.labels, f"ilium_{side}"), masks[f"hip_{side}"]) >= 0.7, side
    assert dice(lt.mask(seg.labels, "L5"), masks["vertebrae_L5"]) >= 0.6
    # The walker fills the canal in with its bone; taken out again, the S1-S2 canal is the canal
    # (8.7 ml; 7.4 ml before it was also taken out along its runs and took in its rim; 1.8 ml
    # before, when it was labelled foramen S1).
    canal = lt.mask(seg.labels, "canal")
    assert canal.sum() * ct.voxel_volume_ml >= 4.0


@pytest.mark.slow   # two phantoms segmented through the random-walk split
@pytest.mark.parametrize("seed, osteoporosis, fracture", [(104, 0.97, "left"), (6, 1.0, "right")])
def test_bone_as_dark_as_muscle_is_split_by_its_trabecular_compartments(seed, osteoporosis, fracture):
    # Trabecular bone at 50-56 HU under a 0.8 mm cortex that a 2 mm voxel dims to 250 HU: no
    # cortical shell encloses any bone, and these were refused as "no sacrum in the field of view".
    phantom = make_phantom(PhantomParams(seed=seed, spacing=(2.0,) * 3, fracture=fracture, osteoporosis=osteoporosis))
    seg = segment(phantom.ct)
    figures = compare(seg.labels, phantom.labels)
    assert figures["dice_sacral_bone"] >= 0.87, figures          # 0.898 and 0.891
    # The canal, filled in by the split, is taken out where its dark core runs on head to foot
    # too, then with its rim: 0.837 and 0.853 (0.791 and 0.745 taken out in 3 mm lumps only).
    assert figures["dice_canal"] >= 0.8, figures
    assert figures["foramina_S1_S3_detected"] == 6, figures
    sacral = lt.sacral_bone(seg.labels)
    for neighbour in ("ilium_left", "ilium_right", "L5"):
        assert (sacral & lt.mask(phantom.labels, neighbour)).sum() <= 0.01 * sacral.sum(), neighbour
    assert seg.report["partial"] and "trabecular compartments" in seg.report["partial_reason"]


@pytest.fixture(scope="module")
def dim_shell():
    """Validation phantom 107 (1.25 mm, osteoporosis 0.91: trabecular bone at 83 HU) and its segmentation."""
    phantom = make_phantom(PhantomParams(seed=107, spacing=(1.25,) * 3, lesion="right", osteoporosis=0.91,
                                         position="prone"))
    seg = segment(phantom.ct)
    return phantom, seg, compare(seg.labels, phantom.labels)


@pytest.mark.slow   # a 1.25 mm phantom
def test_sacrum_missed_by_a_dim_shell_is_taken_from_its_compartments(dim_shell):
    # The shells name the bones here (cortex > 120 HU closed by 1 mm, eroded 10 mm), but the solid
    # bone they are grown into missed much of the sacrum: ala 0.810, anterior cortex HD95 6.5 mm.
    phantom, seg, figures = dim_shell
    assert any("trabecular compartments" in note for note in seg.report["notes"]), seg.report["notes"]
    assert figures["dice_sacral_bone"] >= 0.96 and figures["dice_ala"] >= 0.86, figures      # 0.985, 0.890
    assert figures["dice_canal"] >= 0.89 and figures["cortex_hd95_mm"] <= 5.0, figures       # 0.925, 4.0 mm
    # Averaged over 1.5 mm, this dim bone's texture showed 1.8 ml of lesion away from the true one.
    away = ndimage.distance_transform_edt(~lt.mask(phantom.labels, "lesion"), sampling=phantom.ct.spacing) > 5.0
    assert (lt.mask(seg.labels, "lesion") & away).sum() * phantom.ct.voxel_volume_ml < 0.1


@pytest.mark.slow   # a 1.25 mm phantom
def test_narrow_foramina_lost_at_the_lowered_threshold_are_searched_at_the_one_that_kept_them(dim_shell):
    # The S1 levels join this dark bone below 41 HU (22 and 33 ml) and below 21 HU (14 ml on the
    # left), so the search ends at 10 HU, where smoothing has lifted the narrow S3 and S4 channels
    # out of reach: all four were missing (S1-S3 found 4 of 6, Dice 0.684). S3 is found at 21 HU
    # now, S4 at 41 HU. All eight found, the lowered threshold is a note, not a reason for `partial`.
    phantom, seg, figures = dim_shell
    assert any("searched below 10 HU" in note and "all 4 levels were found on both sides" in note
               for note in seg.report["notes"]), seg.report["notes"]
    assert "searched below" not in (seg.report["partial_reason"] or "")
    assert figures["foramina_named"] == 8 and figures["foramina_S1_S3_detected"] == 6, figures
    for name in ("foramen_S3_left", "foramen_S3_right", "foramen_S4_left", "foramen_S4_right"):
        assert dice(lt.mask(seg.labels, name), lt.mask(phantom.labels, name)) >= 0.5, name
    assert figures["dice_foramina"] >= 0.73, figures                   # 0.773


@pytest.mark.slow   # a 1.25 mm phantom
def test_dorsal_branch_of_a_narrow_foramen_in_dim_bone_is_traced_to_the_surface(dim_shell):
    # The S4 levels, found at 41 HU and grown by a voxel, stopped 4-5 mm inside the dorsal
    # surface: the branch was not traced, because the level's median (75-81 HU, mostly its grown
    # rim) was within 10 HU of the bone. Two long-axis needles called safe passed the right
    # dorsal opening at 2.1 and 2.7 mm (margin 3 mm). The lumen's HU is now its core's (16-22 HU).
    phantom, seg, _ = dim_shell
    for side in ("left", "right"):
        name = f"foramen_S4_{side}"
        truth, found = lt.mask(phantom.labels, name), lt.mask(seg.labels, name)
        posterior_mm = [volume.index_to_world(np.argwhere(mask).astype(float))[:, 1].max()
                        for volume, mask in ((phantom.labels, truth), (seg.labels, found))]
        assert posterior_mm[1] >= posterior_mm[0] - 1.25, (name, posterior_mm)  # 25.6 and 25.6 (20.6 before)
        assert dice(found, truth) >= 0.76, name           # 0.892, 0.903 (0.796, 0.800 without the rims; 0.713)


@pytest.mark.slow   # a 1.25 mm phantom
def test_lumens_and_bone_surface_are_settled_half_way_to_the_cortex(dim_shell):
    # Found below thresholds well under the trabecular bone, the canal and foramina were a voxel
    # narrow, and the bone, found by a cortex threshold below half the cortex's HU, a voxel thick.
    phantom, seg, figures = dim_shell
    assert seg.report["notes"][-1].startswith("partial-volume rims settled"), seg.report["notes"]
    assert figures["dice_canal"] >= 0.92 and figures["dice_foramina"] >= 0.82, figures    # 0.925, 0.846 (0.914, 0.773)
    assert figures["dice_sacral_bone"] >= 0.98, figures                                  # 0.985 (0.974)


@pytest.fixture(scope="module")
def speckled_119():
    """Validation phantom 119 (2 mm, osteoporosis 0.49, a lesion on the right): its figures."""
    phantom = make_phantom(PhantomParams(seed=119, spacing=(2.0,) * 3, lesion="right", osteoporosis=0.49,
                                         position="prone"))
    return compare(segment(phantom.ct).labels, phantom.labels)


def test_foramina_are_not_joined_through_the_corners_of_dark_trabecular_voxels(speckled_119):
    # Validation phantom 119 (2 mm, trabecular bone at 150 HU with its texture): a tenth of the
    # bone's voxels fall below the lumen threshold (76 HU), and joined through voxel corners they
    # percolate: the left S1 and S2 foramina were one channel with 1.5 ml of ala in it, and a
    # 0.1 ml speck beside the upper canal, which opens nowhere, took the name S1 (ala Dice 0.694,
    # foramina 0.705, 7 of 8 levels named).
    figures = speckled_119
    assert figures["foramina_named"] == 8, figures
    assert figures["dice_ala"] >= 0.9 and figures["dice_foramina"] >= 0.8, figures        # 0.919, 0.842


@pytest.mark.slow   # a 1.5 mm phantom
def test_no_lesion_is_read_into_the_texture_of_bone_as_dark_as_a_lesion():
    # Trabecular bone of 50 HU (osteoporosis 1.0) with its texture: its dark voxels gave 9.8 ml of
    # "lesion" in this phantom at 1 mm, which has none; 0.75 ml at 1.5 mm (none at 2 mm, where the
    # texture is averaged away, so 1.5 mm is the coarsest spacing that shows it).
    phantom = make_phantom(PhantomParams(seed=116, spacing=(1.5,) * 3, fracture="left", osteoporosis=1.0))
    seg = segment(phantom.ct)
    assert not lt.mask(seg.labels, "lesion").any()
    assert any("lytic lesions were not sought" in note for note in seg.report["notes"]), seg.report["notes"]
    assert seg.report["structures"]["lesion"]["quality"].startswith("not sought")


def _random_walk_dice(params: PhantomParams) -> tuple[float, float, float]:
    """Sacrum, left and right ilium Dice of the random-walk split on a phantom (canonical grid)."""
    from segmentation.walker import split_bones_by_walker

    phantom = make_phantom(params)
    ct, _ = phantom.ct.to_canonical()
    truth, _ = phantom.labels.to_canonical()
    midline = np.argwhere(lt.mask(truth.array, "canal"))[:, 0].mean()
    bones = split_bones_by_walker(ct.array, ct.spacing, midline)
    ilia = (dice(getattr(bones, f"ilium_{side}"), lt.mask(truth.array, f"ilium_{side}")) for side in ("left", "right"))
    return (dice(bones.sacrum, lt.sacral_bone(truth.array)), *ilia)


@pytest.mark.parametrize("seed, spacing, osteoporosis", [(1, 2.0, 0.6), (5, 3.0, 0.8)])
def test_random_walk_split_finds_a_dim_sacrum_between_the_ilia(seed, spacing, osteoporosis):
    sacrum, *ilia = _random_walk_dice(PhantomParams(seed=seed, spacing=(spacing,) * 3, osteoporosis=osteoporosis))
    assert sacrum >= 0.65
    assert min(ilia) >= 0.85, ilia


def test_random_walk_split_ends_its_bones_at_the_bone_edge_of_a_finer_grid():
    # The split runs on a 3 mm grid; brought back to this 2 mm grid by nearest neighbour, each
    # bone reached up to half a 3 mm voxel past the bone's edge into the soft tissue (25.6 ml of
    # the sacrum's 207 ml lay outside every bone of the truth, the ilia's Dice 0.89). Settled on this
    # grid's own bone: 11.1 of 194 ml, the ilia 0.96, the sacrum 0.795 -> 0.823.
    from segmentation.walker import split_bones_by_walker

    phantom = make_phantom(PhantomParams(seed=1, spacing=(2.0,) * 3, osteoporosis=0.6))
    ct, _ = phantom.ct.to_canonical()
    truth = phantom.labels.to_canonical()[0].array
    bones = split_bones_by_walker(ct.array, ct.spacing, np.argwhere(lt.mask(truth, "canal"))[:, 0].mean())
    assert (bones.sacrum & (truth == 0)).sum() <= 0.07 * bones.sacrum.sum()
    assert dice(bones.sacrum, lt.sacral_bone(truth)) >= 0.81
    for side in ("left", "right"):
        assert dice(getattr(bones, f"ilium_{side}"), lt.mask(truth, f"ilium_{side}")) >= 0.93


@pytest.mark.parametrize("seed, before", [(2, "sacrum Dice 0.154"), (4, "refused: 156 mm wide")])
def test_random_walk_split_holds_on_wide_sacra(seed, before):
    # Wide variants of the phantom (variation 2). Seed 2: once smoothed and with its slice holes
    # filled, one SI joint is bridged, and the eroded piece that seeds that ilium held the whole
    # sacrum too (from the far side of the midline out to the iliac wing), which the walk then gave
    # to the ilium. Seed 4: two stray voxels in the joint gaps made the sacrum "156 mm wide" and the
    # split was refused. Of seeds 1-12, five failed so (0.70-0.81 now, each).
    sacrum, *ilia = _random_walk_dice(PhantomParams(seed=seed, spacing=(2.0,) * 3, osteoporosis=0.6, variation=2.0))
    assert sacrum >= 0.7, before                                                          # 0.796, 0.768
    assert min(ilia) >= 0.85, ilia


def test_a_few_stray_voxels_in_a_joint_gap_do_not_widen_the_random_walks_sacrum():
    from segmentation.walker import _width_mm

    sacrum = np.zeros((60, 20, 20), dtype=bool)
    sacrum[10:50, 5:15, 5:15] = True                  # 40 columns of 3 mm: 120 mm
    sacrum[[3, 56], 10, 10] = True                    # one voxel each in the gaps beside it
    assert _width_mm(sacrum, 3.0) == 120.0            # 162 mm by its outermost voxels: "no sacrum"
    sacrum[2:10, 5:15, 5:15] = True                   # 8 more columns of bone: they count
    assert _width_mm(sacrum, 3.0) == 144.0


@pytest.mark.slow   # a 1.25 mm phantom
def test_fracture_line_found_on_its_side_and_none_invented_on_the_other():
    phantom = make_phantom(PhantomParams(seed=3, spacing=(1.25,) * 3, fracture="right", osteoporosis=0.6))
    seg = segment(phantom.ct)
    figures = compare(seg.labels, phantom.labels)
    assert figures["fracture_recall"] >= 0.7, figures
    assert figures["fracture_false_ml"] <= 0.7, figures
    # a line as thin as the crack, not the band its averaging spreads over: voxels labelled per
    # true voxel recalled 1.94 (2.27 unthinned)
    recalled = figures["fracture_recall"] * lt.mask(phantom.labels, "fracture").sum()
    assert lt.mask(seg.labels, "fracture").sum() <= 2.1 * recalled
    canon, _ = seg.labels.to_canonical()
    truth, _ = phantom.labels.to_canonical()
    midline = np.argwhere(lt.mask(truth.array, "canal"))[:, 0].mean()
    left_of_midline = np.arange(canon.shape[0])[:, None, None] > midline    # canonical x runs to the left
    assert not (lt.mask(canon.array, "fracture") & left_of_midline).any()


def test_fracture_line_is_followed_to_the_edge_of_the_ala_where_one_side_is_left_to_compare():
    from segmentation.parts import FRACTURE_SIDE_MM, fracture_lines

    # A block of textured trabecular bone (150 HU, 25 HU texture) that narrows downwards, like
    # the ala towards the SI joint, and a dark crack that runs straight down to 2.5 mm from its edge.
    spacing = np.array([1.0, 1.0, 1.0])
    shape = (64, 36, 56)
    x, y, z = np.meshgrid(*[np.arange(n, dtype=float) for n in shape], indexing="ij")
    edge = 38.5 + 0.4 * (z - 3.0)
    ala = (x >= 5) & (x < edge) & (y >= 3) & (y < 33) & (z >= 3) & (z < 53)
    crack = ala & (np.abs(x - 36.0) <= 0.75)
    texture = ndimage.gaussian_filter(np.random.default_rng(0).normal(0.0, 1.0, shape), 1.0)
    hu = np.where(crack, 0.0, 150.0 + 25.0 * texture / texture.std())
    hu = ndimage.gaussian_filter(np.where(ala, hu, 40.0), 0.42)        # a 1 mm FWHM scanner blur

    found = fracture_lines(hu, ala, spacing)
    near_edge = crack & (edge - x < FRACTURE_SIDE_MM)                   # the bone beyond is out of reach
    within_a_voxel = ndimage.binary_dilation(found, iterations=1)
    assert (near_edge & within_a_voxel).sum() >= 0.95 * near_edge.sum()     # 0.66 when not followed
    assert (crack & within_a_voxel).sum() >= 0.95 * crack.sum()
    assert not (found & (ndimage.distance_transform_edt(~crack) > 3.0)).any()



def test_fracture_lines_are_kept_where_they_reach_the_upper_ala():
    from segmentation.parts import FRACTURE_MAX_TOP_MM, fracture_lines

    # A tall block of textured trabecular bone (110 mm, as a real sacrum from its alae down) with two
    # dark cracks: one from 4 mm below its top down through the upper part (an S1-S2 ala fracture),
    # one wholly in the lower part, its top 68 mm below the block's (where real case 001's sacral
    # cornu showed a wall that the averaging made a line of).
    spacing = np.array([1.0, 1.0, 1.0])
    shape = (64, 30, 112)
    x, y, z = np.meshgrid(*[np.arange(n, dtype=float) for n in shape], indexing="ij")
    ala = (x >= 5) & (x < 59) & (y >= 3) & (y < 27) & (z >= 1) & (z < 111)
    upper = ala & (np.abs(x - 20.0) <= 0.75) & (z >= 66) & (z <= 106)
    lower = ala & (np.abs(x - 44.0) <= 0.75) & (z >= 10) & (z <= 42)
    texture = ndimage.gaussian_filter(np.random.default_rng(1).normal(0.0, 1.0, shape), 1.0)
    hu = np.where(upper | lower, 0.0, 150.0 + 25.0 * texture / texture.std())
    hu = ndimage.gaussian_filter(np.where(ala, hu, 40.0), 0.42)
    assert 110 - 42 > FRACTURE_MAX_TOP_MM > 110 - 106

    found = fracture_lines(hu, ala, spacing)
    within_a_voxel = ndimage.binary_dilation(found, iterations=1)
    assert (upper & within_a_voxel).sum() >= 0.9 * upper.sum()
    assert not (found & (np.abs(x - 44.0) <= 4)).any()

@pytest.mark.slow   # a 1.25 mm phantom
def test_fine_ct_is_segmented_on_the_work_grid_and_labelled_on_its_own(monkeypatch):
    from segmentation import pipeline

    phantom = make_phantom(PhantomParams(seed=4, spacing=(1.25,) * 3, fracture="left"))
    monkeypatch.setattr(pipeline, "WORK_BELOW_MM", 1.3)        # as if 1.25 mm were finer than needed:
    monkeypatch.setattr(pipeline, "WORK_SPACING_MM", 2.5)      # 2 x 2 x 2 voxel blocks are averaged
    seg = segment(phantom.ct)
    assert seg.report["notes"][0].startswith("segmented on a 2.5 x 2.5 x 2.5 mm grid"), seg.report["notes"]
    assert seg.labels.same_geometry(phantom.ct)
    figures = compare(seg.labels, phantom.labels)
    assert figures["dice_sacral_bone"] >= 0.93 and figures["foramina_S1_S3_detected"] == 6, figures   # 0.967
    assert seg.report["structures"]["canal"]["voxels"] == int(lt.mask(seg.labels, "canal").sum())


def test_block_averaged_downsampling_keeps_world_positions_and_mass():
    from segmentation.pipeline import block_averaged

    array = np.zeros((40, 40, 40), dtype=np.float32)
    array[10:14, 20:24, 5:9] = 1000.0
    fine = Volume(array, spacing=(0.5, 0.5, 0.5), origin=(3.0, -7.0, 11.0),
                  direction=np.array([[0.0, 1.0, 0.0], [-1.0, 0.0, 0.0], [0.0, 0.0, 1.0]]))
    coarse = block_averaged(fine, np.array([1.0, 1.0, 1.0]))
    assert np.allclose(coarse.spacing, 1.0) and np.allclose(coarse.direction, fine.direction)

    def centre(volume: Volume) -> np.ndarray:
        inside = volume.array > 0
        weights = volume.array[inside]
        return (volume.index_to_world(np.argwhere(inside)) * weights[:, None]).sum(0) / weights.sum()

    assert np.allclose(centre(coarse), centre(fine), atol=1e-6)
    assert coarse.array.sum() * 8 == pytest.approx(array.sum())      # 2 x 2 x 2 blocks averaged, nothing lost


def test_dark_pocket_above_the_canal_is_no_foramen_but_a_channel_beside_it_is():
    from segmentation.lumens import _reaching_out

    spacing = np.array([1.0, 1.0, 1.0])
    canal = np.zeros((41, 20, 30), dtype=bool)
    canal[15:26, 5:12, 0:20] = True                    # 5 mm either side of the midline (x = 20)
    channels = np.zeros_like(canal)
    channels[26:28, 8:10, 22:25] = True                # above the canal, 7 mm out: a dark pocket
    channels[26:31, 8:10, 10:12] = True                # beside it, 10 mm out: 5 mm beyond its wall
    kept = _reaching_out(channels, canal, spacing, 20.0)
    assert kept[:, :, 10:12].sum() == channels[:, :, 10:12].sum()
    assert not kept[:, :, 22:25].any()


def test_tall_s1_foramen_in_fragments_is_one_level():
    from segmentation.lumens import _levels

    channels = np.zeros((20, 40, 140), dtype=bool)
    blocks = {"S1 anterior": (slice(2, 9), slice(5, 16), slice(101, 118)),
              "S1 dorsal": (slice(2, 7), slice(25, 31), slice(119, 126)),     # 13 mm above, 2 mm apart
              "S1 crumb": (slice(2, 5), slice(25, 29), slice(134, 136)),      # 24 voxels, 9 mm above that
              "S2": (slice(2, 9), slice(5, 16), slice(83, 96)),
              "S3": (slice(2, 9), slice(5, 16), slice(66, 73)),
              "S4": (slice(2, 7), slice(5, 10), slice(51, 54))}
    for box in blocks.values():
        channels[box] = True
    levels = _levels(channels, np.array([1.0, 1.0, 1.0]))
    assert len(levels) == 4
    for level, names in zip(levels, (("S1 anterior", "S1 dorsal", "S1 crumb"), ("S2",), ("S3",), ("S4",))):
        expected = np.zeros_like(channels)
        for name in names:
            expected[blocks[name]] = True
        assert np.array_equal(level, expected), names


def test_canal_carried_through_an_open_end_only_while_bone_walls_it_in():
    from segmentation.lumens import carry_open_ends

    # A ring of bone round a 4 x 4 canal for 10 slices; above, 3 slices of a U open in front
    # (bone behind and on both sides), then 2 slices with no bone behind (the canal ends).
    bone = np.zeros((12, 12, 16), dtype=bool)
    bone[2:10, 2:10, :15] = True
    bone[4:8, 4:8, :] = False
    bone[4:8, 2:4, 10:13] = False           # the front wall (low y) is gone: open in front
    bone[2:10, 8:10, 13:15] = False         # no bone behind
    canal = np.zeros_like(bone)
    canal[4:8, 4:8, :10] = True
    carried = carry_open_ends(canal, bone)
    assert carried[:, :, :13].sum() == canal.sum() + 3 * 16          # the section through the U
    assert not carried[:, :, 13:].any()
    assert not (carried & bone).any()


def _block_with_a_foramen() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(voxel centres in mm, sacrum, canal, anterior channel) of a 1 mm block of bone round a canal
    along z; on the left a foramen runs forward from the canal (radius 2.5 mm)."""
    from sample_ct.anatomy import segment_distance

    shape = (61, 50, 40)
    points = np.stack(np.meshgrid(*[np.arange(n, dtype=float) for n in shape], indexing="ij"), axis=-1)
    sacrum = np.zeros(shape, dtype=bool)
    sacrum[5:56, 10:41, 3:37] = True
    canal = (np.abs(points[..., 0] - 30) <= 4) & (np.abs(points[..., 1] - 26) <= 4) & sacrum
    anterior = segment_distance(points, np.array([34.0, 24.0, 20.0]), np.array([46.0, 8.0, 20.0])) <= 2.5
    return points, sacrum, canal, anterior


def _dense_block_hu(sacrum: np.ndarray, lumen: np.ndarray) -> np.ndarray:
    """HU of a 1 mm block: bone of 150 HU in a 1 mm cortex of 500 HU round every surface (the
    lumens' too), lumens of 10 HU, soft tissue of 40 HU, under a 1 mm FWHM scanner blur."""
    depth = ndimage.distance_transform_edt(sacrum & ~lumen)
    hu = np.where(sacrum, 150.0, 40.0)
    hu[(depth > 0) & (depth <= 1.0)] = 500.0
    hu[lumen] = 10.0
    return ndimage.gaussian_filter(hu, 0.42)


def test_dorsal_branch_too_narrow_for_the_smoothed_ct_is_found_on_the_sharper_one():
    from sample_ct.anatomy import segment_distance
    from segmentation.bone import smooth_hu
    from segmentation.lumens import find_foramina

    # The block's bone is 150 HU in a 1 mm cortex of 500 HU; from the foramen's recess a dorsal
    # branch (radius 1.2 mm: a dark line three voxels wide between bright walls) runs back to the
    # dorsal surface.
    spacing = np.array([1.0, 1.0, 1.0])
    points, sacrum, canal, anterior = _block_with_a_foramen()
    dorsal = segment_distance(points, np.array([39.0, 18.0, 20.0]), np.array([39.0, 43.0, 20.0])) <= 1.2
    hu = _dense_block_hu(sacrum, (canal | anterior | dorsal) & sacrum)
    smooth = smooth_hu(hu, spacing)
    branch = dorsal & sacrum & (points[..., 1] > 30)                    # behind the canal
    assert (smooth[branch] > 75.0).any()                                # broken up at half the trabecular HU

    found, _, _ = find_foramina(smooth, sacrum, canal, spacing, 30.0, 75.0)
    assert len(found["left"]) == 1 and not found["left"][0][branch].any()
    found, _, _ = find_foramina(smooth, sacrum, canal, spacing, 30.0, 75.0, hu=hu)
    assert len(found["left"]) == 1 and found["left"][0][branch].all()
    assert found["right"] == []


def test_dorsal_branch_narrowing_in_its_last_millimetres_is_found_to_the_surface():
    from sample_ct.anatomy import segment_distance
    from segmentation.bone import smooth_hu
    from segmentation.lumens import find_foramina

    # As above, but the dorsal branch is wide (radius 2 mm) up to 4 mm inside the dorsal surface
    # (y = 40) and narrow (radius 1.2 mm) through those last 4 mm, which the smoothing lifts above
    # the threshold: the level found stops there, 4 mm short (held-out phantom 507's S4 level
    # stopped 2.8 mm short, and long-axis needles called safe passed its opening at 1.8-2.6 mm).
    # A level more than 3 mm plus a voxel short was searched on the sharper CT; now 1.5 mm.
    spacing = np.array([1.0, 1.0, 1.0])
    points, sacrum, canal, anterior = _block_with_a_foramen()
    axis_distance = segment_distance(points, np.array([39.0, 18.0, 20.0]), np.array([39.0, 43.0, 20.0]))
    last = points[..., 1] > 36.5
    wide, narrow = (axis_distance <= 2.0) & ~last, (axis_distance <= 1.2) & last
    hu = _dense_block_hu(sacrum, (canal | anterior | wide | narrow) & sacrum)
    smooth = smooth_hu(hu, spacing)

    found, _, _ = find_foramina(smooth, sacrum, canal, spacing, 30.0, 75.0)
    assert len(found["left"]) == 1 and found["left"][0][narrow & sacrum].mean() < 0.1     # 0.05
    found, _, _ = find_foramina(smooth, sacrum, canal, spacing, 30.0, 75.0, hu=hu)
    assert len(found["left"]) == 1 and found["right"] == []
    assert found["left"][0][narrow & sacrum].all()                     # 0.05 when 3 mm short was enough


def test_dorsal_branch_barely_darker_than_dim_bone_is_traced_to_its_opening():
    from sample_ct.anatomy import segment_distance
    from segmentation.lumens import find_foramina

    # The block's bone is dim (60 HU) in a 1 mm cortex of 400 HU; the canal and the foramen are
    # 10 HU, and a dorsal branch (radius 1.5 mm) runs back from the recess through an opening in
    # the dorsal cortex. The branch is 40 HU (the partial volume of a narrow channel in dark bone):
    # above the lumen threshold, half the bone's HU. The bone's speckle (60 HU noise) is evened out
    # on the smoothed CT but, on the sharper one, joins into dark pieces larger than any foramen
    # (10-11 ml), so that search is of no use here.
    spacing = np.array([1.0, 1.0, 1.0])
    points, sacrum, canal, anterior = _block_with_a_foramen()
    axis = np.array([38.0, 22.0, 20.0]), np.array([41.0, 43.0, 20.0])
    dorsal = segment_distance(points, *axis) <= 1.5
    hu = np.where(sacrum, 60.0, 40.0)
    hu[sacrum & (ndimage.distance_transform_edt(sacrum) <= 1.0)] = 400.0
    hu[dorsal & sacrum] = 40.0
    hu[(canal | anterior) & sacrum] = 10.0
    hu = ndimage.gaussian_filter(hu, 0.42) + np.random.default_rng(3).normal(0.0, 60.0, sacrum.shape)
    smooth = ndimage.gaussian_filter(hu, 1.0)
    branch = dorsal & sacrum & ~anterior & (points[..., 1] > 30)         # behind the canal

    found, _, _ = find_foramina(smooth, sacrum, canal, spacing, 30.0, 30.0)
    assert len(found["left"]) == 1 and found["left"][0][branch].mean() < 0.2      # no threshold finds it
    before = found["left"][0]
    found, _, _ = find_foramina(smooth, sacrum, canal, spacing, 30.0, 30.0, hu=hu)
    assert len(found["left"]) == 1 and found["right"] == []
    level = found["left"][0]
    assert level[branch].mean() >= 0.8                                  # 0.86
    off_axis = segment_distance(points[level & ~before], *axis)          # the traced branch, as wide as
    assert np.median(off_axis) <= 3.0 and (off_axis <= 4.0).mean() >= 0.65   # the level (2.3 mm): 2.7, 0.71


def test_foramina_joined_to_the_hiatus_keep_their_part_beside_it():
    from segmentation.lumens import _below_canal

    spacing = np.array([1.0, 1.0, 1.0])
    canal = np.zeros((41, 20, 40), dtype=bool)
    canal[15:26, 5:12, 20:40] = True                   # 5 mm either side of the midline (x = 20)
    channels = np.zeros_like(canal)
    channels[16:25, 8:13, 2:16] = True                 # the hiatus below the canal
    channels[24:37, 8:11, 14:19] = True                # an S4 foramen joined to it, out to 16 mm
    hiatus = _below_canal(channels, canal, spacing, 20.0)
    assert hiatus[16:25].sum() == channels[16:25].sum()                  # the midline part
    assert not hiatus[30:].any() and channels[30:].sum() > 0             # beyond the wall + 4 mm


def test_lytic_lesion_speckled_by_its_texture_on_a_coarse_scan_is_found(speckled_119):
    # On this 2 mm phantom the 10 mm lesion's own voxels are speckled (30 HU with the bone's
    # texture): the 3-voxel opening of its dark voxels left nothing, and none was labelled.
    figures = speckled_119
    assert figures["dice_lesion"] >= 0.75, figures                                           # 0 before


def test_marrow_pockets_enclosed_by_the_sacrum_are_bone_but_bays_lumens_and_joint_gaps_are_not():
    from segmentation.sacral import marrow_pockets

    spacing = np.array([1.0, 1.0, 1.0])
    sacrum, ilium, canal = lt.value("sacrum"), lt.value("ilium_left"), lt.value("canal")
    labels = np.zeros((60, 40, 30), dtype=np.uint8)
    labels[5:40, 5:35, 5:25] = sacrum
    labels[40:55, 5:35, 5:25] = ilium
    labels[10:16, 15:22, 10:18] = 0                    # dark marrow deep in the ala: a pocket
    labels[20:26, 28:35, 10:18] = 0                    # a bay open behind (to the dorsal surface)
    labels[28:32, 15:22, 5:25] = canal                 # a found lumen, running head to foot
    labels[39:44, 15:22, 10:18] = 0                    # a gap walled mostly by the ilium
    pockets = marrow_pockets(labels, spacing)
    assert pockets[10:16, 15:22, 10:18].all()
    assert pockets.sum() == 6 * 7 * 8                  # nothing of the bay, the canal or the gap


def test_an_ala_found_far_smaller_than_an_adult_one_is_flagged_with_its_volume():
    from segmentation.pipeline import Segmentation, _with_small_alae_flagged, segmentation_report

    array = np.zeros((60, 40, 40), np.uint8)
    array[:10] = lt.value("ala_right")            # 10 x 40 x 40 voxels of 2 mm: 128 ml
    array[50:52] = lt.value("ala_left")           # 2 x 40 x 40: 25.6 ml ...
    array[50:52, :, 30:] = 0                      # ... less a quarter: 19.2 ml, small but above 15
    labels = Volume(array, spacing=(2.0, 2.0, 2.0))
    report = segmentation_report(labels, notes=[], partial=[], trabecular_hu=200.0, foramina_found={},
                                 source="ct")
    report["structures"]["canal"]["voxels"] = 1                # (no canal is flagged on its own)
    report.update(partial=False, partial_reason=None)
    seg = _with_small_alae_flagged(Segmentation(labels=labels, report=report))
    assert not seg.report["partial"] and seg.report["structures"]["ala_left"]["quality"] == "ok"
    array[50:52, :, 12:] = 0                      # 12 of 40 slices left: 7.7 ml
    seg = _with_small_alae_flagged(Segmentation(labels=labels, report=segmentation_report(    # (no canal here:
        labels, notes=[], partial=[], trabecular_hu=200.0, foramina_found={}, source="ct")))  # flagged first)
    assert seg.report["partial"]
    assert seg.report["partial_reason"].startswith("no sacral canal found; the left ala found holds only 8 ml")
    assert seg.report["structures"]["ala_left"]["quality"].startswith("the left ala found holds only 8 ml")
    assert seg.report["structures"]["ala_right"]["quality"] == "ok" and "right ala" not in seg.report["partial_reason"]
