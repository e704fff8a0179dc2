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
