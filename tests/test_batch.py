"""Batch scoring: mixed good/bad inputs, resume after SIGKILL, dask LocalCluster == local."""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from trajplan.batch import BatchOptions, run_batch
from trajplan.planning import PlanOptions

PLAN = PlanOptions(needles=1, mc_samples=50)


def read_summary(out: Path) -> list[dict]:
    with open(out / "summary.csv", newline="") as handle:
        return list(csv.DictReader(handle))


def comparable_plan(case_dir: Path) -> dict:
    """plan.json without its timings and planning time (the only parts that may differ between runs)."""
    plan = json.loads((case_dir / "plan.json").read_text())
    plan.pop("timings_s", None)
    plan.get("case", {}).pop("planned_utc", None)
    return plan


@pytest.fixture(scope="module")
def archive(tmp_path_factory) -> Path:
    """Two phantom cases (one nested as a DICOM series), a corrupt DICOM folder, an empty-ish CT."""
    from sample_ct.phantom import PhantomParams, make_phantom, write_phantom

    root = tmp_path_factory.mktemp("archive")
    write_phantom(make_phantom(PhantomParams(seed=1, spacing=(2.5, 2.5, 2.5), fracture="left")),
                  root / "a")
    write_phantom(make_phantom(PhantomParams(seed=2, spacing=(2.5, 2.5, 2.5), fracture="right")),
                  root / "deep" / "b", dicom=True)
    for name in ("labels.nii.gz",):  # ground truth is not a case
        (root / "a" / name).unlink()
        (root / "deep" / "b" / name).unlink()
    (root / "deep" / "b" / "ct.nii.gz").unlink()  # b is read from its DICOM series
    corrupt = root / "corrupt"
    corrupt.mkdir()
    (corrupt / "slice1.dcm").write_bytes(b"\x00" * 128 + b"DICM" + b"\x01" * 50)
    return root


@pytest.fixture(scope="module")
def planned(archive, tmp_path_factory) -> tuple[Path, dict]:
    """(output folder, result) of a local batch over the archive with PLAN, shared by the tests
    that check it and compare other runs with it (none of them changes it)."""
    out = tmp_path_factory.mktemp("planned") / "out"
    return out, run_batch(BatchOptions(input=archive, output=out, plan=PLAN, report=False))


def test_mixed_folder_fails_alone(archive, planned):
    out, result = planned
    rows = {r["input"]: r for r in read_summary(out)}
    assert rows["a/ct.nii.gz"]["status"] == "done"
    assert rows["deep/b/dicom"]["status"] == "done"
    assert rows["corrupt"]["status"] == "failed" and rows["corrupt"]["error"]
    assert result["done"] == 2 and result["failed"] == 1
    for row in rows.values():
        assert row["case_id"].startswith("case-")
        assert (out / row["case_id"] / "case.json").is_file()
        if row["status"] == "done":
            assert int(row["safe_needles"]) >= 1
            assert float(row["min_clearance_canal_mm"]) > 0
            assert (out / row["case_id"] / "plan.json").is_file()
    assert not (out / ".partial").exists()
    # a rerun skips everything that is done and keeps the failure
    again = run_batch(BatchOptions(input=archive, output=out, plan=PLAN, report=False))
    assert again["ran"] == 0 and again["done"] == 2 and again["failed"] == 1


@pytest.mark.slow
def test_killed_then_resumed_equals_uninterrupted(archive, planned, tmp_path):
    whole, _ = planned  # the uninterrupted run, with PLAN: the options of the command line below
    settings = tmp_path / "plan.toml"
    settings.write_text(f"[placement_error]\nsamples = {PLAN.mc_samples}\n")

    resumed = tmp_path / "resumed"
    cmd = [sys.executable, "-m", "trajplan", "batch", str(archive), "-o", str(resumed),
           "--needles", str(PLAN.needles), "--config", str(settings), "--no-report"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 300
    while time.time() < deadline:  # kill as soon as one case is done, mid-way through the next
        if (resumed / "summary.csv").exists() and any(
                r["status"] == "done" for r in read_summary(resumed)):
            break
        time.sleep(0.2)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    done_before = [r for r in read_summary(resumed) if r["status"] == "done"]
    assert 1 <= len(done_before) < 3
    for row in read_summary(resumed):  # nothing half-written counts as done
        if row["status"] != "done":
            assert not (resumed / row["case_id"] / "plan.json").exists() or json.loads(
                (resumed / row["case_id"] / "case.json").read_text())["status"] == "done"

    subprocess.run(cmd, check=True, capture_output=True)
    def key(rows):
        return {r["case_id"]: (r["status"], r["best_score"], r["safe_needles"]) for r in rows}
    assert key(read_summary(resumed)) == key(read_summary(whole))
    for row in read_summary(whole):
        if row["status"] == "done":
            assert comparable_plan(resumed / row["case_id"]) == comparable_plan(whole / row["case_id"])


@pytest.mark.slow
def test_local_cluster_equals_local_run(archive, planned, tmp_path):
    from dask.distributed import LocalCluster

    local, _ = planned
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                      dashboard_address=None) as cluster:
        remote = tmp_path / "remote"
        run_batch(BatchOptions(input=archive, output=remote, plan=PLAN, report=False,
                               scheduler=cluster.scheduler_address))
    rows_local = {r["case_id"]: r for r in read_summary(local)}
    rows_remote = {r["case_id"]: r for r in read_summary(remote)}
    assert rows_local.keys() == rows_remote.keys()
    for case_id, row in rows_local.items():
        assert row["status"] == rows_remote[case_id]["status"]
        if row["status"] == "done":
            assert comparable_plan(local / case_id) == comparable_plan(remote / case_id)
            assert np.isclose(float(row["best_score"]), float(rows_remote[case_id]["best_score"]))


def test_manifest_with_per_case_options(archive, tmp_path):
    manifest = tmp_path / "cases.csv"
    manifest.write_text(f"path,side\n{archive / 'a' / 'ct.nii.gz'},left\n")
    out = tmp_path / "out"
    run_batch(BatchOptions(input=manifest, output=out, plan=PLAN, report=False))
    row = read_summary(out)[0]
    assert row["status"] == "done"
    plan = json.loads((out / row["case_id"] / "plan.json").read_text())
    assert {n["side"] for n in plan["needles"]} == {"left"}


def test_a_case_without_a_safe_path_is_done_with_its_outcome(tmp_path):
    from dataclasses import replace

    from sample_ct.phantom import PhantomParams, make_phantom, write_phantom

    write_phantom(make_phantom(PhantomParams(seed=0, spacing=(2.5,) * 3, fracture="left")), tmp_path / "c")
    manifest = tmp_path / "cases.csv"
    manifest.write_text("path,labels,side\nc/ct.nii.gz,c/labels.nii.gz,left\n")
    out = tmp_path / "out"
    impossible = replace(PLAN, margins_mm={"canal": 25, "foramen": 25}, mc_samples=20)
    result = run_batch(BatchOptions(input=manifest, output=out, plan=impossible, report=False))
    assert result["done"] == 1 and result["failed"] == 0
    (row,) = read_summary(out)
    assert row["status"] == "done" and row["outcome"] == "no_safe_path" and row["safe_needles"] == "0"
    plan = json.loads((out / row["case_id"] / "plan.json").read_text())
    assert plan["outcome"] == "no_safe_path" and any(w.startswith("no safe") for w in plan["warnings"])


def test_a_manifest_labels_folder_follows_the_labels_rule(tmp_path):
    from trajplan.batch import Case, _plan_options_for

    plan_dir, ts = tmp_path / "plan", tmp_path / "ts"
    plan_dir.mkdir()
    ts.mkdir()
    (plan_dir / "labels.nii.gz").write_bytes(b"")
    for labels, key, value in ((plan_dir, "labels_path", str(plan_dir / "labels.nii.gz")),
                               (plan_dir / "labels.nii.gz", "labels_path", str(plan_dir / "labels.nii.gz")),
                               (ts, "ts_labels_path", str(ts))):
        case = Case(path=tmp_path / "ct.nii.gz", label="c", sha256="0" * 64, options={"labels": str(labels)})
        _, kwargs = _plan_options_for(case, PLAN)
        assert kwargs[key] == value
