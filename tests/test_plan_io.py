"""plan.json / plan.csv / plan.mrk.json are written whole and read back; Slicer lines are read."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest

from trajplan.errors import InputError
from trajplan.plan_io import read_line_markup, write_plan

NEEDLE = {
    "rank": 1, "technique": "short_axis", "side": "left", "gauge": 11, "diameter_mm": 3.05,
    "entry_lps": [30.0, 40.0, 10.0], "tip_lps": [35.0, 10.0, 12.0], "skin_entry_lps": None,
    "safe": False, "verdict": "unsafe", "reasons": ["foramen_S2_left"], "score": 0.5,
    "clearance_mm": {"canal": 8.0, "foramen_S2_left": 1.2}, "tip_to_anterior_cortex_mm": 6.0,
    "breach_probability": {"any": 0.4, "foramen_S2_left": 0.4},
    "metrics": {"length_in_bone_mm": 25.0, "cement_volume_ml": 2.0, "gantry_tilt_deg": 4.0},
}


def test_plan_files_round_trip(tmp_path):
    plan = {"schema": "trajplan/plan", "schema_version": 1, "needles": [NEEDLE, dict(NEEDLE, rank=2)]}
    written = write_plan(plan, tmp_path)
    assert json.loads(written["plan"].read_text()) == plan
    rows = list(csv.DictReader(open(written["csv"], newline="")))
    assert len(rows) == 2 and rows[0]["clearance_foramen_S2_left_mm"] == "1.2"
    assert rows[0]["reasons"] == "foramen_S2_left" and rows[1]["rank"] == "2"
    doc = json.loads(written["markups"].read_text())
    # the keys and enums that Slicer's markups schema v1.0.3 requires
    assert doc["@schema"].endswith("markups-schema-v1.0.3.json#")
    for markup, needle in zip(doc["markups"], plan["needles"]):
        assert markup["type"] == "Line" and markup["coordinateSystem"] == "LPS"
        assert markup["coordinateUnits"] == "mm"
        positions = [p["position"] for p in markup["controlPoints"]]
        assert positions == [needle["entry_lps"], needle["tip_lps"]]
        assert all(p["positionStatus"] == "defined" for p in markup["controlPoints"])
    entry, tip = read_line_markup(written["markups"])
    assert np.allclose(entry, NEEDLE["entry_lps"]) and np.allclose(tip, NEEDLE["tip_lps"])
    assert not list(tmp_path.glob(".*part*"))


def test_ras_markup_is_converted_to_lps(tmp_path):
    path = tmp_path / "line.mrk.json"
    path.write_text(json.dumps({"@schema": "x", "markups": [{"type": "Line", "coordinateSystem": "RAS",
        "controlPoints": [{"position": [-30, -40, 10]}, {"position": [-35, -10, 12]}]}]}))
    entry, tip = read_line_markup(path)
    assert np.allclose(entry, [30, 40, 10]) and np.allclose(tip, [35, 10, 12])


@pytest.mark.parametrize("content", ["not json", json.dumps({"markups": [{"type": "Line", "controlPoints": []}]})])
def test_bad_markup_files_are_refused(tmp_path, content):
    path = tmp_path / "bad.mrk.json"
    path.write_text(content)
    with pytest.raises(InputError, match="markups"):
        read_line_markup(path)


OLD_COLUMNS = [   # the promised plan.csv columns before the procedure card, in order
    "rank", "technique", "side", "gauge", "safe", "verdict", "reasons", "score",
    "entry_x", "entry_y", "entry_z", "tip_x", "tip_y", "tip_z", "breach_probability_any",
    "tip_to_anterior_cortex_mm",
    *[f"clearance_{s}_mm" for s in (
        "canal", "foramen_S1_left", "foramen_S1_right", "foramen_S2_left", "foramen_S2_right",
        "foramen_S3_left", "foramen_S3_right", "foramen_S4_left", "foramen_S4_right", "anterior_cortex",
        "si_joint_left", "si_joint_right", "ilium_left", "ilium_right", "L5_S1_disc")],
    "length_mm", "length_in_bone_mm", "length_in_ala_mm", "length_outside_bone_mm", "tip_to_target_mm",
    "target", "angle_to_surface_normal_deg", "mediolateral_angle_deg", "craniocaudal_angle_deg",
    "gantry_tilt_deg", "axis_angle_deg", "skin_to_bone_mm", "cement_volume_ml", "approach_crosses",
]


def test_plan_csv_keeps_its_columns_and_adds_the_card(tmp_path):
    ct_card = {"guidance": "ct", "patient_position": "prone", "skin_found": True, "skin_to_bone_mm": 60.5,
               "bone_to_tip_mm": 30.6, "skin_to_tip_mm": 91.1, "needle_length_mm": 100.0,
               "midline_offset_mm": 42.0, "level": "S2", "from_level_mm": -3.5, "slice_index": 41,
               "table_position_mm": 12.5, "gantry_tilt_deg": 3.8, "gantry_tilt_toward": "feet",
               "in_plane_angle_deg": 9.5, "in_plane_hub_toward": "left", "notes": []}
    fluoro_card = {"guidance": "fluoroscopy", "patient_position": "prone", "skin_found": False,
                   "skin_to_bone_mm": 20.0, "bone_to_tip_mm": 90.0, "skin_to_tip_mm": 110.0,
                   "needle_length_mm": 125.0, "midline_offset_mm": -30.0, "level": "S4", "from_level_mm": -12.0,
                   "c_arm": {"cranial_caudal_deg": -70.0, "oblique_deg": 4.5, "detector_side": "posterior"},
                   "notes": ["the needle line leaves the CT", "second"]}
    short = dict(NEEDLE, skin_entry_lps=[40.0, 99.0, 14.0], skin_entry_ras=[-40.0, -99.0, 14.0], card=ct_card)
    long_ = dict(NEEDLE, rank=2, technique="long_axis", skin_entry_lps=[-30.0, 60.0, -70.0],
                 skin_entry_ras=[30.0, -60.0, -70.0], card=fluoro_card)
    written = write_plan({"needles": [short, long_]}, tmp_path)
    with open(written["csv"], newline="") as handle:
        reader = csv.DictReader(handle)
        rows = list(reader)
        header = reader.fieldnames
    assert header[:len(OLD_COLUMNS)] == OLD_COLUMNS
    assert {"skin_entry_x", "skin_entry_ras_x", "card_skin_to_tip_mm", "card_needle_length_mm",
            "card_midline_offset_mm", "card_slice_index", "card_table_position_mm", "card_gantry_tilt_deg",
            "card_gantry_tilt_toward", "card_c_arm_cranial_caudal_deg", "card_c_arm_oblique_deg",
            "card_guidance", "card_skin_to_bone_mm", "card_bone_to_tip_mm"} <= set(header)
    ct_row, fl_row = rows
    assert ct_row["skin_entry_x"] == "40.0"
    assert (ct_row["skin_entry_ras_x"], ct_row["skin_entry_ras_y"]) == ("-40.0", "-99.0")
    assert ct_row["card_skin_to_tip_mm"] == "91.1" and ct_row["card_gantry_tilt_toward"] == "feet"
    assert ct_row["card_slice_index"] == "41" and ct_row["card_c_arm_oblique_deg"] == ""
    assert fl_row["card_guidance"] == "fluoroscopy" and fl_row["card_gantry_tilt_deg"] == ""
    assert fl_row["card_c_arm_cranial_caudal_deg"] == "-70.0" and fl_row["card_c_arm_oblique_deg"] == "4.5"
    assert fl_row["card_needle_length_mm"] == "125.0" and fl_row["card_notes"] == "the needle line leaves the CT;second"


def test_markups_add_the_skin_entries_as_one_point_list_and_the_line_is_still_read_first(tmp_path):
    needles = [dict(NEEDLE, skin_entry_lps=[40.0, 99.0, 14.0]), dict(NEEDLE, rank=2, skin_entry_lps=[-30.0, 90.0, 5.0])]
    written = write_plan({"needles": needles}, tmp_path)
    doc = json.loads(written["markups"].read_text())
    assert [m["type"] for m in doc["markups"]] == ["Line", "Line", "Fiducial"]
    points = doc["markups"][-1]["controlPoints"]
    assert [p["position"] for p in points] == [[40.0, 99.0, 14.0], [-30.0, 90.0, 5.0]]
    assert [p["label"] for p in points] == ["1 skin", "2 skin"]
    assert doc["markups"][-1]["coordinateSystem"] == "LPS"
    assert all(p["positionStatus"] == "defined" for p in points)
    entry, tip = read_line_markup(written["markups"])
    assert np.allclose(entry, NEEDLE["entry_lps"]) and np.allclose(tip, NEEDLE["tip_lps"])
