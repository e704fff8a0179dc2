"""The procedure card: hand-made straight lines with known answers, and a planned phantom."""

from __future__ import annotations

import numpy as np
import pytest

from trajplan.card import (
    add_cards,
    c_arm_angles,
    entry_slice,
    gantry_tilt,
    in_plane_angle,
    lps_to_ras,
    needle_length,
    skin_point,
)
from trajplan.volume import Volume


def tilted(deg: float) -> np.ndarray:
    """Hub-to-tip direction of a needle entering from behind (going anterior) whose hub leans
    ``deg`` toward the head: the needle advances anteriorly and caudally."""
    a = np.radians(deg)
    return np.array([0.0, -np.cos(a), -np.sin(a)])


def test_ras_negates_x_and_y():
    assert lps_to_ras([10.0, -20.5, 30.0]) == [-10.0, 20.5, 30.0]
    assert lps_to_ras([0.0, 0.0, -5.0]) == [0.0, 0.0, -5.0]


def test_vertical_needle_needs_no_gantry_tilt():
    assert gantry_tilt([0.0, -1.0, 0.0], "prone") == (0.0, None)
    assert gantry_tilt([0.0, 1.0, 0.0], "supine") == (0.0, None)
    assert in_plane_angle([0.0, -1.0, 0.0]) == (0.0, None)


@pytest.mark.parametrize("deg", [5.0, 10.0, 25.0])
def test_needle_hub_toward_the_head_tilts_the_gantry_top_toward_the_head_when_prone(deg):
    tilt, toward = gantry_tilt(tilted(deg), "prone")
    assert tilt == pytest.approx(deg, abs=1e-9) and toward == "head"
    # the same plane read from the other end of the needle
    assert gantry_tilt(-tilted(deg), "prone") == (pytest.approx(deg, abs=1e-9), "head")
    # supine: the top of the gantry is the anterior side, which lies toward the feet on this plane
    assert gantry_tilt(tilted(deg), "supine") == (pytest.approx(deg, abs=1e-9), "feet")
    assert gantry_tilt(tilted(-deg), "prone") == (pytest.approx(deg, abs=1e-9), "feet")


def test_gantry_tilt_ignores_the_left_right_lean_and_in_plane_angle_reads_it():
    # 10 deg toward the head out of the axial plane, then 20 deg from vertical toward the right
    plane = tilted(10.0)
    d = np.cos(np.radians(20)) * plane + np.sin(np.radians(20)) * np.array([-1.0, 0.0, 0.0])
    assert gantry_tilt(d, "prone") == (pytest.approx(10.0), "head")
    angle, hub = in_plane_angle(d)
    assert angle == pytest.approx(20.0) and hub == "left"      # advancing to the right, the hub leans left
    assert in_plane_angle(d * [-1, 1, 1])[1] == "right"


def test_c_arm_view_down_the_needle():
    # straight posterior-to-anterior needle: plain PA view, detector behind
    assert c_arm_angles([0.0, -1.0, 0.0]) == {"cranial_caudal_deg": 0.0, "oblique_deg": 0.0,
                                               "detector_side": "posterior"}
    # long-axis like: advancing cranially at 60 deg out of the axial plane -> detector 60 deg caudal
    a = np.radians(60)
    view = c_arm_angles([0.0, -np.cos(a), np.sin(a)])
    assert view["cranial_caudal_deg"] == pytest.approx(-60.0) and view["oblique_deg"] == 0.0
    # advancing toward the patient's right (-x) at 15 deg: detector rotated 15 deg toward the left
    b = np.radians(15)
    view = c_arm_angles([-np.sin(b), -np.cos(b), 0.0])
    assert view["oblique_deg"] == pytest.approx(15.0) and view["cranial_caudal_deg"] == 0.0


def test_shortest_standard_needle_that_reaches():
    assert needle_length(72.0) == 100.0
    assert needle_length(100.0) == 100.0
    assert needle_length(100.1) == 125.0
    assert needle_length(149.0) == 150.0
    assert needle_length(151.0) is None


def box_ct(spacing: float = 1.0) -> Volume:
    """Air (-1000 HU) with a soft-tissue slab (40 HU) for y in [-50, 50] mm, x and z in [-60, 60]:
    the skin is the plane y = 50 (posterior) and y = -50 (anterior); the midline is x = 0."""
    n = int(round(200 / spacing)) + 1
    origin = np.array([-60.0, -100.0, -60.0])
    shape = (int(round(120 / spacing)) + 1, n, int(round(120 / spacing)) + 1)
    y = origin[1] + np.arange(shape[1]) * spacing
    array = np.full(shape, -1000.0, dtype=np.float32)
    array[:, (y >= -50) & (y <= 50), :] = 40.0
    return Volume(array, (spacing,) * 3, origin)


def test_skin_point_on_a_slab_at_a_known_depth():
    ct = box_ct()
    entry = np.array([0.0, 20.0, 0.0])
    skin, found = skin_point(ct, entry, [0.0, -1.0, 0.0])
    assert found and skin[1] == pytest.approx(50.5, abs=0.51) and skin[0] == 0 and skin[2] == 0
    # 30 deg oblique: 30 mm to the skin plane vertically -> 30 / cos 30 along the line
    a = np.radians(30)
    skin, found = skin_point(ct, entry, [-np.sin(a), -np.cos(a), 0.0])
    assert found and np.linalg.norm(skin - entry) == pytest.approx(30 / np.cos(a), abs=1.1)


def test_skin_point_where_the_line_leaves_the_ct_inside_the_body():
    ct = box_ct()
    entry = np.array([0.0, 20.0, 0.0])
    # along the body's long axis: the line leaves the CT at z = -60 without meeting air
    skin, found = skin_point(ct, entry, [0.0, 0.0, 1.0])
    assert not found
    assert skin[2] == pytest.approx(-60.0, abs=0.5) and skin[1] == pytest.approx(20.0)


def test_entry_slice_and_table_position():
    ct = box_ct(spacing=2.0)                  # z = -60 + 2 k
    assert entry_slice(ct, [0.0, 50.0, 10.2]) == (35, 10.0)
    flipped = Volume(ct.array[:, :, ::-1].copy(), ct.spacing, (-60.0, -100.0, 60.0),
                     np.diag([1.0, 1.0, -1.0]))   # slices stored head first
    assert entry_slice(flipped, [0.0, 50.0, 10.2]) == (25, 10.0)


def straight_needle(technique: str, entry, tip, side: str = "left", rank: int = 1) -> dict:
    return {"rank": rank, "technique": technique, "side": side, "entry_lps": list(entry), "tip_lps": list(tip),
            "metrics": {"skin_to_bone_mm": None}, "skin_entry_lps": None}


def test_add_cards_on_hand_made_needles():
    ct = box_ct()
    labels = ct.with_array(np.zeros(ct.shape, dtype=np.uint8))
    a = np.radians(10)
    entry = np.array([15.0, 20.0, 0.0])
    tip = entry + 40.0 * np.array([0.0, -np.cos(a), -np.sin(a)])
    plan = {"needles": [straight_needle("short_axis", entry, tip),
                        straight_needle("long_axis", [-10.0, 20.0, 0.0], [-10.0, 20.0, 50.0], "right", 2)],
            "alternatives": [], "warnings": []}
    add_cards(plan, ct, labels, position="prone")
    short, long_ = plan["needles"]
    card = short["card"]
    assert card["guidance"] == "ct" and card["gantry_tilt_deg"] == 10.0 and card["gantry_tilt_toward"] == "head"
    depth = 30.0 / np.cos(a)           # skin plane y = 50, bone entry y = 20
    assert card["skin_to_bone_mm"] == pytest.approx(depth, abs=1.1)
    assert card["bone_to_tip_mm"] == 40.0
    assert card["skin_to_tip_mm"] == pytest.approx(card["skin_to_bone_mm"] + 40.0, abs=0.1)
    assert card["needle_length_mm"] == 100.0
    assert card["midline_offset_mm"] == pytest.approx(15.0, abs=2.1)
    assert short["skin_entry_ras"] == [-short["skin_entry_lps"][0], -short["skin_entry_lps"][1],
                                       short["skin_entry_lps"][2]]
    assert card["slice_index"] == int(round(short["skin_entry_lps"][2] + 60))
    assert "c_arm" not in card
    assert short["metrics"]["skin_to_bone_mm"] == card["skin_to_bone_mm"]
    # the long-axis needle runs up the body and leaves the CT before the skin: said, not invented
    lc = long_["card"]
    assert lc["guidance"] == "fluoroscopy" and "gantry_tilt_deg" not in lc and "slice_index" not in lc
    assert lc["c_arm"]["cranial_caudal_deg"] == -90.0
    assert not lc["skin_found"] and lc["notes"]
    assert long_["skin_entry_lps"] == pytest.approx([-10.0, 20.0, -60.0], abs=0.5)
    assert any("needle 2" in w and "leaves the CT" in w for w in plan["warnings"])


@pytest.fixture(scope="module")
def demo_plan(truth_plan_dir):
    """The demo-like case (2 mm bilateral fracture phantom, both techniques, 2 needles) planned
    on its ground-truth labels without the views (conftest's ``truth_plan_dir``): (plan folder, plan.json)."""
    import json

    return truth_plan_dir, json.loads((truth_plan_dir / "plan.json").read_text())


def test_demo_like_plan_has_a_card_for_every_needle(demo_plan):
    out, plan = demo_plan
    assert plan["patient_position"] == {"position": "prone", "source": "assumed"}    # a NIfTI says nothing
    assert plan["case"]["name"] == "case-" + plan["input"]["sha256"][:12] and plan["case"]["named_by"] == "checksum"
    techniques = set()
    for needle in plan["needles"] + plan["alternatives"]:
        techniques.add(needle["technique"])
        card = needle["card"]
        assert needle["skin_entry_lps"] is not None and len(needle["skin_entry_ras"]) == 3
        assert card["skin_to_tip_mm"] == pytest.approx(card["skin_to_bone_mm"] + card["bone_to_tip_mm"], abs=0.1)
        skin, entry = np.array(needle["skin_entry_lps"]), np.array(needle["entry_lps"])
        assert card["skin_to_bone_mm"] == pytest.approx(np.linalg.norm(skin - entry), abs=0.06)
        assert card["bone_to_tip_mm"] == pytest.approx(needle["metrics"]["length_mm"], abs=0.06)
        assert card["needle_length_mm"] in (100.0, 125.0, 150.0, None)
        # no length where the skin is not in the CT (the depth is only a minimum) or none reaches
        assert (card["needle_length_mm"] is None) == (card["skin_to_tip_mm"] > 150.0 or not card["skin_found"])
        assert card["skin_found"] or any("at least" in note for note in card["notes"])
        if card["needle_length_mm"] is not None:
            assert card["needle_length_mm"] >= card["skin_to_tip_mm"] > card["needle_length_mm"] - 25.0
        # the skin entry lies behind the bone entry on the needle line
        d = (np.array(needle["tip_lps"]) - entry) / card["bone_to_tip_mm"]
        assert np.linalg.norm(np.cross(skin - entry, d)) < 0.1 and (skin - entry) @ d <= 0
        if card["guidance"] == "ct":
            assert needle["technique"] == "short_axis" and "c_arm" not in card
            assert card["gantry_tilt_deg"] == pytest.approx(abs(needle["metrics"]["gantry_tilt_deg"]), abs=0.06)
            assert card["gantry_tilt_toward"] in ("head", "feet", None)
        else:
            assert needle["technique"] == "long_axis" and "gantry_tilt_deg" not in card
            assert set(card["c_arm"]) >= {"cranial_caudal_deg", "oblique_deg"}
    assert techniques == {"short_axis", "long_axis"}


def test_dicom_input_gives_position_and_table_position_from_its_headers(tmp_path):
    import json

    import pydicom

    from sample_ct.phantom import PhantomParams, make_phantom, write_phantom
    from trajplan.pipeline import run_plan
    from trajplan.planning import PlanOptions

    case = tmp_path / "case"
    write_phantom(make_phantom(PhantomParams(seed=0, spacing=(2.5,) * 3, fracture="left", position="prone")),
                  case, dicom=True)
    out = tmp_path / "plan"
    run_plan(case / "dicom", out, PlanOptions(technique="short", side="left", needles=1, mc_samples=20),
             report=False, case_name="  Table   3 ")
    plan = json.loads((out / "plan.json").read_text())
    assert plan["patient_position"] == {"position": "prone", "source": "dicom"}
    assert plan["case"]["name"] == "Table 3" and plan["case"]["named_by"] == "option"
    z = sorted(float(pydicom.dcmread(f, stop_before_pixels=True).ImagePositionPatient[2])
               for f in (case / "dicom").rglob("*") if f.is_file())
    for needle in plan["needles"]:
        card = needle["card"]
        assert card["table_position_mm"] == pytest.approx(z[card["slice_index"]], abs=0.01)
        assert abs(card["table_position_mm"] - needle["skin_entry_lps"][2]) <= 1.25 + 1e-6


def test_report_and_card_page_read_in_words(demo_plan):
    import html
    import re

    from trajplan.report import report_html

    out, plan = demo_plan
    page = report_html(plan, {})
    text = html.unescape(re.sub(r"<style>.*?</style>", "", page, flags=re.S))
    text = re.sub(r"<[^>]+>", " ", text)
    for raw in ("{'", "'}", "[]", "[", "True", "False", "None", "{", "_mm", "_deg", "foramen_"):
        assert raw not in text, raw
    name = plan["case"]["name"]
    assert f"Sacroplasty needle plan: {name}" in text and plan["case"]["planned_utc"][:10] in text
    assert "30 mm or more" in text               # capped clearances are said as such
    for needle in plan["needles"]:
        card = needle["card"]
        assert f"skin to tip {card['skin_to_tip_mm']:.1f} mm" in text
        ahead = needle["metrics"]["bone_ahead_mm"]
        assert f"bone past the tip {'30 mm or more' if ahead == 30.0 else f'{ahead:.1f} mm'}" in text
        if card["guidance"] == "ct" and card["gantry_tilt_toward"]:
            tilt = card["gantry_tilt_deg"]
            assert f"tilt {tilt:.1f} deg, top of gantry toward the {card['gantry_tilt_toward']}" in text
    cards = (out / "card.html").read_text()
    assert cards.startswith("<!DOCTYPE html>") and name in cards
    assert cards.count("class='card'") == len(plan["needles"])
    assert "<img" not in cards and "<script" not in cards        # one light printable page


def test_report_tables_give_reasons_and_headings_in_words(demo_plan):
    import copy
    import html
    import re

    from trajplan.report import report_html

    _, plan = demo_plan
    plan = copy.deepcopy(plan)
    alternative = plan["alternatives"][0]
    alternative.update(verdict="unsafe", safe=False, reasons=["foramen_S2_left", "ilium_right", "ct_leaves_bone"])
    alternative["metrics"]["approach_crosses"] = ["ilium_right"]
    text = html.unescape(re.sub(r"<[^>]+>", " ", re.sub(r"<style>.*?</style>", "", report_html(plan, {}),
                                                         flags=re.S)))
    assert ("too close to the S2 foramen (left); the approach crosses the ilium (right); the CT shows soft tissue "
            "on the path between the bone entry and the tip") in text
    assert "S2 foramen (left) (mm)" in text and "length in bone (mm)" in text
    assert "foramen_S2_left" not in text and "ct_leaves_bone" not in text and "length_in_bone_mm" not in text
