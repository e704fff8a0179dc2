"""A segmentation whose sacrum is implausible (too small, or off the body's midline) gets no needle
called safe: ``trajplan plan`` writes its plan with the reason and exits 3, ``trajplan evaluate``
calls a drawn path unsafe, and labels the user passes with ``--labels`` are planned on as usual."""

from __future__ import annotations

import html
import json
import subprocess
import sys
from pathlib import Path

import pytest

from sample_ct.phantom import PhantomParams
from trajplan import labels as lt
from trajplan.io.files import write_volume_file
from trajplan.planning import PlanOptions, plan_needles
from trajplan.volume import Volume

GATE = "segmentation_implausible"


def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "trajplan", *args], capture_output=True, text=True, timeout=600)


@pytest.fixture(scope="module")
def cut_sacrum_ct(phantom_of, tmp_path_factory) -> Path:
    """The 2.5 mm phantom cut at 70 % of its sacrum's height: a sacrum of about 120 ml, all five
    levels' worth of alae but not its top (an adult sacrum holds 150-300 ml)."""
    phantom = phantom_of(PhantomParams(seed=0, spacing=(2.5,) * 3))
    ct = phantom.ct
    sacral = lt.sacral_bone(phantom.labels.array)
    levels = sacral.any(axis=(0, 1)).nonzero()[0]
    cut = int(levels.min() + 0.7 * (levels.max() - levels.min()))
    part = Volume(ct.array[:, :, :cut].copy(), spacing=ct.spacing, origin=ct.origin, direction=ct.direction)
    path = tmp_path_factory.mktemp("cut") / "ct.nii.gz"
    write_volume_file(part, path)
    return path


def test_plan_on_an_implausible_sacrum_calls_no_needle_safe(cut_sacrum_ct, tmp_path):
    out = tmp_path / "plan"
    proc = run("plan", str(cut_sacrum_ct), "-o", str(out), "--json")
    assert proc.returncode == 3, proc.stderr               # a result without a safe path, not bad input
    assert "Traceback" not in proc.stderr
    plan = json.loads((out / "plan.json").read_text())
    seg = json.loads((out / "segmentation.json").read_text())
    assert seg["implausible"] and "holds only" in seg["implausible_reason"], seg["implausible_reason"]
    assert plan["segmentation"] == {"source": "ct", "partial": True, "implausible": True,
                                    "implausible_reason": seg["implausible_reason"], "lesion_uncertain": False}
    assert plan["outcome"] == "no_safe_path" and plan["needles"] == []
    assert plan["alternatives"] and all(n["verdict"] == "unsafe" and n["reasons"][0] == GATE
                                        for n in plan["alternatives"])
    warning = plan["warnings"][0]
    assert warning.startswith("no needle is called safe") and seg["implausible_reason"] in warning
    report = (out / "report.html").read_text()
    assert "sacrum is implausible" in report and html.escape(warning) in report

    # Checked on the images and passed back as the user's own labels, they are planned on.
    trusted = tmp_path / "trusted"
    proc = run("plan", str(cut_sacrum_ct), "--labels", str(out), "-o", str(trusted),
               "--no-report")
    assert proc.returncode == 0, proc.stderr
    planned = json.loads((trusted / "plan.json").read_text())
    assert planned["needles"] and all(n["safe"] and GATE not in n["reasons"] for n in planned["needles"])
    assert not planned["segmentation"]["implausible"]

    # The best of those needles, drawn by hand on the CT alone, is unsafe where the CT is segmented here.
    best = planned["needles"][0]
    evaluated = tmp_path / "evaluated"
    proc = run("evaluate", str(cut_sacrum_ct), "--entry=" + ",".join(map(str, best["entry_lps"])),
               "--target=" + ",".join(map(str, best["tip_lps"])), "-o", str(evaluated))
    assert proc.returncode == 0 and "Traceback" not in proc.stderr, proc.stderr
    evaluation = json.loads((evaluated / "evaluation.json").read_text())
    needle = evaluation["needle"]
    assert needle["verdict"] == "unsafe" and needle["reasons"] == [GATE], needle["reasons"]
    assert evaluation["warnings"][0].startswith("no needle is called safe")


def test_plan_needles_with_an_implausible_reason_keeps_the_measures_and_ranks(phantom_of):
    phantom = phantom_of(PhantomParams(seed=0, spacing=(2.5,) * 3))
    options = PlanOptions(needles=2, mc_samples=20)
    trusted = plan_needles(phantom.labels, options, ct=phantom.ct)
    gated = plan_needles(phantom.labels, options, ct=phantom.ct, implausible="the sacrum found is centred 24 mm "
                         "to the left of the body's midline")
    assert trusted["outcome"] == "planned" and gated["outcome"] == "no_safe_path" and gated["needles"] == []
    assert "centred 24 mm" in gated["warnings"][0]
    best = trusted["needles"][0]
    same = [n for n in gated["alternatives"] if n["entry_lps"] == best["entry_lps"] and n["tip_lps"] == best["tip_lps"]]
    assert len(same) == 1 and same[0]["reasons"] == [GATE] and same[0]["clearance_mm"] == best["clearance_mm"]
