"""Resumable batch planning of many archived scans, in-process or on dask.distributed.

Layout of the output folder::

    OUT/summary.csv          one row per case, rewritten atomically after every case
    OUT/<case_id>/           one finished case: plan folder + case.json (status, checksum, version)
    OUT/.partial/            cases being worked on; never counted as done, cleared on the next run
    OUT/.trajplan-batch.lock one run per output folder (see :mod:`trajplan.batch_lock`)

A second run on the same folder refuses at once while the first one works. A case
folder appears under its final name only by a rename after ``case.json`` is written,
so killing the run at any moment (SIGKILL included) leaves nothing that a rerun would
take as done. A rerun skips a case whose ``case.json`` says done for the
same input checksum and software version, redoes failed cases with ``retry_failed``,
and always redoes a case that failed only because its output could not be written.

Parallelism is never home-made: one worker runs in this process; more use a
``dask.distributed.LocalCluster`` of processes (one CT in memory per worker), and
``scheduler`` sends the same tasks to an existing dask cluster.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import re
import shutil
import time
import uuid
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path

from trajplan import __version__
from trajplan.batch_lock import batch_lock
from trajplan.errors import InputError, OutputError
from trajplan.io.atomic import write_json, write_text
from trajplan.io.checksum import sha256_of
from trajplan.io.faults import writing
from trajplan.io.files import is_volume_file
from trajplan.io.plan_folder import CASE, LABELS
from trajplan.io.staged import folder_identity, replace_folder
from trajplan.planning.defaults import DEFAULT_MARGINS_MM, min_clearance_by_class
from trajplan.timing import progress

log = logging.getLogger("trajplan")

PARTIAL_DIR = ".partial"
STAGES = ("reading CT", "segmentation", "reading labels", "planning", "writing plan", "rendering")
SUMMARY_COLUMNS = (
    ["case_id", "input", "status", "error", "needles", "safe_needles", "best_score",
     "best_technique", "breach_probability"]
    + [f"min_clearance_{g}_mm" for g in DEFAULT_MARGINS_MM]
    + [f"time_{re.sub(r'[^a-z0-9]+', '_', s.lower())}_s" for s in STAGES]
    + ["time_total_s", "input_sha256", "software_version", "outcome"]
)
MANIFEST_OPTIONS = ("technique", "gauge", "needles", "side", "sacrum_mask", "labels", "series")


@dataclass(frozen=True)
class Case:
    """One input of a batch: its path, anonymous id, checksum and per-case options."""

    path: Path
    label: str            # path relative to the batch input (shown in summary.csv)
    sha256: str
    options: dict = field(default_factory=dict)

    @property
    def case_id(self) -> str:
        """Anonymous id: a hash of the input content (never a name from the input)."""
        return f"case-{self.sha256[:12]}"


@dataclass(frozen=True)
class BatchOptions:
    """What ``trajplan batch`` was asked to do."""

    input: str | Path
    output: str | Path
    plan: object                       # trajplan.planning.PlanOptions
    workers: int = 1
    scheduler: str | None = None
    retry_failed: bool = False
    keep_names: bool = False
    report: bool = True


# ------------------------------------------------------------------ discovery
def _is_dicom_file(path: Path) -> bool:
    if path.suffix.lower() == ".dcm":
        return True
    try:
        with open(path, "rb") as handle:
            handle.seek(128)
            return handle.read(4) == b"DICM"
    except OSError:
        return False


def discover_inputs(root: str | Path) -> list[Path]:
    """Cases under ``root``: DICOM series folders at any depth and NIfTI/NRRD/MHA files.

    A folder counts as one DICOM case when it directly holds DICOM files.
    """
    root = Path(root)
    found: list[Path] = []
    for folder in sorted([root, *(p for p in root.rglob("*") if p.is_dir())]):
        if folder.name.startswith("."):
            continue
        files = sorted(p for p in folder.iterdir() if p.is_file() and not p.name.startswith("."))
        found.extend(p for p in files if is_volume_file(p))
        if any(_is_dicom_file(p) for p in files if not is_volume_file(p)):
            found.append(folder)
    return found


def read_manifest(path: str | Path) -> list[tuple[Path, dict]]:
    """Rows of a CSV manifest: ``path`` (required) and optional per-case options.

    Options: technique, gauge, needles, side, sacrum_mask, labels, series. Relative
    paths are taken relative to the manifest's folder.
    """
    path = Path(path)
    with open(path, newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        if not reader.fieldnames or "path" not in reader.fieldnames:
            raise InputError(f"{path.name}: a batch manifest needs a 'path' column")
        unknown = set(reader.fieldnames) - {"path", *MANIFEST_OPTIONS}
        if unknown:
            raise InputError(f"{path.name}: unknown manifest columns {sorted(unknown)} "
                             f"(known: path, {', '.join(MANIFEST_OPTIONS)})")
        rows = []
        for row in reader:
            case_path = (path.parent / row["path"]).resolve() if row["path"] else None
            if case_path is None:
                raise InputError(f"{path.name}: a row has an empty path")
            options = {k: v for k, v in row.items() if k != "path" and v not in (None, "")}
            for key in ("sacrum_mask", "labels"):
                if key in options:
                    options[key] = str((path.parent / options[key]).resolve())
            rows.append((case_path, options))
    return rows


def collect_cases(input_: str | Path) -> list[Case]:
    """All cases of a batch input (a folder of cases or a CSV manifest), with checksums."""
    input_ = Path(input_)
    if not input_.exists():
        raise InputError(f"{input_}: no such file or folder")
    if input_.is_file():
        if input_.suffix.lower() != ".csv":
            raise InputError(f"{input_}: a batch input is a folder of cases or a CSV manifest")
        entries = read_manifest(input_)
        base = input_.parent
    else:
        entries = [(p, {}) for p in discover_inputs(input_)]
        base = input_
    if not entries:
        raise InputError(f"{input_}: no cases found (DICOM series folders or NIfTI/NRRD/MHA files)")
    cases = []
    for path, options in entries:
        try:
            label = str(path.resolve().relative_to(base.resolve()))
        except ValueError:
            label = str(path)
        checksum = sha256_of(path) if path.exists() else "missing"
        cases.append(Case(path=path, label=label, sha256=checksum, options=options))
    return cases


# ------------------------------------------------------------------ one case
def case_folder_name(case: Case, keep_names: bool) -> str:
    """Folder name of a case: its anonymous id, or with ``keep_names`` its input name."""
    if not keep_names:
        return case.case_id
    name = re.sub(r"[^A-Za-z0-9._-]+", "_", case.label).strip("._") or case.case_id
    return name


def _plan_options_for(case: Case, base_options: object) -> tuple[object, dict]:
    """PlanOptions with the manifest's per-case overrides, and the run_plan keyword arguments."""
    overrides = {}
    for key in ("technique", "side"):
        if key in case.options:
            overrides[key] = case.options[key]
    for key in ("gauge", "needles"):
        if key in case.options:
            try:
                overrides[key] = int(case.options[key])
            except ValueError:
                raise InputError(f"manifest: {key} must be a whole number, got {case.options[key]!r}") from None
    kwargs = {
        "series_uid": case.options.get("series"),
        "sacrum_mask_path": case.options.get("sacrum_mask"),
    }
    if "labels" in case.options:          # the rule of --labels: a folder holding labels.nii.gz gives that file
        labels = Path(case.options["labels"])
        if labels.is_dir() and (labels / LABELS).is_file():
            kwargs["labels_path"] = str(labels / LABELS)
        else:
            kwargs["ts_labels_path" if labels.is_dir() else "labels_path"] = case.options["labels"]
    return replace(base_options, **overrides), kwargs


def run_case(case: Case, out_root: str | Path, plan_options: object, *, keep_names: bool,
             report: bool) -> dict:
    """Plan one case into its own folder; return its summary row. Never raises for bad input.

    The case is built in ``OUT/.partial/`` and renamed into place only after its
    ``case.json`` is written. A case whose output cannot be written (full disk, ...)
    fails with that reason and ``output_fault`` true, so that the next run redoes it;
    when even its ``case.json`` cannot be written, nothing of it is left on disk.
    """
    from trajplan.pipeline import run_plan
    from trajplan.timing import StageTimer

    out_root = Path(out_root)
    final = out_root / case_folder_name(case, keep_names)
    work = out_root / PARTIAL_DIR / f"{final.name}.{uuid.uuid4().hex[:8]}"
    timer = StageTimer(show_progress=False)
    start = time.perf_counter()
    row = {"case_id": case.case_id, "input": case.label, "input_sha256": case.sha256,
           "software_version": __version__}
    try:
        options, kwargs = _plan_options_for(case, plan_options)
        summary = run_plan(case.path, work, options, report=report, timer=timer, **kwargs)
        row.update(status="done", error="", **_summary_columns(summary))
    except OutputError as exc:
        row.update(status="failed", error=str(exc.moved(work, final)), output_fault=True)
    except InputError as exc:
        row.update(status="failed", error=str(exc))
    except Exception as exc:  # noqa: BLE001 - one case's bug must not stop the batch
        log.exception("case %s: internal error", case.case_id)
        row.update(status="failed", error=f"internal error: {type(exc).__name__}: {exc}")
    row.update(_timing_columns(timer.seconds, time.perf_counter() - start))
    try:
        with writing(work):
            work.mkdir(parents=True, exist_ok=True)
        write_json(work / CASE, row)
        with writing(final):
            replace_folder(work, final)
    except OutputError as exc:
        shutil.rmtree(work, ignore_errors=True)
        if row["status"] == "done":
            row.update(status="failed", error=str(exc.moved(work, final)), output_fault=True)
    return row


def _summary_columns(summary: dict) -> dict:
    clear = summary.get("min_clearance_mm") or {}
    out = {
        "outcome": summary.get("outcome"),
        "needles": summary.get("needles"),
        "safe_needles": summary.get("safe_needles"),
        "best_score": summary.get("best_score"),
        "best_technique": summary.get("best_technique"),
        "breach_probability": summary.get("breach_probability"),
    }
    for group, value in min_clearance_by_class([clear]).items():
        out[f"min_clearance_{group}_mm"] = value
    return out


def _timing_columns(seconds: dict[str, float], total: float) -> dict:
    out = {f"time_{re.sub(r'[^a-z0-9]+', '_', s.lower())}_s": round(seconds[s], 2)
           for s in STAGES if s in seconds}
    out["time_total_s"] = round(total, 2)
    return out


# ------------------------------------------------------------------ summary
def read_case_record(folder: Path) -> dict | None:
    """The ``case.json`` of a finished case folder, or None when absent or unreadable."""
    try:
        return json.loads((folder / CASE).read_text())
    except (OSError, ValueError):
        return None


def write_summary(out_root: Path, rows: Iterable[dict]) -> None:
    """Atomically write ``summary.csv`` (one row per case, fixed columns)."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=SUMMARY_COLUMNS, extrasaction="ignore",
                            lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: ("" if row.get(k) is None else row.get(k)) for k in SUMMARY_COLUMNS})
    write_text(out_root / "summary.csv", buffer.getvalue())


# ------------------------------------------------------------------ the batch
def _previous(out_root: Path, case: Case, keep_names: bool) -> dict | None:
    record = read_case_record(out_root / case_folder_name(case, keep_names))
    if record is None or record.get("input_sha256") != case.sha256:
        return None
    if record.get("software_version") != __version__:
        return None
    if record.get("output_fault"):   # failed only because its output could not be written: redo
        return None
    return record


def _execute(todo: list[Case], options: BatchOptions, out_root: Path) -> Iterator[tuple[Case, dict]]:
    """Run cases, yielding (case, summary row) as each finishes (in-process or on dask)."""
    from trajplan.parallel import run_tasks

    for case, row, error in run_tasks(run_case, todo, workers=options.workers, scheduler=options.scheduler,
                                      name=lambda c: c.case_id, out_root=str(out_root),
                                      plan_options=options.plan, keep_names=options.keep_names,
                                      report=options.report):
        if error is not None:
            row = {"case_id": case.case_id, "input": case.label, "status": "failed",
                   "error": f"worker failed: {type(error).__name__}: {error}",
                   "input_sha256": case.sha256, "software_version": __version__}
        yield case, row


def run_batch(options: BatchOptions) -> dict:
    """Plan every case of a batch input; resumable; returns counts by status.

    Returns
    -------
    dict
        ``{"output", "cases", "done", "failed", "skipped", "ran"}``.
    """
    if options.workers < 1:
        raise InputError(f"--workers must be at least 1, got {options.workers}")
    out_root = Path(options.output)
    if out_root.exists() and not out_root.is_dir():
        raise OutputError("it is a file, not a folder", out_root)
    with writing(out_root):
        out_root.mkdir(parents=True, exist_ok=True)
    with batch_lock(out_root):
        rows, ran = _run_locked(options, out_root)
    statuses = [r["status"] for r in rows.values()]
    return {"output": str(out_root), "cases": len(rows), "ran": ran,
            **{s: statuses.count(s) for s in ("done", "failed", "skipped")}}


def _run_locked(options: BatchOptions, out_root: Path) -> tuple[dict[str, dict], int]:
    """The batch proper, under the output folder's lock: rows by case folder, and cases run.

    Raises
    ------
    OutputError
        When ``summary.csv`` cannot be written, or ``out_root`` vanished: the run stops;
        what finished is kept.
    """
    shutil.rmtree(out_root / PARTIAL_DIR, ignore_errors=True)   # left by a killed run: the lock is ours
    cases = collect_cases(options.input)

    rows: dict[str, dict] = {}
    todo: list[Case] = []
    seen: set[str] = set()
    for case in cases:
        key = case_folder_name(case, options.keep_names)
        if key in seen:
            rows[f"{key}#{case.label}"] = {
                "case_id": case.case_id, "input": case.label, "status": "skipped",
                "error": "same case folder as another input (same content, or same name with --keep-names)",
                "input_sha256": case.sha256, "software_version": __version__}
            continue
        seen.add(key)
        previous = _previous(out_root, case, options.keep_names)
        if previous and (previous["status"] == "done" or not options.retry_failed):
            rows[key] = {**previous, "input": case.label}
        else:
            rows[key] = {"case_id": case.case_id, "input": case.label, "status": "pending",
                         "input_sha256": case.sha256, "software_version": __version__}
            todo.append(case)
    write_summary(out_root, rows.values())
    log.info("%d cases, %d to run", len(cases), len(todo))

    identity = folder_identity(out_root)
    for case, row in progress(_execute(todo, options, out_root), len(todo), "cases"):
        if folder_identity(out_root) != identity:   # removed (and re-made by a case) while running
            raise OutputError("the folder vanished", out_root)
        rows[case_folder_name(case, options.keep_names)] = row
        write_summary(out_root, rows.values())
    shutil.rmtree(out_root / PARTIAL_DIR, ignore_errors=True)

    return rows, len(todo)
