"""Technique comparison over a phantom cohort or a finished batch: ``comparison.csv``.

For each case the candidate needles of both techniques are measured once per gauge
(:func:`trajplan.planning.candidate_pool`); from that pool the best set of 1-5
needles is chosen for short axis only, long axis only and both mixed, exactly as
``trajplan plan`` would choose it. One row per case x gauge x technique x needle
count holds what the set achieves (coverage, cement, clearances, breach
probability). Nothing in a row depends on timing or on the order in which cases
finish, so the same seed gives the same file.

Cases come from :func:`sample_ct.cohort.cohort` (planned on the phantom's ground
truth, or on trajplan's own segmentation with ``segment=True``), or from the case
folders of ``trajplan batch`` (their ``labels.nii.gz``).
"""

from __future__ import annotations

import csv
import io
import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path

from trajplan.errors import InputError, NoSafePathError
from trajplan.io.atomic import write_text
from trajplan.io.plan_folder import CASE, LABELS, SEGMENTATION
from trajplan.needle import Verdict
from trajplan.planning import PlanOptions
from trajplan.planning.defaults import DEFAULT_MARGINS_MM, MIN_SEPARATION_MM, min_clearance_by_class
from trajplan.planning.plan import COMPARED_TECHNIQUES, candidate_pool, choose_needles
from trajplan.planning.selection import plan_summary
from trajplan.volume import Volume

log = logging.getLogger("trajplan")

GAUGES = (11, 13)
NEEDLE_COUNTS = (1, 2, 3, 4, 5)
FULL_COVERAGE = 0.9   # a needle set "covers" the target when it reaches this fraction of its length
CASE_COLUMNS = ("case_id", "source", "seed", "spacing_mm", "osteoporosis", "variation", "fracture",
                "lesion", "position", "labels_from")
COMPARISON_COLUMNS = (
    CASE_COLUMNS
    + ("status", "error", "gauge", "technique", "needles_requested", "needles_placed", "target_kind",
       "target_coverage", "target_length_coverage", "cement_volume_ml", "min_clearance_mm")
    + tuple(f"min_clearance_{c}_mm" for c in DEFAULT_MARGINS_MM)
    + ("max_breach_probability", "mean_breach_probability", "marginal_needles", "mean_length_in_bone_mm",
       "mean_gantry_tilt_deg")
)


@dataclass(frozen=True)
class CompareOptions:
    """What ``trajplan compare`` plans for every case."""

    gauges: tuple[int, ...] = GAUGES
    needle_counts: tuple[int, ...] = NEEDLE_COUNTS
    segment: bool = False          # plan on trajplan's segmentation instead of the phantom's ground truth
    mc_samples: int = 200
    min_separation_mm: float = MIN_SEPARATION_MM
    seed: int = 0                  # Monte Carlo seed of the planner

    def __post_init__(self) -> None:
        if not self.gauges or set(self.gauges) - set(GAUGES):
            raise InputError(f"gauges must be among {GAUGES}, got {self.gauges}")
        if not self.needle_counts or not all(1 <= n <= 5 for n in self.needle_counts):
            raise InputError(f"needle counts must be 1 to 5, got {self.needle_counts}")


def _mean(values: list[float]) -> float | None:
    return round(sum(values) / len(values), 3) if values else None


def configuration_rows(labels: Volume, case: dict, options: CompareOptions, *, ct: Volume | None = None,
                       lesion_uncertain: bool = False, implausible: str | None = None) -> list[dict]:
    """Rows for one case: every gauge x technique x needle count, planned on ``labels`` (``lesion_uncertain``:
    the segmentation marked its lesion uncertain; ``implausible``: why it says its sacrum cannot be a
    whole sacrum, and so no needle is safe; see :func:`trajplan.planning.plan.candidate_pool`).

    A gauge at which no needle is safe gives one row with status ``no_safe_path``;
    a technique with no safe needle gives rows with ``needles_placed`` 0.
    """
    rows = []
    for gauge in options.gauges:
        plan_options = PlanOptions(technique="both", side="both", gauge=gauge, needles=max(options.needle_counts),
                                   mc_samples=options.mc_samples, min_separation_mm=options.min_separation_mm,
                                   seed=options.seed)
        try:
            pool = candidate_pool(labels, plan_options, ct=ct, lesion_uncertain=lesion_uncertain,
                                  implausible=implausible)
        except NoSafePathError as exc:
            rows.append({**case, "status": "no_safe_path", "error": str(exc), "gauge": gauge})
            continue
        targets = pool.target_points
        kind = "+".join(sorted({t.kind for t in pool.targets.values()}))
        for technique, allowed in COMPARED_TECHNIQUES.items():
            for count in options.needle_counts:
                chosen = [p.needle for p in choose_needles(pool, count, allowed, options.min_separation_mm)]
                summary = plan_summary(chosen, targets)
                breach = [n.breach_probability["any"] for n in chosen]
                row = {
                    **case, "status": "done", "error": "", "gauge": gauge, "technique": technique,
                    "needles_requested": count, "needles_placed": len(chosen), "target_kind": kind,
                    "target_coverage": summary["target_coverage"],
                    "target_length_coverage": summary["target_length_coverage"],
                    "cement_volume_ml": summary["cement_volume_ml"] if chosen else None,
                    "min_clearance_mm": summary["min_clearance_mm"],
                    "max_breach_probability": max(breach, default=None),
                    "mean_breach_probability": _mean(breach),
                    "marginal_needles": sum(n.verdict is Verdict.MARGINAL for n in chosen),
                    "mean_length_in_bone_mm": _mean([n.metrics.length_in_bone_mm for n in chosen]),
                    "mean_gantry_tilt_deg": _mean([abs(n.metrics.gantry_tilt_deg) for n in chosen]),
                }
                for cls, value in min_clearance_by_class([n.clearance_mm for n in chosen]).items():
                    row[f"min_clearance_{cls}_mm"] = value
                rows.append(row)
    return rows


def phantom_case_rows(params, options: CompareOptions) -> list[dict]:
    """Make one cohort phantom and compare the techniques on it (runs on a worker)."""
    from sample_ct.phantom import make_phantom

    phantom = make_phantom(params)
    case = {"case_id": f"phantom-{params.seed}", "source": "phantom", "seed": params.seed,
            "spacing_mm": params.spacing[0], "osteoporosis": params.osteoporosis, "variation": params.variation,
            "fracture": params.fracture, "lesion": params.lesion, "position": params.position,
            "labels_from": "segmentation" if options.segment else "ground truth"}
    labels, uncertain, implausible = phantom.labels, False, None
    if options.segment:
        from segmentation.pipeline import segment

        try:
            seg = segment(phantom.ct)
        except InputError as exc:
            return [{**case, "status": "failed", "error": f"segmentation: {exc}"}]
        labels, uncertain, implausible = seg.labels, seg.lesion_uncertain, seg.implausible_reason
    return configuration_rows(labels, case, options, ct=phantom.ct, lesion_uncertain=uncertain,
                              implausible=implausible)


def batch_case_rows(folder: str, options: CompareOptions) -> list[dict]:
    """Compare the techniques on the label map of one finished ``trajplan batch`` case folder."""
    from segmentation.pipeline import implausible_reason, lesion_uncertain
    from trajplan.io.files import read_volume_file

    folder_path = Path(folder)
    record = json.loads((folder_path / CASE).read_text())
    case = {"case_id": record.get("case_id", folder_path.name), "source": "batch",
            "labels_from": "batch labels.nii.gz"}
    try:
        labels = read_volume_file(folder_path / LABELS)
    except InputError as exc:
        return [{**case, "status": "failed", "error": str(exc)}]
    report = folder_path / SEGMENTATION
    seg_report = json.loads(report.read_text()) if report.is_file() else {}
    return configuration_rows(labels, case, options, lesion_uncertain=lesion_uncertain(seg_report),
                              implausible=implausible_reason(seg_report))


def batch_case_folders(batch_out: str | Path) -> list[Path]:
    """The finished case folders of a ``trajplan batch`` output (status done, labels written).

    Raises
    ------
    InputError
        If the folder is not a batch output or holds no finished case.
    """
    root = Path(batch_out)
    if not (root / "summary.csv").is_file():
        raise InputError(f"{root}: not a trajplan batch output (no summary.csv)")
    folders = []
    for record in sorted(root.glob("*/case.json")):
        try:
            status = json.loads(record.read_text()).get("status")
        except ValueError:
            continue
        if status == "done" and (record.parent / LABELS).is_file():
            folders.append(record.parent)
    if not folders:
        raise InputError(f"{root}: no finished case with labels.nii.gz to compare")
    return folders


def rows_csv(rows: list[dict]) -> str:
    """``comparison.csv`` text: the fixed columns, rows in case then configuration order."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=COMPARISON_COLUMNS, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: ("" if row.get(k) is None else row.get(k)) for k in COMPARISON_COLUMNS})
    return buffer.getvalue()


def _collect(func, items: list, options: CompareOptions, workers: int, scheduler: str | None,
             names: list[str]) -> list[list[dict]]:
    """Rows of every item, in the order of ``items`` whatever order they finish in."""
    from trajplan.parallel import run_tasks
    from trajplan.timing import progress

    index = {id(item): k for k, item in enumerate(items)}
    results: list[list[dict]] = [[] for _ in items]
    for item, rows, error in progress(run_tasks(func, items, workers=workers, scheduler=scheduler,
                                                name=lambda i: names[index[id(i)]], options=options),
                                      len(items), "cases"):
        k = index[id(item)]
        results[k] = rows if error is None else [
            {"case_id": names[k], "status": "failed", "error": f"worker failed: {type(error).__name__}: {error}"}]
    return results


def run_compare(output: str | Path, *, cohort_size: int = 30, seed: int = 0, spacings: tuple[float, ...] = (1.5,),
                from_batch: str | Path | None = None, options: CompareOptions = CompareOptions(),
                workers: int = 1, scheduler: str | None = None) -> dict:
    """Run the comparison and write ``comparison.csv``, ``comparison.md`` and ``figures/``.

    Returns
    -------
    dict
        ``{"output", "cases", "rows", "failed_cases", "seconds"}``.
    """
    from trajplan.compare_report import write_comparison_markdown

    start = time.perf_counter()
    out = Path(output)
    if from_batch is not None:
        folders = batch_case_folders(from_batch)
        items, names, func = [str(f) for f in folders], [f.name for f in folders], batch_case_rows
        source = {"kind": "batch", "path_name": Path(from_batch).name, "cases": len(items)}
    else:
        from sample_ct.cohort import cohort

        if any(not 0.5 <= s <= 3.0 for s in spacings):
            raise InputError(f"--spacing must be 0.5-3 mm, got {spacings}")
        params = cohort(cohort_size, seed, spacings)
        items, names, func = params, [f"phantom-{p.seed}" for p in params], phantom_case_rows
        source = {"kind": "phantom", "cases": len(items), "seed": seed, "spacings_mm": list(spacings)}
    rows = [row for case_rows in _collect(func, items, options, workers, scheduler, names) for row in case_rows]
    out.mkdir(parents=True, exist_ok=True)
    write_text(out / "comparison.csv", rows_csv(rows))
    write_comparison_markdown(out, rows, source=source, options=options)
    failed = sorted({r["case_id"] for r in rows if r["status"] == "failed"})
    return {"output": str(out), "cases": len(items), "rows": len(rows), "failed_cases": failed,
            "seconds": round(time.perf_counter() - start, 1)}
