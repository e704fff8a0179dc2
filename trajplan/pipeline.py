"""The jobs behind the command line: read inputs, run the core stages, write outputs.

This is the I/O edge. Each ``run_*`` function takes paths and options, calls the
pure stages (segmentation, planning, views) and writes its files atomically into
the output folder. It returns a small JSON-serialisable summary, which the CLI
prints with ``--json`` and the batch runner writes into ``summary.csv``.
"""

from __future__ import annotations

import logging
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from trajplan import __version__
from trajplan import labels as lt
from trajplan.errors import InputError
from trajplan.io.checksum import sha256_of
from trajplan.io.files import read_volume_file, write_volume_file
from trajplan.io.plan_folder import LABELS as TRAJPLAN_LABELS
from trajplan.io.reader import read_ct
from trajplan.io.staged import staged_folder
from trajplan.timing import StageTimer
from trajplan.volume import Volume

if TYPE_CHECKING:
    from trajplan.planning import PlanOptions

log = logging.getLogger("trajplan")


def geometry_json(volume: Volume) -> dict:
    """The geometry block of ``plan.json`` / ``segmentation.json`` (shape, spacing, origin, direction)."""
    return {
        "shape": list(volume.shape),
        "spacing": [round(float(s), 6) for s in volume.spacing],
        "origin": [round(float(o), 4) for o in volume.origin],
        "direction": [round(float(d), 6) for d in volume.direction.reshape(-1)],
    }


def input_json(path: str | Path, ct: Volume) -> dict:
    """What ``plan.json`` records of the input: checksum, format and geometry, never a name."""
    path = Path(path)
    return {
        "sha256": sha256_of(path),
        "format": "dicom" if path.is_dir() else "".join(path.suffixes).lstrip(".").lower(),
        "geometry": geometry_json(ct),
    }


def read_label_map(path: str | Path, ct: Volume) -> Volume:
    """Read a trajplan label map and check it lies on the CT's grid.

    Raises
    ------
    InputError
        If the geometry differs from the CT's, or the values are not in the label table.
    """
    labels = read_volume_file(path)
    if not labels.same_geometry(ct, tol_mm=1e-2):
        raise InputError(
            f"{Path(path).name}: labels do not match the CT geometry "
            f"(labels {labels.shape} at {np.round(labels.spacing, 3).tolist()} mm, "
            f"CT {ct.shape} at {np.round(ct.spacing, 3).tolist()} mm, "
            f"origins {np.round(labels.origin, 1).tolist()} vs {np.round(ct.origin, 1).tolist()})"
        )
    values = np.unique(labels.array)
    known = {label.value for label in lt.LABELS} | {0}
    unknown = sorted(set(int(v) for v in values) - known)
    if unknown:
        raise InputError(f"{Path(path).name}: label values {unknown} are not in the label table")
    return labels.with_array(labels.array.astype(np.uint8))


def _segment_or_load(
    ct: Volume,
    out_dir: Path,
    timer: StageTimer,
    *,
    labels_path: str | Path | None,
    sacrum_mask_path: str | Path | None,
    ts_labels_path: str | Path | None,
) -> tuple[Volume, dict]:
    """Label map for planning: the user's (checked), or segmented here; written to ``out_dir``."""
    from segmentation.external import load_totalsegmentator
    from segmentation.pipeline import Segmentation, segment, write_segmentation

    if labels_path is not None:
        with timer.stage("reading labels"):
            labels = read_label_map(labels_path, ct)
            seg = Segmentation(labels=labels, report={"source": "labels file", "partial": False})
    else:
        sacrum_mask = read_volume_file(sacrum_mask_path) if sacrum_mask_path else None
        external = load_totalsegmentator(ts_labels_path, ct) if ts_labels_path else None
        with timer.stage("segmentation"):
            seg = segment(ct, sacrum_mask=sacrum_mask, external_labels=external)
    write_segmentation(seg, out_dir)
    return seg.labels, seg.report


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
    out_dir = Path(out_dir)
    timer = StageTimer()
    with staged_folder(out_dir) as work:
        with timer.stage("reading CT"):
            ct = read_ct(ct_path, series_uid=series_uid)
        labels, report = _segment_or_load(
            ct, work, timer, labels_path=None, sacrum_mask_path=sacrum_mask_path,
            ts_labels_path=ts_labels_path,
        )
    return {
        "output": str(out_dir),
        "labels_present": lt.present(labels),
        "partial": bool(report.get("partial", False)),
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
    from trajplan.card import add_cards
    from trajplan.io.plan_folder import CT_ROI
    from trajplan.plan_io import write_plan
    from trajplan.planning import plan_needles
    from trajplan.views.region import view_region
    from trajplan.views.scene3d import render_scene_png

    out_dir = Path(out_dir)
    timer = timer or StageTimer()
    with staged_folder(out_dir) as work:
        with timer.stage("reading CT"):
            ct = read_ct(ct_path, series_uid=series_uid)
        labels, seg_report = _segment_or_load(
            ct, work, timer, labels_path=labels_path, sacrum_mask_path=sacrum_mask_path,
            ts_labels_path=ts_labels_path,
        )
        with timer.stage("planning"):
            plan = plan_needles(labels, options, ct=ct)
        plan = {
            "schema": plan.get("schema", "trajplan/plan"),
            "schema_version": plan.get("schema_version", 1),
            "software": {"name": "trajplan", "version": __version__},
            "input": input_json(ct_path, ct),
            **{k: v for k, v in plan.items() if k not in ("schema", "schema_version")},
        }
        plan["segmentation"] = {
            "source": seg_report.get("source", "ct"),
            "partial": bool(seg_report.get("partial", False)),
        }
        if seg_report.get("partial"):
            plan.setdefault("warnings", []).append(
                f"segmentation is partial: {seg_report.get('partial_reason', 'see segmentation.json')}"
            )
        lesion_quality = seg_report.get("structures", {}).get("lesion", {}).get("quality", "")
        if lesion_quality.startswith("not sought"):
            plan.setdefault("warnings", []).append(f"lytic lesions {lesion_quality}; look for one on the images")
        with timer.stage("procedure cards"):
            plan["case"] = case_json(plan["input"]["sha256"], case_name)
            lying, source = patient_position(ct_path, series_uid, position)
            add_cards(plan, ct, labels, position=lying, position_source=source,
                      lengths_mm=options.needle_lengths_mm)
        with timer.stage("writing plan"):
            plan["timings_s"] = {k: round(v, 3) for k, v in timer.seconds.items()}
            write_plan(plan, work)
            ct_roi = view_region(ct, labels, plan)
            write_volume_file(ct_roi, work / CT_ROI)
        with timer.stage("rendering"):
            if report:
                from trajplan.report import write_report

                write_report(work, labels=labels, plan=plan, ct=ct_roi)
            else:
                render_scene_png(labels, plan, work / "scene.png")
    return plan_summary(plan, out_dir, timer)


def case_json(sha256: str, case_name: str | None) -> dict:
    """The ``case`` block of ``plan.json``: the case's name (given, else its anonymous id) and the
    UTC time of planning."""
    name = " ".join(str(case_name).split()) if case_name else ""
    return {"name": name or f"case-{sha256[:12]}", "named_by": "option" if name else "checksum",
            "planned_utc": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")}


def patient_position(ct_path: str | Path, series_uid: str | None, given: str | None) -> tuple[str, str]:
    """How the patient lies and where that came from: (``prone``|``supine``, ``option``|``dicom``|``assumed``)."""
    if given is not None:
        if given not in ("prone", "supine"):
            raise InputError(f"unknown patient position {given!r} (prone or supine)")
        return given, "option"
    path = Path(ct_path)
    folder = path if path.is_dir() else path.parent if path.suffix.lower() == ".dcm" else None
    if folder is not None:
        from trajplan.io.dicom import series_patient_position

        found = series_patient_position(folder, series_uid=series_uid)
        if found is not None:
            return found, "dicom"
    return "prone", "assumed"


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
) -> tuple[Volume, str]:
    """The label map ``evaluate`` scores on, and where it came from.

    ``labels_path``: a trajplan label map file, or a trajplan plan or segmentation folder (its
    ``labels.nii.gz``): read and checked, not re-segmented. ``ts_labels_path``: a TotalSegmentator
    output folder or multilabel file, used by the segmentation. Otherwise the CT is segmented
    (with ``sacrum_mask_path`` when given).
    """
    from segmentation.pipeline import segment

    if labels_path is not None:
        path = Path(labels_path)
        if path.is_dir():
            path = path / TRAJPLAN_LABELS
        return read_label_map(path, ct), f"labels file {path.name}"
    sacrum_mask = read_volume_file(sacrum_mask_path) if sacrum_mask_path else None
    external = None
    if ts_labels_path is not None:
        from segmentation.external import load_totalsegmentator

        external = load_totalsegmentator(ts_labels_path, ct)
    source = "segmented here" + (" with TotalSegmentator masks" if external else "")
    return segment(ct, sacrum_mask=sacrum_mask, external_labels=external).labels, source


def drawn_line(labels: Volume, entry_lps: np.ndarray, target_lps: np.ndarray,
               coordinates: str) -> tuple[np.ndarray, dict]:
    """The entry to score a drawn line from, and the ``drawn_line`` block of the evaluation.

    A line drawn from the skin (or any point outside the sacral bone) is scored from where it
    first enters the sacral bone (:func:`trajplan.planning.evaluate.bone_entry_on_line`), as a planned
    needle is; a line that starts in the bone, or never reaches it, is scored as drawn.
    """
    from trajplan.card import lps_to_ras
    from trajplan.planning.evaluate import bone_entry_on_line

    entry, tip = np.asarray(entry_lps, float), np.asarray(target_lps, float)
    found = bone_entry_on_line(labels, entry, tip)
    block = {
        "coordinates": coordinates,
        "entry_lps": [round(float(v), 2) for v in entry],
        "tip_lps": [round(float(v), 2) for v in tip],
        "entry_ras": [round(float(v), 2) + 0.0 for v in lps_to_ras(entry)],
        "tip_ras": [round(float(v), 2) + 0.0 for v in lps_to_ras(tip)],
    }
    if found is None:
        block.update(scored_from="drawn entry", entry_to_bone_mm=None,
                     note="the line does not reach the sacral bone before its tip: scored as drawn")
        return entry, block
    point, distance = found
    if distance == 0.0:
        block.update(scored_from="drawn entry", entry_to_bone_mm=0.0,
                     note="the line starts in the sacral bone: scored as drawn")
        return entry, block
    block.update(scored_from="bone entry", entry_to_bone_mm=round(distance, 1),
                 note=f"the line starts {distance:.1f} mm before the sacral bone (drawn from the skin or the "
                      "soft tissue): scored from where it enters the bone, "
                      f"LPS {', '.join(f'{v:.1f}' for v in point)}")
    return point, block


def needle_margins(options: PlanOptions) -> dict[str, float]:
    """The margin of every critical structure under ``options``."""
    from trajplan.planning.defaults import resolve_margins

    return resolve_margins(options.margins_mm)


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
    (:func:`drawn_line`); the result's ``drawn_line`` block says which. The needle gets its
    ``skin_entry_lps``/``skin_entry_ras`` and ``card`` as in a plan (:func:`trajplan.card.add_cards`).

    With ``out_dir`` the folder (complete or absent, as a plan folder) receives ``evaluation.json``,
    ``card.html``, ``evaluation.mrk.json`` (the scored line for 3D Slicer), ``ct_roi.nii.gz`` and
    ``slices/needle1_{plane,axial_entry,axial_mid,axial_tip}.png``.

    ``settings`` are ``PlanOptions`` keyword arguments from a settings file
    (:func:`trajplan.settings.read_settings`): its margins (under ``margins_mm``), score weights,
    placement error, Monte Carlo size and needle lengths apply; the needle separation does not.
    """
    from trajplan.card import add_cards
    from trajplan.planning import PlanOptions, evaluate_path
    from trajplan.planning.options import settings_json
    from trajplan.settings import merge_margins

    timer = StageTimer()
    with timer.stage("reading CT"):
        ct = read_ct(ct_path, series_uid=series_uid)
    with timer.stage("labels"):
        labels, source = evaluation_labels(ct, labels_path=labels_path, ts_labels_path=ts_labels_path,
                                           sacrum_mask_path=sacrum_mask_path)
    entry, block = drawn_line(labels, entry_lps, target_lps, coordinates)
    options = PlanOptions(gauge=gauge, **merge_margins(settings or {}, margins_mm))
    with timer.stage("evaluating"):
        needle = evaluate_path(labels, entry, target_lps, gauge=gauge, margins_mm=options.margins_mm, ct=ct,
                               mc_samples=options.mc_samples, weights=options.weights,
                               entry_sigma_mm=options.entry_sigma_mm, angle_sigma_deg=options.angle_sigma_deg)
    source_json = input_json(ct_path, ct)
    doc = {
        "schema": "trajplan/evaluation", "schema_version": 1,
        "software": {"name": "trajplan", "version": __version__},
        "input": source_json,
        "case": case_json(source_json["sha256"], case_name),
        "labels": source,
        "parameters": {"gauge": int(gauge), "margins_mm": needle_margins(options)},
        "needles": [needle],
        "warnings": [],
        "settings": settings_json(options),
    }
    with timer.stage("procedure card"):
        lying, position_source = patient_position(ct_path, series_uid, position)
        add_cards(doc, ct, labels, position=lying, position_source=position_source,
                  lengths_mm=options.needle_lengths_mm)
    result = {**needle, "drawn_line": block}
    if out_dir is None:
        return result
    from trajplan.card_html import card_page
    from trajplan.io.atomic import write_json, write_text
    from trajplan.io.plan_folder import CT_ROI
    from trajplan.plan_io import slicer_markups
    from trajplan.views.region import view_region
    from trajplan.views.slices import render_needle_slices

    out_dir = Path(out_dir)
    ranked = dict(needle, rank=1)
    page = dict(doc, needles=[ranked], drawn_line=block)
    evaluation = {k: v for k, v in doc.items() if k != "needles"}
    evaluation.update(drawn_line=block, needle=needle)
    with staged_folder(out_dir) as work:
        with timer.stage("writing"):
            write_text(work / "card.html", card_page(page))
            write_json(work / "evaluation.mrk.json", slicer_markups([ranked]))
            ct_roi = view_region(ct, labels, page)
            write_volume_file(ct_roi, work / CT_ROI)
        with timer.stage("rendering"):
            slices = render_needle_slices(ct_roi, labels, page, work)
        evaluation["timings_s"] = {k: round(v, 3) for k, v in timer.seconds.items()}
        write_json(work / "evaluation.json", evaluation)
    result["output"] = str(out_dir)
    result["files"] = ["evaluation.json", "card.html", "evaluation.mrk.json", CT_ROI,
                       *(str(p.relative_to(work)) for p in slices.values())]
    return result
