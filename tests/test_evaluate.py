"""``trajplan evaluate``: lines drawn from the skin, RAS input, label maps reused, the -o folder."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from trajplan import cli
from trajplan.pipeline import run_evaluate


@pytest.fixture(scope="module")
def short_plan(truth_plan_dir) -> Path:
    """A plan folder of the phantom, planned on its ground-truth labels (conftest's ``truth_plan_dir``),
    whose first short-axis needle the tests draw again."""
    return truth_plan_dir


def _needle(plan_dir: Path) -> dict:
    """The plan's first short-axis needle (of its needles, else its alternatives)."""
    plan = json.loads((plan_dir / "plan.json").read_text())
    return next(n for n in plan["needles"] + plan["alternatives"] if n["technique"] == "short_axis")


def _same(a: dict, b: dict) -> None:
    keys = ("verdict", "reasons", "clearance_mm", "breach_probability", "metrics", "entry_lps", "tip_lps",
            "skin_entry_lps", "card", "technique", "side")
    for key in keys:
        assert a[key] == b[key], key


def test_a_line_from_the_skin_is_scored_from_its_bone_entry_like_its_bone_part(phantom_dir, short_plan):
    ct, labels = phantom_dir / "ct.nii.gz", short_plan / "labels.nii.gz"
    needle = _needle(short_plan)
    skin, tip = np.array(needle["skin_entry_lps"]), np.array(needle["tip_lps"])
    from_skin = run_evaluate(ct, skin, tip, labels_path=labels)
    line = from_skin["drawn_line"]
    assert line["scored_from"] == "bone entry" and line["entry_to_bone_mm"] > 20
    assert "before the sacral bone" in line["note"]
    assert from_skin["verdict"] == needle["verdict"] == "safe"
    assert np.linalg.norm(np.array(from_skin["entry_lps"]) - needle["entry_lps"]) < 3.0     # the plan's bone entry
    bone_part = run_evaluate(ct, np.array(from_skin["entry_lps"]), tip, labels_path=labels)
    assert bone_part["drawn_line"]["scored_from"] == "drawn entry"
    _same(from_skin, bone_part)


def test_ras_input_equals_lps_with_x_and_y_negated(phantom_dir, short_plan, tmp_path, capsys):
    needle = _needle(short_plan)
    flip = np.array([-1.0, -1.0, 1.0])
    skin, tip = np.array(needle["skin_entry_lps"]), np.array(needle["tip_lps"])
    common = [str(phantom_dir / "ct.nii.gz"), "--labels", str(short_plan), "--json"]

    def run(*extra: str) -> dict:
        capsys.readouterr()
        assert cli.main(["evaluate", *common, *extra]) == 0
        return json.loads(capsys.readouterr().out)

    def point(values) -> str:
        return ",".join(map(str, values))

    lps = run(f"--entry={point(skin)}", f"--target={point(tip)}")
    ras = run("--coords", "ras", f"--entry={point(skin * flip)}", f"--target={point(tip * flip)}")
    markup = tmp_path / "line.mrk.json"
    markup.write_text(json.dumps({"@schema": "x", "markups": [{
        "type": "Line", "coordinateSystem": "RAS", "coordinateUnits": "mm",
        "controlPoints": [{"id": "1", "position": list(skin * flip)}, {"id": "2", "position": list(tip * flip)}]}]}))
    from_markup = run("--markup", str(markup))
    for result in (ras, from_markup):
        _same(lps, result)
        assert result["drawn_line"]["coordinates"] == "ras"
        assert result["drawn_line"]["entry_lps"] == lps["drawn_line"]["entry_lps"]
        assert result["drawn_line"]["entry_ras"] == [round(v, 2) + 0.0 for v in skin * flip]
    assert lps["drawn_line"]["coordinates"] == "lps"
    assert cli.main(["evaluate", *common, "--coords", "ras", "--markup", str(markup)]) == 2


def test_labels_file_or_plan_folder_is_not_resegmented(phantom_dir, short_plan, monkeypatch):
    import segmentation.pipeline

    def no_segmentation(*args, **kwargs):
        raise AssertionError("evaluate segmented the CT again")

    monkeypatch.setattr(segmentation.pipeline, "segment", no_segmentation)
    needle = _needle(short_plan)
    for labels in (short_plan, short_plan / "labels.nii.gz"):
        result = run_evaluate(phantom_dir / "ct.nii.gz", np.array(needle["entry_lps"]), np.array(needle["tip_lps"]),
                              labels_path=cli._split_labels(str(labels))[0])
        assert result["verdict"] == "safe"


def test_output_folder_holds_the_card_and_the_needle_pictures(phantom_dir, short_plan, tmp_path):
    needle = _needle(short_plan)
    out = tmp_path / "ev"
    result = run_evaluate(phantom_dir / "ct.nii.gz", np.array(needle["skin_entry_lps"]), np.array(needle["tip_lps"]),
                          labels_path=short_plan / "labels.nii.gz", out_dir=out, case_name="drawn line")
    doc = json.loads((out / "evaluation.json").read_text())
    assert doc["schema"] == "trajplan/evaluation" and doc["case"]["name"] == "drawn line"
    assert doc["needle"]["card"] == result["card"] and result["card"]["skin_found"]
    assert doc["needle"]["skin_entry_ras"] == result["skin_entry_ras"]
    assert doc["drawn_line"]["scored_from"] == "bone entry"
    page = (out / "card.html").read_text()
    assert "drawn line" in page and "Needle 1" in page
    assert "hand-drawn line" in page and "before the sacral bone" in page and "Checked" in page
    for stem in ("plane", "axial_entry", "axial_mid", "axial_tip"):
        assert (out / "slices" / f"needle1_{stem}.png").stat().st_size > 1000
    markups = json.loads((out / "evaluation.mrk.json").read_text())
    assert markups["markups"][0]["controlPoints"][0]["position"] == result["entry_lps"]
    # the same -o again replaces the folder (evaluation.json marks it as trajplan output)
    run_evaluate(phantom_dir / "ct.nii.gz", np.array(needle["entry_lps"]), np.array(needle["tip_lps"]),
                 labels_path=short_plan / "labels.nii.gz", out_dir=out)
    assert json.loads((out / "evaluation.json").read_text())["drawn_line"]["scored_from"] == "drawn entry"


def test_labels_folder_rule(short_plan, tmp_path):
    """--labels: a file is a label map; a folder with labels.nii.gz (plan or segment output) gives
    that file; any other folder is TotalSegmentator output."""
    assert cli._split_labels(str(short_plan)) == (str(short_plan / "labels.nii.gz"), None)
    label_file = str(short_plan / "labels.nii.gz")
    assert cli._split_labels(label_file) == (label_file, None)
    ts = tmp_path / "ts"
    ts.mkdir()
    (ts / "sacrum.nii.gz").write_bytes(b"")
    assert cli._split_labels(str(ts)) == (None, str(ts))
    assert cli._split_labels(None) == (None, None)
