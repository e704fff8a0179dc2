"""The Python API (``import trajplan``): the same plans as the command line, typed results, clear errors."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import trajplan
from trajplan import labels as lt

REPO = Path(__file__).resolve().parents[1]
EXAMPLE = REPO / "docs" / "examples" / "plan_margin_clearance.py"
SEVERITY = {trajplan.Verdict.SAFE: 0, trajplan.Verdict.MARGINAL: 1, trajplan.Verdict.UNSAFE: 2}


@pytest.fixture(scope="module")
def case(phantom_dir):
    """The 2 mm phantom's CT and ground-truth labels, read through the API."""
    ct = trajplan.read_ct(phantom_dir / "ct.nii.gz")
    return ct, trajplan.read_labels(phantom_dir / "labels.nii.gz", ct)


@pytest.fixture(scope="module")
def api_plan(case, phantom_dir) -> trajplan.Plan:
    """The phantom planned through the API as ``truth_plan_dir`` is by the command line."""
    ct, labels = case
    return trajplan.plan(ct, labels, trajplan.PlanOptions(), source=phantom_dir / "ct.nii.gz")


def _python(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    path = os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))
    return subprocess.run([sys.executable, *args], capture_output=True, text=True, timeout=300, cwd=REPO,
                          env={**os.environ, "PYTHONPATH": path, **(env or {})})


def test_import_is_lazy_and_every_public_name_resolves():
    proc = _python("-c", "import sys, trajplan; print(sorted(m for m in ('numpy', 'scipy', 'segmentation') "
                         "if m in sys.modules))")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[]"          # nothing heavy until a name is used
    for name in trajplan.__all__:
        assert getattr(trajplan, name) is not None, name
        assert name in dir(trajplan)
    assert trajplan.Segmentation.__module__ == "segmentation.pipeline"
    with pytest.raises(AttributeError, match="no attribute 'nothing'"):
        trajplan.nothing  # noqa: B018


def test_a_plan_through_the_api_has_the_needles_of_the_cli_plan(api_plan, truth_plan_dir, tmp_path):
    written = json.loads((truth_plan_dir / "plan.json").read_text())
    doc = api_plan.to_json()
    for key in ("needles", "alternatives", "input", "outcome", "parameters", "summary", "warnings", "settings"):
        assert doc[key] == written[key], key
    assert api_plan.outcome == "planned" and len(api_plan.needles) == len(written["needles"])
    first = api_plan.needles[0]
    assert first.rank == 1 and first.needle.verdict is trajplan.Verdict(written["needles"][0]["verdict"])
    assert first.needle.path.entry_lps == tuple(written["needles"][0]["entry_lps"])
    assert doc["segmentation"] == {"source": "labels given", "partial": False, "implausible": False,
                                   "implausible_reason": None, "lesion_uncertain": False}
    out = trajplan.write_plan_folder(api_plan, tmp_path / "plan", report=False)
    for name in ("plan.csv", "plan.mrk.json", "load_plan.py"):
        assert (out / name).read_bytes() == (truth_plan_dir / name).read_bytes(), name
    assert (out / "labels.nii.gz").is_file() and (out / "scene.png").is_file()


def test_a_plan_is_frozen_and_hands_out_copies(api_plan):
    with pytest.raises(dataclasses.FrozenInstanceError):
        api_plan.options = trajplan.PlanOptions(needles=1)
    api_plan.to_json()["needles"].clear()
    assert api_plan.to_json()["needles"] and "Plan(case=" in repr(api_plan)


def _canal_line(labels: trajplan.Volume) -> tuple[np.ndarray, np.ndarray]:
    """A line from behind the sacrum straight forward (-y, anterior) through the canal's centre."""
    centre = labels.index_to_world(np.argwhere(lt.mask(labels, "canal")).mean(axis=0))
    return centre + [0.0, 40.0, 0.0], centre - [0.0, 8.0, 0.0]


def test_a_line_through_the_canal_is_unsafe_for_the_canal(case):
    ct, labels = case
    entry, tip = _canal_line(labels)
    result = trajplan.evaluate_path(ct, labels, entry, tip)
    assert result.verdict is trajplan.Verdict.UNSAFE and not result.safe
    assert "canal" in result.reasons and result.clearance_mm["canal"] <= 0
    assert result.drawn_line["scored_from"] == "bone entry"
    assert result.needle.verdict is result.verdict and result.to_json()["reasons"] == list(result.reasons)
    assert result.card["skin_to_tip_mm"] > 0


def test_a_wider_margin_never_makes_a_needle_safer(case, api_plan):
    ct, labels = case
    wider = trajplan.PlanOptions(margins_mm={"canal": 8, "foramen": 8, "anterior_cortex": 6, "si_joint": 6})
    needles = [p.needle for p in api_plan.needles] + list(api_plan.alternatives[:2])
    worse = 0
    for needle in needles:
        common = dict(technique=needle.technique.value, gauge=needle.path.gauge)
        before = trajplan.evaluate_path(ct, labels, needle.path.entry_lps, needle.path.tip_lps, **common)
        after = trajplan.evaluate_path(ct, labels, needle.path.entry_lps, needle.path.tip_lps, options=wider,
                                       **common)
        assert SEVERITY[after.verdict] >= SEVERITY[before.verdict]
        assert set(before.reasons) <= set(after.reasons)
        assert after.clearance_mm == before.clearance_mm        # the margins judge, they do not move anything
        assert after.margins_mm["canal"] == 8 and before.margins_mm["canal"] == 3
        worse += SEVERITY[after.verdict] > SEVERITY[before.verdict]
    assert worse >= 1                                          # 8 mm from the canal is more than these keep


def test_bad_input_raises_input_errors_with_clear_messages(case, phantom_dir, tmp_path):
    ct, labels = case
    with pytest.raises(trajplan.InputError, match="ct must be a trajplan Volume.*got str"):
        trajplan.plan(str(phantom_dir / "ct.nii.gz"))
    with pytest.raises(trajplan.InputError, match="labels must be a trajplan Volume .from trajplan.read_labels"):
        trajplan.plan(ct, str(phantom_dir / "labels.nii.gz"))
    with pytest.raises(trajplan.InputError, match="options must be a trajplan PlanOptions"):
        trajplan.plan(ct, labels, {"needles": 1})
    shifted = trajplan.Volume(labels.array, labels.spacing, labels.origin + 5.0, labels.direction)
    with pytest.raises(trajplan.InputError, match="do not match the CT geometry"):
        trajplan.plan(ct, shifted)
    with pytest.raises(trajplan.InputError, match="not in the label table"):
        trajplan.evaluate_path(ct, labels.with_array(np.full(labels.shape, 99, np.uint8)), [0, 0, 0], [0, 0, 10])
    with pytest.raises(trajplan.InputError, match="entry_lps must be three finite numbers"):
        trajplan.evaluate_path(ct, labels, [1.0, 2.0], [0, 0, 10])
    with pytest.raises(trajplan.InputError, match="less than 1 mm apart"):
        trajplan.evaluate_path(ct, labels, [0, 0, 0], [0, 0, 0.5])
    with pytest.raises(trajplan.InputError, match="unknown technique"):
        trajplan.evaluate_path(ct, labels, [0, 0, 0], [0, 0, 10], technique="sideways")
    with pytest.raises(trajplan.InputError, match="unknown needle gauge"):
        trajplan.PlanOptions(gauge=12)
    with pytest.raises(trajplan.InputError, match="no such file"):
        trajplan.read_labels(tmp_path / "missing.nii.gz", ct)
    with pytest.raises(trajplan.InputError, match="unknown window"):
        trajplan.render_plan(trajplan.plan(ct, labels, trajplan.PlanOptions(needles=1, mc_samples=10)),
                             tmp_path, window="dark")
    with pytest.raises(trajplan.InputError, match="plan must be a trajplan Plan"):
        trajplan.write_plan_folder({"needles": []}, tmp_path / "plan")
    assert not (tmp_path / "plan").exists()
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("not trajplan's")
    with pytest.raises(trajplan.InputError):
        trajplan.write_segmentation_folder(trajplan.Segmentation(labels, {}), tmp_path / "mine")


def test_the_example_script_plans_rescores_and_plots(tmp_path):
    proc = _python(str(EXAMPLE), "--spacing", "2", env={"TRAJPLAN_EXAMPLE_OUT": str(tmp_path), "MPLBACKEND": "Agg"})
    assert proc.returncode == 0, proc.stderr
    assert "Plan(case=" in proc.stdout and "with 5 mm canal and foramen margins: verdict" in proc.stdout
    png = (tmp_path / "clearance.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 10_000
