"""The command line as a user runs it: outputs, exit codes, one-line errors."""

from __future__ import annotations

import html
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from trajplan import labels as lt


def run(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "trajplan", *args], capture_output=True, text=True,
                          cwd=cwd, timeout=600)


def assert_clean_error(proc: subprocess.CompletedProcess, *words: str) -> None:
    """Exit code 2, one line on stderr naming the problem, no traceback."""
    assert proc.returncode == 2, (proc.returncode, proc.stderr)
    assert "Traceback" not in proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, proc.stderr
    for word in words:
        assert word.lower() in lines[0].lower(), lines[0]


def test_version_and_help_examples():
    proc = run("--version")
    assert proc.returncode == 0 and "trajplan" in proc.stdout
    for command in ("phantom", "segment", "plan", "evaluate", "render", "batch"):
        proc = run(command, "--help")
        assert proc.returncode == 0, proc.stderr
        assert "example:" in proc.stdout and f"trajplan {command}" in proc.stdout


def test_plan_writes_the_demo_files_and_json_summary(phantom_dir, tmp_path):
    out = tmp_path / "plan"
    proc = run("plan", str(phantom_dir / "ct.nii.gz"), "-o", str(out), "--no-report", "--json")
    assert proc.returncode == 0, proc.stderr
    summary = json.loads(proc.stdout)
    assert summary["needles"] >= 1
    plan = json.loads((out / "plan.json").read_text())
    assert plan["needles"] and plan["input"]["sha256"]
    labels = sitk.ReadImage(str(out / "labels.nii.gz"))
    ct = sitk.ReadImage(str(phantom_dir / "ct.nii.gz"))
    assert labels.GetSize() == ct.GetSize()
    assert np.allclose(labels.GetOrigin(), ct.GetOrigin())
    present = set(np.unique(sitk.GetArrayFromImage(labels)).tolist())
    assert lt.value("canal") in present and lt.value("ala_left") in present
    assert json.loads((out / "labels.json").read_text()) == lt.table_json()
    png = (out / "scene.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 10_000


@pytest.mark.slow   # makes a phantom and plans on it from the command line
def test_plan_on_bone_too_dark_for_the_lesion_search_warns_that_none_was_sought(tmp_path):
    proc = run("phantom", "-o", str(tmp_path / "ph"), "--seed", "2", "--spacing", "2", "--osteoporosis", "0.85",
               "--fracture", "left")
    assert proc.returncode == 0, proc.stderr
    out = tmp_path / "plan"
    proc = run("plan", str(tmp_path / "ph" / "ct.nii.gz"), "-o", str(out), "--no-report")
    assert proc.returncode == 0, proc.stderr
    report = json.loads((out / "segmentation.json").read_text())
    assert report["trabecular_hu"] < 100 and report["structures"]["lesion"]["quality"].startswith("not sought")
    warnings = json.loads((out / "plan.json").read_text())["warnings"]
    assert any(w.startswith("lytic lesions not sought") for w in warnings), warnings


@pytest.mark.parametrize("make_input, words", [
    (lambda d: d / "missing.nii.gz", ["no such file"]),
    (lambda d: (d / "notes.txt").write_text("hello") and d / "notes.txt", ["unsupported"]),
    (lambda d: (d / "empty").mkdir() or d / "empty", ["no dicom"]),
    (lambda d: (d / "bad.nii.gz").write_bytes(b"\x1f\x8b garbage") and d / "bad.nii.gz", ["cannot read"]),
])
def test_bad_inputs_give_one_clear_line(tmp_path, make_input, words):
    path = make_input(tmp_path)
    proc = run("plan", str(path), "-o", str(tmp_path / "out"))
    assert_clean_error(proc, *words)
    assert not (tmp_path / "out" / "plan.json").exists()


def test_no_sacrum_in_upper_abdomen_dicom(shared_ct, tmp_path):
    proc = run("plan", str(shared_ct / "ts_example_dicom"), "-o", str(tmp_path / "out"))
    assert_clean_error(proc, "no sacrum in the field of view")
    assert not (tmp_path / "out" / "plan.json").exists()


def test_bad_arguments_exit_2(phantom_dir, tmp_path):
    ct = str(phantom_dir / "ct.nii.gz")
    assert_clean_error(run("plan", ct, "-o", str(tmp_path), "--gauge", "12"), "gauge")
    assert_clean_error(run("plan", ct, "-o", str(tmp_path), "--technique", "oblique"), "technique")
    assert_clean_error(run("evaluate", ct, "--entry", "1,2"), "entry")
    assert_clean_error(run("plan", ct, "-o", str(tmp_path), "--margins", "canal"), "margins")


def test_no_safe_path_writes_the_plan_with_its_reasons_and_exits_3(phantom_dir, tmp_path):
    out = tmp_path / "plan"
    proc = run("plan", str(phantom_dir / "ct.nii.gz"), "--labels", str(phantom_dir / "labels.nii.gz"),
               "-o", str(out), "--margins", "canal=25,foramen=25", "--side", "left", "--json")
    assert proc.returncode == 3, proc.stderr
    assert "no safe needle path" in proc.stderr and "Traceback" not in proc.stderr
    assert json.loads(proc.stdout)["outcome"] == "no_safe_path"
    plan = json.loads((out / "plan.json").read_text())
    assert plan["outcome"] == "no_safe_path" and plan["needles"] == []
    blocked = [w for w in plan["warnings"] if w.startswith("no safe")]
    assert len(blocked) == 2 and all("on the left" in w and "(margin 25 mm)" in w for w in blocked), blocked
    assert {n["verdict"] for n in plan["alternatives"]} == {"unsafe"}
    rows = (out / "plan.csv").read_text().splitlines()
    assert len(rows) == 1 + len(plan["alternatives"]) and all(",unsafe," in r for r in rows[1:])
    report = (out / "report.html").read_text()
    assert "No safe needle path" in report and report.index("No safe needle path") < report.index("Planned needles")
    assert html.escape(blocked[0]) in report


def test_plan_case_name_and_position_reach_the_plan_and_its_card_page(phantom_dir, tmp_path):
    out = tmp_path / "plan"
    proc = run("plan", str(phantom_dir / "ct.nii.gz"), "--labels", str(phantom_dir / "labels.nii.gz"),
               "-o", str(out), "--no-report", "--technique", "short", "--needles", "1",
               "--case-name", "Bed 2 <left>", "--position", "supine")
    assert proc.returncode == 0, proc.stderr
    plan = json.loads((out / "plan.json").read_text())
    assert plan["case"]["name"] == "Bed 2 <left>" and plan["case"]["named_by"] == "option"
    assert plan["patient_position"] == {"position": "supine", "source": "option"}
    needle = plan["needles"][0]
    assert needle["card"]["patient_position"] == "supine" and needle["card"]["guidance"] == "ct"
    card_page = (out / "card.html").read_text()
    assert "Bed 2 &lt;left&gt;" in card_page and "<left>" not in card_page
    header = (out / "plan.csv").read_text().splitlines()[0].split(",")
    assert "card_gantry_tilt_toward" in header and "skin_entry_ras_x" in header
