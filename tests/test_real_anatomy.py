"""Segmentation on real sacra (../shared/ct/real_bone, skipped where absent).

The real bone-only CTs are made whole CTs (soft tissue in a body ellipse, air outside) by
sample_ct.bone_only and scanned again at 3 mm (block averaged, noise added): segmenting one
takes seconds. At their own sub-millimetre spacing (minutes each) they are checked by
``make validate`` (the tests marked ``validation``, deselected from ``make test``), cropped to
the bones plus 30 mm, a targeted field over the pelvis.
Figures against the reference sacrum (solid bone; canal, foramina and joint gaps are holes).
"""

from __future__ import annotations

import numpy as np
import pytest

from sample_ct.bone_only import real_case, real_reference, scanned_reference
from segmentation.bone import body_mask
from segmentation.metrics import dice, enclosed_canal
from segmentation.pipeline import LESION_IN_FATTY_MARROW, segment
from trajplan import labels as lt
from trajplan.io.reader import read_ct
from trajplan.planning import PlanOptions, plan_needles
from trajplan.planning.ct_guard import sample_ct, smoothed
from trajplan.planning.verify import axis_outside_bone

CROP_MM = 30.0


@pytest.fixture(scope="module")
def real_scan(shared_ct):
    """(CT, reference, segmentation) of a real case scanned as ``scan``, each read and segmented once."""
    folder = shared_ct / "real_bone"
    cache: dict = {}

    def get(case: str, scan: str):
        if not (folder / f"{case}_ct.nii.gz").is_file():
            pytest.skip(f"real bone data not found in {folder}")
        if (case, scan) not in cache:
            ct, ref = real_case(folder, case, scan)
            cache[case, scan] = ct, ref, segment(ct)
        return cache[case, scan]

    return get


def in_an_ilium(sacral: np.ndarray, ref) -> float:
    """The fraction of the labelled sacral bone that lies in a reference ilium."""
    return (sacral & np.isin(ref.array, (2, 3))).sum() / max(int(sacral.sum()), 1)


# 0.859 and 0.742; 0.759 and 0.716 before step 3c sought the joint on a grid refined from the 3 mm one
# (18.6 and 20.8 ml of the left alae labelled ilium, 11.2 and 15.0 ml after), 0.800 and 0.740 before it
# made a second pass on grids that coarse (001: 9.0 ml of its left ala labelled ilium), 0.833 and 0.741
# before the pieces chained below the coccyx's seed grew with it (001: 39 ml of its lower sacrum in
# pieces that no bone took)
# With the scans' noise drawn independently of the soft tissue's (2026-12-06), 001 is at 0.851 (0.862 since
# step 3c's sacral flood passes through the marrow left out of its left ala) and 003
# fails on the new draw: 0.724, and 6.7 % of its sacral bone lies in the left reference ilium (0.9 % on
# the earlier draw); short-axis needles called safe ran wholly inside that ilium, which the labels call
# ala, with no cortex on their path for the CT guard to see (the planner now reads what lies ahead of
# the tip: see test_needles_in_an_ilium_labelled_ala_are_stopped_by_what_lies_ahead_of_the_tip).
# Since the marrow pockets may lead out in two directions on grids this coarse (step 10a), 001 is at 0.866.
@pytest.mark.parametrize("case, min_dice", [
    ("001", 0.86),
    pytest.param("003", 0.72, marks=pytest.mark.xfail(strict=True, reason="003 at 3 mm: 6.1 % of the sacral "
                                                       "bone in the left reference ilium on this noise draw")),
])
def test_real_sacrum_at_3mm_found_and_kept_off_the_ilia(real_scan, case, min_dice):
    _, ref, seg = real_scan(case, "3mm")
    sacral = lt.sacral_bone(seg.labels)
    assert dice(sacral, ref.array == 1) >= min_dice
    assert in_an_ilium(sacral, ref) < 0.01                                     # none in either


def test_needles_in_an_ilium_labelled_ala_are_stopped_by_what_lies_ahead_of_the_tip(real_scan, shared_ct):
    # 003 at 3 mm: the bone split and step 3c label a plate of the left ilium ala, and the SI joint they
    # draw lies inside the ilium beyond it. Six short-axis needles were called safe in that plate (no
    # cortex on their paths for the CT guard), each with the labelled joint and ilium, or a gap and then
    # the sacrum, straight ahead of its tip. Those two readings (trajplan.planning.ahead) stop them; one
    # path is left whose labels bridge the gap to the sacrum (ala all the way: a gap of 1.8 mm in the CT).
    ct, ref, seg = real_scan("003", "3mm")
    assert in_an_ilium(lt.sacral_bone(seg.labels), ref) > 0.03          # the mistake is still made
    plan = plan_needles(seg.labels, PlanOptions(needles=3, mc_samples=50), ct=ct, lesion_uncertain=seg.lesion_uncertain,
                        implausible=seg.implausible_reason)
    native = scanned_reference(shared_ct / "real_bone", "003", "3mm")
    listed = plan["needles"] + plan["alternatives"]
    safe = {(tuple(n["entry_lps"]), tuple(n["tip_lps"])): n for n in listed if n["safe"]}
    in_ilium = [n for n in safe.values() if native.array[tuple(np.rint(native.world_to_index(
        np.asarray(n["tip_lps"], float))).astype(int))] in (2, 3)]
    assert len(in_ilium) <= 1, [(n["entry_lps"], n["tip_lps"], n["metrics"]["bone_ahead_mm"]) for n in in_ilium]
    assert all(n["metrics"]["bone_ahead_mm"] == 30.0 for n in in_ilium)   # the bridged one: bone all the way


def test_real_sacrum_at_2mm_has_its_border_with_the_ilium_on_the_joint_and_its_marrow(real_scan):
    # Fatty ala marrow darker than the joint left the bone split's border inside the left ala
    # (17 ml of the reference sacrum labelled ilium, Dice 0.814); step 3c moves it onto the joint's
    # dark sheet: 9 ml labelled ilium, Dice 0.834. The marrow pockets the sacrum walls in (step 10a,
    # on a 2 mm grid where step 2a took dark marrow as bone) bring it to 0.881 (0.905 later), and
    # step 3c's second pass from the first one's border to 0.936, none of the ala left to the ilium;
    # 0.915 on a second noise draw (5 ml of the reference sacrum in the left joint band).
    ct, ref, seg = real_scan("001", "2mm")
    sacral = lt.sacral_bone(seg.labels)
    truth = ref.array == 1
    assert dice(sacral, truth) >= 0.91
    assert any("dark marrow pockets" in note for note in seg.report["notes"])
    assert (truth & lt.mask(seg.labels, "ilium_left")).sum() * ct.voxel_volume_ml <= 2.0
    assert in_an_ilium(sacral, ref) < 0.01
    assert any("borders moved onto the joints" in note for note in seg.report["notes"])



def test_fractured_sacrum_at_2mm_gets_back_the_ala_plate_the_split_seeded_with_the_ilium(real_scan):
    # 003's right ala: the bone split seeded its lateral plate with the ilium (the joint bridged by
    # partial volume), 20-32 mm from the sacrum's label across fatty marrow the bone step left out, and
    # step 3c's 15 mm band never reached it: 24.6 ml of the reference sacrum labelled ilium, Dice 0.792.
    # Given again where the joint's sheet cuts it off from the ilium: 16.5 ml, 0.856.
    ct, ref, seg = real_scan("003", "2mm")
    truth = ref.array == 1
    assert dice(lt.sacral_bone(seg.labels), truth) >= 0.84
    assert (truth & lt.mask(seg.labels, "ilium_right")).sum() * ct.voxel_volume_ml <= 18.0
    assert (lt.sacral_bone(seg.labels) & (ref.array == 3)).sum() * ct.voxel_volume_ml <= 1.0   # none of the right ilium


def test_fractured_sacrum_at_3mm_gets_back_its_ala_plate_and_is_planned_on_safely(real_scan, shared_ct):
    # The same plate at 3 mm, where step 3c runs on the band refined to 1 mm: 20.1 ml of the reference
    # sacrum labelled ilium_right, Dice 0.744; given again, 0.0 ml and 0.824. There dark marrow walled in
    # (9.3 ml, in a hole of the reference) is labelled lesion, marked uncertain: two right short-axis
    # needles called safe aimed at it and ended 4.5 mm outside the reference bone, until the planner
    # passed over an uncertain lesion for the ala. With the marrow pockets of a coarse grid (step 10a):
    # 0.830. Where they were let out in three directions with no voxel of clearance (0.848), two right
    # short-axis needles called safe entered a labelled bay of the dorsal surface 3 mm proud of the bone.
    ct, ref, seg = real_scan("003", "3mm")
    truth = ref.array == 1
    assert dice(lt.sacral_bone(seg.labels), truth) >= 0.82
    assert (truth & lt.mask(seg.labels, "ilium_right")).sum() * ct.voxel_volume_ml <= 2.0
    assert (lt.sacral_bone(seg.labels) & (ref.array == 3)).sum() * ct.voxel_volume_ml <= 2.0
    assert seg.lesion_uncertain
    plan = assert_safe_needles_stay_in_the_bone(ct, seg, scanned_reference(shared_ct / "real_bone", "003", "3mm"))
    assert {t["kind"] for t in plan["targets"].values()} == {"ala"}


def test_real_scan_with_all_its_foramina_found_is_not_flagged_for_the_lowered_threshold(real_scan):
    # Every real scan was flagged partial because its foramina were searched below a lowered threshold
    # (003 at 2 mm: below 61 HU instead of 121 HU), whatever was found. All eight found, that is a note.
    _, _, seg = real_scan("003", "2mm")
    foramina = {name: entry for name, entry in seg.report["structures"].items() if name.startswith("foramen_")}
    assert len(foramina) == 8 and all(entry["voxels"] > 0 for entry in foramina.values()), foramina
    assert any("searched below" in note and "all 4 levels were found on both sides" in note
               for note in seg.report["notes"]), seg.report["notes"]
    assert not seg.report["partial"], seg.report["partial_reason"]


def test_real_sacrum_at_2mm_has_its_canal_above_an_open_ring(real_scan):
    # The canal's axial holes stop where its ring is open behind (between two segments' laminae): the S1
    # segment above such a gap (4.1 ml) was left out of the canal, then filled as a marrow pocket that
    # the sacrum walls in and labelled bone; the canal label held 0.37 of the reference canal's axial
    # holes and the sacral bone 0.53 (0.72 and 0.18 now).
    ct, ref, seg = real_scan("001", "2mm")
    canal_holes = enclosed_canal(ref.array == 1, ct.spacing)
    assert canal_holes.sum() * ct.voxel_volume_ml > 5.0                     # the reference has its canal
    assert (canal_holes & lt.mask(seg.labels, "canal")).sum() >= 0.6 * canal_holes.sum()
    assert (canal_holes & lt.sacral_bone(seg.labels)).sum() <= 0.25 * canal_holes.sum()


def test_real_sacrum_at_2mm_has_no_fracture(real_scan):
    # Case 001 is intact. With step 3c's second pass its lower left sacrum became ala, and the medial
    # wall of its left sacral cornu there (72-83 mm below the alae's top) was found as a bright
    # fracture line (0.7 ml): short-axis needles aimed at it ended 1-2.5 mm outside the bone, in the
    # soft tissue of the hiatus beside the wall. Lines are now kept only where they reach the upper ala.
    _, _, seg = real_scan("001", "2mm")
    assert not lt.mask(seg.labels, "fracture").any()


def test_real_sacrum_at_2mm_safe_needles_stay_in_the_bone(real_scan, shared_ct):
    # On each of three noise draws a short-axis needle called safe entered the right ala 3 mm past its
    # labelled entry, aimed at fatty marrow labelled lesion; that "lesion" opens into the soft tissue
    # through gaps of the cortex and is no longer labelled so (segmentation step 10, closed_lesions).
    ct, _, seg = real_scan("001", "2mm")
    plan = assert_safe_needles_stay_in_the_bone(ct, seg, real_reference(shared_ct / "real_bone", "001"))
    assert plan["outcome"] == "planned"


def test_real_sacrum_at_3mm_safe_needles_keep_their_shaft_in_the_bone(real_scan, shared_ct):
    # A right short-axis needle called safe ran 2 mm under the dorsal cortex of the ala, beside the S1
    # superior articular process, its shaft out through the labelled surface 10 mm past its entry, and
    # crossed a 6 mm gap of the reference that the scan reads at 150 HU, brighter than its trabecular
    # bone: the CT guard cannot see it; the shaft's depth below the labelled surface (shaft_outside_bone) does.
    ct, _, seg = real_scan("001", "3mm")
    plan = assert_safe_needles_stay_in_the_bone(ct, seg, scanned_reference(shared_ct / "real_bone", "001", "3mm"))
    safe = [n for n in plan["needles"] + plan["alternatives"] if n["safe"]]
    assert all(n["metrics"]["shaft_depth_mm"] >= 0.0 for n in safe)


def assert_safe_needles_stay_in_the_bone(ct, seg, native) -> dict:
    """Plan on ``seg`` (3 needles) and check that at least 6 needles are called safe and that each stays
    in the reference sacrum ``native`` (at its own grid) and off the ilia; the plan."""
    plan = plan_needles(seg.labels, PlanOptions(needles=3, mc_samples=50), ct=ct, lesion_uncertain=seg.lesion_uncertain,
                        implausible=seg.implausible_reason)
    safe = [n for n in plan["needles"] + plan["alternatives"] if n["safe"]]
    assert len(safe) >= 6, plan["warnings"]
    for needle in safe:
        outside_mm, crosses_ilium = axis_outside_bone(needle, native, forbidden=(2, 3), end_tolerance_mm=1.5,
                                                      from_reference_entry=True)
        assert outside_mm == 0.0 and not crosses_ilium, (needle["technique"], needle["side"], outside_mm)
    return plan


def test_a_ct_archived_in_thick_slices_is_segmented_and_planned_on_safely(real_scan, shared_ct):
    # 001 with its slices made 3 mm thick, its 0.86 mm pixels kept (block averaged along the head-to-foot
    # axis, noise of sd 15 HU): Dice 0.926, 12 needles called safe, none leaving the reference bone (003:
    # 0.805, its right ala's fatty marrow left out as at its own spacing; 8 needles, none leaving). With
    # the marrow pockets of a coarse grid (step 10a, a voxel 3 mm high): 0.929 (003: 0.854, 6 needles).
    ct, ref, seg = real_scan("001", "thick")
    assert ct.spacing[2] == 3.0 and ct.spacing[0] < 1.0
    sacral = lt.sacral_bone(seg.labels)
    assert dice(sacral, ref.array == 1) >= 0.91
    assert in_an_ilium(sacral, ref) < 0.01
    plan = assert_safe_needles_stay_in_the_bone(ct, seg, real_reference(shared_ct / "real_bone", "001"))
    assert plan["outcome"] == "planned"


@pytest.mark.validation
@pytest.mark.parametrize("case, scan, min_dice", [
    ("001", "tilt_a", 0.89), ("001", "tilt_b", 0.89), ("003", "tilt_a", 0.89),
    pytest.param("003", "tilt_b", 0.77, marks=pytest.mark.xfail(strict=True, reason=(
        "on this noise draw no needle is called safe (fewer than the 6 this test asks for)"))),
])
def test_a_patient_lying_tilted_is_segmented_and_planned_on_safely(real_scan, shared_ct, case, scan, min_dice):
    # On 001 tilt_a two short-axis needles called safe ended in the upper canal (a false fracture line on
    # its wall excused the dark for the CT guard): the canal above a slice where its ring is open had
    # been left out of the canal and filled as bone (segmentation.lumens._canal_pieces).
    # 001 at 2 mm as it lay: 0.936; tilted 0.912 and 0.910. 003: 0.804; tilted 0.798 and 0.801. On a second
    # noise draw (the scans' noise independent of the soft tissue's): 001 0.915; 0.934 and 0.932; 003 0.791;
    # 0.803 and 0.799. Since step 3c gives again the ala plate the split seeds with the ilium (draw 0): 003
    # tilted 0.901 and 0.790.
    ct, ref, seg = real_scan(case, scan)
    sacral = lt.sacral_bone(seg.labels)
    assert dice(sacral, ref.array == 1) >= min_dice
    assert in_an_ilium(sacral, ref) < 0.01
    assert_safe_needles_stay_in_the_bone(ct, seg, scanned_reference(shared_ct / "real_bone", case, scan))


@pytest.mark.validation
def test_a_noisy_fractured_sacrum_is_segmented_on_the_ct_smoothed_for_its_noise(real_scan, shared_ct):
    # 003 with noise of sd 25 HU added (28 HU in all), smoothed by 0.82 mm for it: 0.895 (0.888 by 0.7 mm).
    # On the noise draw of before 2026-12-06, 0.822 by 0.7 mm (its shells too broken by the noise to name
    # the bones unless closed, 26 ml of the right ala labelled ilium) and 0.894 by 0.83 mm.
    ct, ref, seg = real_scan("003", "noisy")
    assert any(note.startswith("noise sd 28 HU") and "0.82 mm" in note for note in seg.report["notes"])
    sacral = lt.sacral_bone(seg.labels)
    assert dice(sacral, ref.array == 1) >= 0.88
    assert in_an_ilium(sacral, ref) < 0.01
    assert_safe_needles_stay_in_the_bone(ct, seg, ref)


def assert_not_flagged_for_what_is_not_there(seg) -> None:
    reason = seg.report["partial_reason"] or ""
    assert "contrast-filled bowel" not in reason          # there is no bowel in this scan
    assert "no L5 was separated" not in reason            # nor L5: the bone-only source kept the pelvis alone
    assert any("L5 is not in the field of view" in note for note in seg.report["notes"])


def test_real_scan_at_3mm_is_not_flagged_for_what_is_not_there(real_scan):
    assert_not_flagged_for_what_is_not_there(real_scan("001", "3mm")[2])


@pytest.mark.parametrize("case, scan", [pytest.param("003", "2mm", marks=pytest.mark.slow),
                                        ("001", "3mm"), ("003", "3mm")])
def test_a_sacrum_known_to_be_wrong_is_flagged(real_scan, case, scan):
    # A result that is half the sacrum, or mostly an ilium, is never passed on silently
    # (003 at 2 mm: a 32 ml piece of the left ilium was named sacrum, unflagged).
    _, ref, seg = real_scan(case, scan)
    sacral = lt.sacral_bone(seg.labels)
    truth = ref.array == 1
    wrong = in_an_ilium(sacral, ref) > 0.2 or sacral.sum() < 0.5 * truth.sum()
    if wrong:
        assert seg.report["partial"] and "the sacrum found" in seg.report["partial_reason"], seg.report


def test_an_ilium_taken_for_the_sacrum_gets_no_needle_called_safe(shared_ct):
    # 003 at 3 mm on the third noise draw: the bone split took the left ilium in (506 ml, 46.6 % of it in
    # the reference ilium). Flagged, it was planned on all the same: 13 needles called safe, 8 of them
    # across the ilium. The planner now trusts no labels whose sacrum is implausible.
    folder = shared_ct / "real_bone"
    ct, ref = real_case(folder, "003", "3mm", draw=2)
    seg = segment(ct)
    assert in_an_ilium(lt.sacral_bone(seg.labels), ref) > 0.2        # the mistake the gate is for, still made
    assert seg.report["implausible"] and "midline" in seg.implausible_reason, seg.report["partial_reason"]
    assert "ml (an adult sacrum holds about 150-300 ml): it probably takes in part of an ilium" \
        in seg.implausible_reason, seg.implausible_reason
    plan = plan_needles(seg.labels, PlanOptions(needles=3, mc_samples=20), ct=ct, implausible=seg.implausible_reason)
    assert plan["outcome"] == "no_safe_path" and plan["needles"] == []
    assert plan["alternatives"] and all(n["reasons"][0] == "segmentation_implausible" for n in plan["alternatives"])
    native = scanned_reference(folder, "003", "3mm")
    crossing = [n for n in plan["alternatives"] if n["reasons"] == ["segmentation_implausible"]
                and axis_outside_bone(n, native, forbidden=(2, 3), end_tolerance_mm=1.5)[1]]
    assert crossing, "no needle that only the gate stops crosses an ilium: this draw no longer tests the gate"


@pytest.mark.parametrize("case, scan", [
    ("001", "3mm"),
    pytest.param("003", "3mm", marks=pytest.mark.xfail(strict=True, reason=(
        "on this noise draw 9.3 ml of its sacrum (labelled sacrum before step 3c's sacral passage gave it more "
        "bone around that dark piece, so that it no longer opens outside) is labelled lesion, marked uncertain"))),
])
def test_fatty_marrow_labelled_lesion_is_marked_uncertain(real_scan, case, scan):
    # Neither real sacrum has a lytic lesion, yet its dark fatty marrow was labelled lesion (21 and
    # 38 ml at 3 mm on the validation's draw) until the dark pieces that open into the soft tissue
    # through gaps of the cortex were no longer taken for lesions (none now). What is still labelled
    # must not be passed on as a finding ("ok").
    _, _, seg = real_scan(case, scan)
    lesion = seg.report["structures"]["lesion"]
    assert lesion["volume_ml"] <= 1.0, lesion
    assert not lesion["voxels"] or lesion["quality"] == LESION_IN_FATTY_MARROW, lesion


# ------------------------------------------------------------------ own spacing: make validate
@pytest.mark.validation
def test_real_sacrum_at_its_own_spacing_is_segmented_once_in_the_crop(real_scan):
    # The crop's sacrum (with its alae) agreed with the 2 mm located one by a Dice under 0.88, so the
    # whole CT was segmented again at full resolution, to the same sacral Dice in 2.8 x the time
    # (124 s, now 44 s); the crop is now judged by whether each lies within 5 mm of the other (91 %).
    _, ref, seg = real_scan("001", "own")
    assert seg.report["notes"][0].startswith("sacrum located on a 2 x 2 x 2 mm grid"), seg.report["notes"]
    # The marrow pockets of step 10a raised it from 0.890 (19 ml of dark alar marrow left unlabelled) to
    # 0.911, those walled in 3-D (behind gaps in the cortex) to 0.929, and the sacrum-ilium border
    # moved onto the joint (step 3c) to 0.957, over the target of 0.93.
    assert dice(lt.sacral_bone(seg.labels), ref.array == 1) >= 0.95


@pytest.fixture(scope="module")
def real_001(shared_ct):
    folder = shared_ct / "real_bone"
    if not (folder / "001_ct.nii.gz").is_file():
        pytest.skip(f"real bone data not found in {folder}")
    ct, ref = real_case(folder, "001")
    hit = np.argwhere(ref.array > 0)
    pad = np.ceil(CROP_MM / ct.spacing).astype(int)
    lower = tuple(np.maximum(hit.min(axis=0) - pad, 0))
    upper = tuple(np.minimum(hit.max(axis=0) + pad + 1, ct.shape))
    ct, ref = ct.crop(lower, upper), ref.crop(lower, upper)
    return ct, ref, segment(ct)


@pytest.mark.validation
def test_real_sacrum_found_with_its_alae_and_kept_off_the_ilia(real_001):
    ct, ref, seg = real_001
    sacral = lt.sacral_bone(seg.labels)
    truth = ref.array == 1
    # 0.688 before the dark-marrow enclosure (54 % of the sacrum found, the alae hollow)
    assert dice(sacral, truth) >= 0.87
    assert in_an_ilium(sacral, ref) <= 0.01
    ml = ct.voxel_volume_ml
    for side in lt.SIDES:
        assert lt.mask(seg.labels, f"ala_{side}").sum() * ml >= 15.0, side


@pytest.mark.validation
def test_real_scan_is_not_flagged_for_what_is_not_there(real_001):
    assert_not_flagged_for_what_is_not_there(real_001[2])


@pytest.fixture(scope="module")
def visible_human(shared_ct):
    """(CT, segmentation) of the 1 mm Visible Human pelvis (DICOM, no reference masks)."""
    folder = shared_ct / "vhf_pelvis_dicom"
    if not folder.is_dir():
        pytest.skip(f"the Visible Human pelvis is not in {folder}")
    ct = read_ct(folder)
    return ct, segment(ct)


@pytest.mark.validation
def test_visible_human_sacrum_stops_below_L5_and_L4(visible_human):
    """No erosion parts L5 from the sacrum there (a thin disc), so the sacroiliac joints do; before,
    the 'sacrum' held L5 and L4 (266 ml)."""
    ct, seg = visible_human
    canon, reorder = ct.to_canonical()
    labels = reorder.apply(seg.labels).array
    sacral, l5 = lt.sacral_bone(labels), labels == lt.value("L5")
    ml = ct.voxel_volume_ml
    assert l5.sum() * ml >= 100.0                      # L5 and L4: 137 ml measured
    assert sacral.sum() * ml <= 200.0
    height = canon.spacing[2]
    assert (np.argwhere(l5)[:, 2].mean() - np.argwhere(sacral)[:, 2].mean()) * height >= 40.0
    assert any("lumbar spine" in note for note in seg.report["notes"])


@pytest.mark.validation
def test_visible_human_alae_reach_the_joints_and_a_plan_is_made(visible_human):
    """Its fatty alae were split at the shell split's seeds, 15-20 mm short of the joints (11 and 12 ml,
    flagged; the SI joint band inside the left ala blocked every left path: no safe path). Step 3c's
    second pass on the 1 mm grid moves the borders onto the joints: 23 and 17 ml, and a plan. Smoothed for
    its noise (sd 31 HU: 0.88 mm instead of 0.7), its right ala is no longer split short of the joint: 23
    and 36 ml (32 and 37 ml measured 2026-12-07). No needle called safe there has fat (below -100 HU)
    on its axis from the bone entry to 5 mm past its tip: the right short axis first chosen ended in a
    false fracture line at the front of the S1 body-ala junction with -172 HU 4.6 mm past it (the CT
    guard's ``ct_fracture_opens_out`` marks it); the safe needles' lowest reading is -2 HU now."""
    ct, seg = visible_human
    assert any(note.startswith("noise sd 31 HU") and "0.88 mm" in note for note in seg.report["notes"])
    for side in lt.SIDES:
        assert seg.report["structures"][f"ala_{side}"]["volume_ml"] >= 20.0, seg.report["structures"][f"ala_{side}"]
    plan = plan_needles(seg.labels, PlanOptions(needles=2, mc_samples=20), ct=ct, implausible=seg.implausible_reason,
                        lesion_uncertain=seg.lesion_uncertain)
    assert plan["outcome"] == "planned", plan["warnings"]
    assert any(needle["safe"] for needle in plan["needles"])
    for needle in plan["needles"] + plan["alternatives"]:
        if needle["safe"]:
            entry, tip = np.asarray(needle["entry_lps"], float), np.asarray(needle["tip_lps"], float)
            length = float(np.linalg.norm(tip - entry))
            along = np.arange(0.0, length + 5.0, 0.25)
            hu = smoothed(sample_ct(ct, entry + along[:, None] * (tip - entry) / length), 0.25)
            assert hu.min() >= -100.0, (needle["side"], needle["technique"], float(hu.min()),
                                        float(along[hu.argmin()] - length))


@pytest.mark.validation
def test_darkened_real_sacrum_gets_its_alae_back_from_the_random_walks_ilia(real_scan):
    # The random walk (step 3b) gives the shells of the alae to the ilia, deeper than step 3c's band
    # reaches in one pass: 16 ml of the reference sacrum labelled ilium and Dice 0.859 with one
    # pass, 9 ml and 0.885 with a second one from the first one's border. On the noise drawn apart
    # from the soft tissue's (2026-12-06) it fell to 0.851 again, with 16 ml labelled ilium, until
    # step 3c's sacral flood passed through the marrow left out of the alae (0.895).
    _, ref, seg = real_scan("001", "osteo")
    sacral, truth = lt.sacral_bone(seg.labels), ref.array == 1
    assert dice(sacral, truth) >= 0.88
    as_ilium = truth & lt.mask(seg.labels, "ilium_left", "ilium_right")
    assert as_ilium.sum() * seg.labels.voxel_volume_ml <= 11.0
    assert in_an_ilium(sacral, ref) < 0.01


def test_random_walk_split_takes_a_spine_that_ends_in_the_field_as_all_sacrum(shared_ct):
    # Darkened (osteoporotic) case 001 holds no L5: its sacrum ends 45 mm below the top of the
    # field. The walk's mid-sagittal "bodies" are fragments of cortex (the back wall of S2-S5 and
    # the promontory), and 66 ml of the upper sacrum had been labelled L5 (sacral Dice 0.39).
    from segmentation.walker import split_bones_by_walker

    folder = shared_ct / "real_bone"
    if not (folder / "001_ct.nii.gz").is_file():
        pytest.skip(f"real bone data not found in {folder}")
    ct, ref = real_case(folder, "001", "osteo")
    ct, _ = ct.to_canonical()
    ref, _ = ref.to_canonical()
    truth = ref.array == 1
    body = np.argwhere(body_mask(ct.array))[:, 0]                              # the midline of the body
    bones = split_bones_by_walker(ct.array, ct.spacing, float(body.mean()))
    assert not bones.L5.any()
    assert dice(bones.sacrum, truth) >= 0.6                                    # 0.67 (0.42 with the "L5")
    assert in_an_ilium(bones.sacrum, ref) < 0.01


def test_a_fatty_scan_turns_the_real_trabecular_bone_darker_than_soft_tissue_and_keeps_its_cortex(shared_ct):
    from sample_ct.bone_only import SCANS, SOFT_TISSUE_HU, fatty_trabecular, trabecular_bone

    own, ref = real_case(shared_ct / "real_bone", "003")
    bone = ref.array > 0
    fatty = fatty_trabecular(own, bone, SCANS["fatty"]["fatty_marrow_hu"])
    trabecular = trabecular_bone(own, bone)
    assert abs(float(np.median(fatty.array[trabecular]))) < 1.0                  # its median: 0 HU
    assert float(np.mean(fatty.array[trabecular] < SOFT_TISSUE_HU)) > 0.6        # most of it below soft tissue
    assert float(np.mean(own.array[trabecular] < SOFT_TISSUE_HU)) < 0.1          # as it was not
    assert np.array_equal(fatty.array[~trabecular], own.array[~trabecular])      # the cortex and the rest kept
