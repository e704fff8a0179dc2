"""The jobs behind the command line: read inputs, call the library, write outputs.

This is the I/O edge. Each ``run_*`` function takes paths and options, reads the CT
and any label or mask files, calls the functions of :mod:`trajplan.api` (segment, plan,
evaluate a path, write the folder) and returns a small JSON-serialisable summary, which
the CLI prints with ``--json`` and the batch runner writes into ``summary.csv``. Its
output folders are staged (complete or absent), and the staging starts before the CT is
read, so an output path that cannot be used is refused at once.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from trajplan import api
from trajplan import labels as lt
from trajplan.io.files import read_volume_file
from trajplan.io.plan_folder import LABELS
from trajplan.io.reader import read_ct
from trajplan.io.staged import staged_folder
from trajplan.timing import StageTimer
from trajplan.volume import Volume

if TYPE_CHECKING:
    from segmentation.pipeline import Segmentation
    from trajplan.planning import PlanOptions

log = logging.getLogger("trajplan")


def _segment_or_load(
    ct: Volume,
    timer: StageTimer,
    *,
    labels_path: str | Path | None,
    sacrum_mask_path: str | Path | None,
    ts_labels_path: str | Path | None,
) -> Segmentation:
    """The segmentation to plan on: the user's label map (checked), or the CT segmented here."""
    from segmentation.pipeline import Segmentation

    if labels_path is not None:
        with timer.stage("reading labels"):
            return Segmentation(labels=api.read_labels(labels_path, ct),
                                report={"source": "labels file", "partial": False})
    sacrum_mask = read_volume_file(sacrum_mask_path) if sacrum_mask_path else None
    with timer.stage("segmentation"):
        return api.segment(ct, sacrum_mask=sacrum_mask, totalsegmentator=ts_labels_path)


def run_segment(
    ct_path: str | Path,
    out_dir: str | Path,
    *,
    series_uid: str | None = None,
    sacrum_mask_path: str | Path | None = None,
    ts_labels_path: str | Path | None = None,
) -> dict:
    """Segment a CT and write ``labels.nii.gz``, ``labels.seg.nrrd``, ``labels.json``, ``sacrum.nii.gz``,
    ``segmentation.json``.

    ``out_dir`` is complete or absent: it is built beside its place and renamed into it
    at the end (:func:`trajplan.io.staged.staged_folder`).

    Returns
    -------
    dict
        ``{"output": folder, "labels_present": [...], "partial": bool, "timings_s": {...}}``.
    """
    from segmentation.pipeline import write_segmentation

    out_dir = Path(out_dir)
    timer = StageTimer()
    with staged_folder(out_dir) as work:
        with timer.stage("reading CT"):
            ct = read_ct(ct_path, series_uid=series_uid)
        seg = _segment_or_load(ct, timer, labels_path=None, sacrum_mask_path=sacrum_mask_path,
                               ts_labels_path=ts_labels_path)
        write_segmentation(seg, work)
    return {
        "output": str(out_dir),
        "labels_present": lt.present(seg.labels),
        "partial": bool(seg.report.get("partial", False)),
        "timings_s": {k: round(v, 3) for k, v in timer.seconds.items()},
    }


def run_plan(
    ct_path: str | Path,
    out_dir: str | Path,
    options: PlanOptions,
    *,
    series_uid: str | None = None,
    labels_path: str | Path | None = None,
    sacrum_mask_path: str | Path | None = None,
    ts_labels_path: str | Path | None = None,
    report: bool = True,
    timer: StageTimer | None = None,
    case_name: str | None = None,
    position: str | None = None,
) -> dict:
    """Plan needle paths for one CT and write the plan folder.

    Writes ``labels.nii.gz`` (+ ``labels.seg.nrrd``, ``labels.json``, ``sacrum.nii.gz``, ``segmentation.json``),
    ``plan.json``, ``plan.csv``, ``plan.mrk.json``, ``card.html`` (the printable procedure cards),
    ``ct_roi.nii.gz`` (the CT around the sacrum and the needles, for the views), ``scene.png`` and,
    unless ``report`` is false, ``report.html`` with its views and ``scene.html``.

    ``case_name`` names the case in ``plan.json`` and the report (else its anonymous id,
    ``case-`` and the first 12 hex digits of the input checksum). ``position`` (``prone`` or
    ``supine``) is how the patient lies, for the gantry tilt's direction; without it the DICOM
    PatientPosition is used, else prone is assumed (:func:`trajplan.card.add_cards`).

    Returns
    -------
    dict
        The plan summary: output folder, outcome, number of (safe) needles, best score,
        minimum clearances of the best needle, timings per stage.

    Raises
    ------
    InputError
        Bad input (unreadable CT, no sacrum, labels off the CT grid, bad options); no
        ``plan.json`` is written then. No safe path is not an error: the folder is written
        with ``outcome`` ``no_safe_path`` (see :func:`trajplan.planning.plan_needles`).
    OutputError
        When the folder cannot be written (full disk, read-only, permission, a file in
        the way, a vanished folder). ``out_dir`` is complete or absent: it is built beside
        its place and renamed into it at the end (:func:`trajplan.io.staged.staged_folder`).
    """
    out_dir = Path(out_dir)
    timer = timer or StageTimer()
    with staged_folder(out_dir) as work:
        with timer.stage("reading CT"):
            ct = read_ct(ct_path, series_uid=series_uid)
        seg = _segment_or_load(ct, timer, labels_path=labels_path, sacrum_mask_path=sacrum_mask_path,
                               ts_labels_path=ts_labels_path)
        result = api.plan(ct, seg, options, source=ct_path, series_uid=series_uid, case_name=case_name,
                      position=position, timer=timer)
        api.write_plan_files(result, work, report=report, timer=timer)
    return plan_summary(result.to_json(), out_dir, timer)


def plan_summary(plan: dict, out_dir: Path, timer: StageTimer) -> dict:
    """The one-line-per-case summary of a written plan (for ``--json`` and ``summary.csv``)."""
    needles = plan.get("needles", [])
    best = needles[0] if needles else {}
    return {
        "output": str(out_dir),
        "outcome": plan.get("outcome", "planned"),
        "needles": len(needles),
        "safe_needles": sum(1 for n in needles if n.get("safe")),
        "best_score": best.get("score"),
        "best_technique": best.get("technique"),
        "min_clearance_mm": best.get("clearance_mm", {}),
        "breach_probability": best.get("breach_probability", {}).get("any"),
        "warnings": plan.get("warnings", []),
        "timings_s": {k: round(v, 3) for k, v in timer.seconds.items()},
    }


def evaluation_labels(
    ct: Volume,
    *,
    labels_path: str | Path | None = None,
    ts_labels_path: str | Path | None = None,
    sacrum_mask_path: str | Path | None = None,
) -> tuple[Volume | Segmentation, str]:
    """The label map ``evaluate`` scores on, and where it came from.

    ``labels_path``: a trajplan label map file, or a trajplan plan or segmentation folder (its
    ``labels.nii.gz``): read and checked, not re-segmented. ``ts_labels_path``: a TotalSegmentator
    output folder or multilabel file, used by the segmentation. Otherwise the CT is segmented
    (with ``sacrum_mask_path`` when given), and the whole segmentation is returned: its report
    says whether the labels can be trusted (:func:`trajplan.api.evaluate_path`).
    """
    if labels_path is not None:
        path = Path(labels_path)
        if path.is_dir():
            path = path / LABELS
        return api.read_labels(path, ct), f"labels file {path.name}"
    sacrum_mask = read_volume_file(sacrum_mask_path) if sacrum_mask_path else None
    source = "segmented here" + (" with TotalSegmentator masks" if ts_labels_path is not None else "")
    return api.segment(ct, sacrum_mask=sacrum_mask, totalsegmentator=ts_labels_path), source


def run_evaluate(
    ct_path: str | Path,
    entry_lps: np.ndarray,
    target_lps: np.ndarray,
    *,
    gauge: int = 11,
    margins_mm: dict[str, float] | None = None,
    series_uid: str | None = None,
    labels_path: str | Path | None = None,
    sacrum_mask_path: str | Path | None = None,
    ts_labels_path: str | Path | None = None,
    coordinates: str = "lps",
    out_dir: str | Path | None = None,
    case_name: str | None = None,
    position: str | None = None,
    settings: dict | None = None,
) -> dict:
    """Metrics, verdict and procedure card of one hand-drawn path (the needle object of ``plan.json``).

    ``entry_lps`` and ``target_lps`` are LPS mm (the CLI converts ``--coords ras``); ``coordinates``
    only records what the user gave. A line drawn from the skin is scored from its bone entry
    (:func:`trajplan.api.drawn_line`); the result's ``drawn_line`` block says which. The needle gets its
    ``skin_entry_lps``/``skin_entry_ras`` and ``card`` as in a plan (:func:`trajplan.card.add_cards`).

    With ``out_dir`` the folder (complete or absent, as a plan folder) receives ``evaluation.json``,
    ``card.html``, ``evaluation.mrk.json`` (the scored line for 3D Slicer), ``ct_roi.nii.gz`` and
    ``slices/needle1_{plane,axial_entry,axial_mid,axial_tip}.png``.

    ``settings`` are ``PlanOptions`` keyword arguments from a settings file
    (:func:`trajplan.settings.read_settings`): its margins (under ``margins_mm``), score weights,
    placement error, Monte Carlo size and needle lengths apply; the needle separation does not.
    """
    from trajplan.planning import PlanOptions
    from trajplan.settings import merge_margins

    timer = StageTimer()
    with timer.stage("reading CT"):
        ct = read_ct(ct_path, series_uid=series_uid)
    with timer.stage("labels"):
        labels, source = evaluation_labels(ct, labels_path=labels_path, ts_labels_path=ts_labels_path,
                                           sacrum_mask_path=sacrum_mask_path)
    options = PlanOptions(gauge=gauge, **merge_margins(settings or {}, margins_mm))
    evaluation = api.evaluate_path(ct, labels, entry_lps, target_lps, options=options, source=ct_path,
                               series_uid=series_uid, case_name=case_name, position=position,
                                   labels_source=source, coordinates=coordinates, timer=timer)
    result = evaluation.to_json()
    if out_dir is None:
        return result
    files = api.write_evaluation_folder(evaluation, out_dir, timer=timer)
    result["output"] = str(out_dir)
    result["files"] = files
    return result
