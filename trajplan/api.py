"""trajplan as a library: segment a CT, plan needles, score a drawn path, write and render, on objects.

Every function here takes and returns objects: a CT and a label map are
:class:`~trajplan.volume.Volume`\\ s, a segmentation a :class:`~segmentation.pipeline.Segmentation`,
a plan a :class:`Plan` and a scored path an :class:`Evaluation`. The command line's jobs
(:mod:`trajplan.pipeline`) read their inputs, call these same functions and write with them, so a
plan made here and written by :func:`write_plan_folder` holds the files ``trajplan plan`` writes.
The names are exported from :mod:`trajplan` (``docs/api.md`` lists the public ones).

Bad input raises :class:`~trajplan.errors.InputError` (or a subclass) with a one-line message;
an output that cannot be written raises :class:`~trajplan.errors.OutputError`.
"""

from __future__ import annotations

import copy
import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from trajplan import __version__
from trajplan import labels as lt
from trajplan.errors import InputError
from trajplan.io.checksum import sha256_of
from trajplan.io.files import read_volume_file, write_hu_file
from trajplan.io.plan_folder import CARD, CT_ROI, EVALUATION, EVALUATION_MARKUPS, LABELS, SCENE_PNG
from trajplan.io.staged import staged_folder
from trajplan.needle import Needle, PlacedNeedle, Verdict, needle_from_json
from trajplan.planning.options import PlanOptions
from trajplan.timing import StageTimer
from trajplan.volume import Volume

if TYPE_CHECKING:
    from segmentation.pipeline import Segmentation


# ------------------------------------------------------------------ checks of what the caller gives
def _check_volume(value: object, name: str) -> Volume:
    """``value`` when it is a :class:`Volume`, else an InputError naming ``name`` and where to get one."""
    if not isinstance(value, Volume):
        where = "trajplan.read_ct" if name == "ct" else "trajplan.read_labels or trajplan.segment"
        raise InputError(f"{name} must be a trajplan Volume (from {where}), got {type(value).__name__}")
    return value


def _check_options(options: PlanOptions | None) -> PlanOptions:
    """``options``, or the default :class:`PlanOptions` for None."""
    if options is None:
        return PlanOptions()
    if not isinstance(options, PlanOptions):
        raise InputError(f"options must be a trajplan PlanOptions, got {type(options).__name__}")
    return options


def _point(value: object, name: str) -> np.ndarray:
    """Three finite numbers (LPS mm) as an array, else an InputError naming ``name``."""
    try:
        point = np.asarray(value, dtype=float).reshape(-1)
    except (TypeError, ValueError):
        point = np.empty(0)
    if point.shape != (3,) or not np.all(np.isfinite(point)):
        raise InputError(f"{name} must be three finite numbers (LPS mm), got {value!r}")
    return point


def check_labels(labels: Volume, ct: Volume, name: str = "labels") -> Volume:
    """A trajplan label map on the CT's grid, as ``uint8``.

    Parameters
    ----------
    labels : Volume
        Label values from :data:`trajplan.labels.LABELS` (0 background).
    ct : Volume
        The CT the labels belong to.
    name : str
        What to call the labels in a message (a file name).

    Raises
    ------
    InputError
        If the geometry differs from the CT's, or a value is not in the label table.
    """
    _check_grid(labels, ct, name)
    known = {label.value for label in lt.LABELS} | {0}
    unknown = sorted(set(int(v) for v in np.unique(labels.array)) - known)
    if unknown:
        raise InputError(f"{name}: label values {unknown} are not in the label table")
    return labels.with_array(labels.array.astype(np.uint8))


def _check_grid(labels: Volume, ct: Volume, name: str) -> None:
    """An InputError naming ``name`` unless ``labels`` is a Volume on the CT's grid."""
    _check_volume(labels, name)
    if not labels.same_geometry(ct, tol_mm=1e-2):
        raise InputError(
            f"{name}: labels do not match the CT geometry "
            f"(labels {labels.shape} at {np.round(labels.spacing, 3).tolist()} mm, "
            f"CT {ct.shape} at {np.round(ct.spacing, 3).tolist()} mm, "
            f"origins {np.round(labels.origin, 1).tolist()} vs {np.round(ct.origin, 1).tolist()})"
        )


# ------------------------------------------------------------------ reading
def read_labels(path: str | Path, ct: Volume) -> Volume:
    """Read a trajplan label map and check it lies on the CT's grid.

    Parameters
    ----------
    path : path
        A label map file (``labels.nii.gz`` of an earlier run, or a corrected one), or a plan or
        segmentation folder holding one.
    ct : Volume
        The CT it belongs to (:func:`trajplan.read_ct`).

    Returns
    -------
    Volume
        The label map (``uint8``, values of :data:`trajplan.LABELS`).

    Raises
    ------
    InputError
        A missing or unreadable file, labels off the CT's grid, values not in the label table.

    Examples
    --------
    >>> ct = trajplan.read_ct("case/ct.nii.gz")                          # doctest: +SKIP
    >>> labels = trajplan.read_labels("case_plan", ct)                   # doctest: +SKIP
    """
    path = Path(path)
    if path.is_dir():
        path = path / LABELS
    return check_labels(read_volume_file(path), _check_volume(ct, "ct"), name=path.name)


def input_json(path: str | Path | None, ct: Volume) -> dict:
    """What ``plan.json`` records of the input: checksum, format and geometry, never a name.

    Without ``path`` (a CT made in memory) the checksum is that of the voxels and their geometry,
    and the format ``volume``.
    """
    if path is None:
        digest = hashlib.sha256(np.ascontiguousarray(ct.array).tobytes())
        for part in (ct.spacing, ct.origin, ct.direction):
            digest.update(np.ascontiguousarray(part, dtype=float).tobytes())
        return {"sha256": digest.hexdigest(), "format": "volume", "geometry": geometry_json(ct)}
    path = Path(path)
    return {
        "sha256": sha256_of(path),
        "format": "dicom" if path.is_dir() else "".join(path.suffixes).lstrip(".").lower(),
        "geometry": geometry_json(ct),
    }


def geometry_json(volume: Volume) -> dict:
    """The geometry block of ``plan.json`` / ``segmentation.json`` (shape, spacing, origin, direction)."""
    return {
        "shape": list(volume.shape),
        "spacing": [round(float(s), 6) for s in volume.spacing],
        "origin": [round(float(o), 4) for o in volume.origin],
        "direction": [round(float(d), 6) for d in volume.direction.reshape(-1)],
    }


def case_json(sha256: str, case_name: str | None) -> dict:
    """The ``case`` block of ``plan.json``: the case's name (given, else its anonymous id) and the
    UTC time of planning."""
    name = " ".join(str(case_name).split()) if case_name else ""
    return {"name": name or f"case-{sha256[:12]}", "named_by": "option" if name else "checksum",
            "planned_utc": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")}


def patient_position(source: str | Path | None, series_uid: str | None, given: str | None) -> tuple[str, str]:
    """How the patient lies and where that came from: (``prone``|``supine``, ``option``|``dicom``|``assumed``).

    ``given`` wins; else the PatientPosition of the DICOM series at ``source``; else prone.
    """
    if given is not None:
        if given not in ("prone", "supine"):
            raise InputError(f"unknown patient position {given!r} (prone or supine)")
        return given, "option"
    path = Path(source) if source is not None else None
    folder = None if path is None else path if path.is_dir() else path.parent if path.suffix.lower() == ".dcm" else None
    if folder is not None:
        from trajplan.io.dicom import series_patient_position

        found = series_patient_position(folder, series_uid=series_uid)
        if found is not None:
            return found, "dicom"
    return "prone", "assumed"


# ------------------------------------------------------------------ segmentation
def segment(ct: Volume, *, sacrum_mask: Volume | None = None,
            totalsegmentator: str | Path | None = None) -> Segmentation:
    """Label the sacrum and its critical parts in a CT.

    Parameters
    ----------
    ct : Volume
        CT in Hounsfield units, any orientation (:func:`trajplan.read_ct`).
    sacrum_mask : Volume, optional
        A binary sacrum mask (any grid overlapping the CT) replacing the bone/sacrum step.
    totalsegmentator : path, optional
        TotalSegmentator output (a folder with ``sacrum.nii.gz``, ``hip_left.nii.gz``, ... or its
        multilabel file) whose masks the segmentation uses.

    Returns
    -------
    Segmentation
        ``labels`` (a label map :class:`Volume` on the CT's grid, values of :data:`trajplan.LABELS`)
        and ``report`` (the content of ``segmentation.json``).

    Raises
    ------
    NoSacrumError
        When no sacrum is in the field of view (the message says what was found).
    InputError
        When ``ct`` or ``sacrum_mask`` is not a Volume, or the TotalSegmentator output is unusable.

    Examples
    --------
    >>> seg = trajplan.segment(ct)                                       # doctest: +SKIP
    >>> seg.report["partial"], seg.labels.shape                          # doctest: +SKIP
    (False, (180, 150, 120))
    """
    from segmentation.pipeline import segment as segment_ct

    _check_volume(ct, "ct")
    if sacrum_mask is not None:
        _check_volume(sacrum_mask, "sacrum_mask")
    external = None
    if totalsegmentator is not None:
        from segmentation.external import load_totalsegmentator

        external = load_totalsegmentator(totalsegmentator, ct)
    return segment_ct(ct, sacrum_mask=sacrum_mask, external_labels=external)


def _segmentation_of(ct: Volume, labels: Volume | Segmentation | None, timer: StageTimer,
                     stage: str = "segmentation") -> Segmentation:
    """The segmentation to plan on: ``labels`` checked (a bare label map gets a short report),
    or the CT segmented here (timed as ``stage``)."""
    from segmentation.pipeline import Segmentation

    if labels is None:
        with timer.stage(stage):
            return segment(ct)
    if isinstance(labels, Segmentation):
        _check_grid(labels.labels, ct, "segmentation labels")
        return labels
    return Segmentation(labels=check_labels(labels, ct), report={"source": "labels given", "partial": False})


def write_segmentation_folder(segmentation: Segmentation, out_dir: str | Path) -> Path:
    """Write a segmentation folder, as ``trajplan segment`` does.

    ``labels.nii.gz``, ``labels.seg.nrrd`` (the same for 3D Slicer), ``labels.json``,
    ``sacrum.nii.gz`` and ``segmentation.json``; the folder is complete or absent (built beside its
    place and renamed into it), and an earlier trajplan output there is replaced.

    Returns
    -------
    Path
        ``out_dir``.

    Raises
    ------
    InputError
        ``segmentation`` is not a Segmentation; ``out_dir`` is a non-empty folder that holds no
        trajplan output.
    OutputError
        The folder cannot be written (full disk, read-only, permission, a file in the way).

    Examples
    --------
    >>> trajplan.write_segmentation_folder(trajplan.segment(ct), "case_seg")   # doctest: +SKIP
    PosixPath('case_seg')
    """
    from segmentation.pipeline import Segmentation, write_segmentation

    if not isinstance(segmentation, Segmentation):
        raise InputError(f"segmentation must be a trajplan Segmentation (from trajplan.segment), "
                         f"got {type(segmentation).__name__}")
    out = Path(out_dir)
    with staged_folder(out) as work:
        write_segmentation(segmentation, work)
    return out


# ------------------------------------------------------------------ planning
@dataclass(frozen=True, eq=False)
class Plan:
    """A needle plan: the content of ``plan.json`` with the CT and segmentation it was made on.

    Made by :func:`plan`; written by :func:`write_plan_folder`, drawn by :func:`render_plan`.

    Attributes
    ----------
    ct : Volume
        The CT planned on (HU).
    segmentation : Segmentation
        The label map planned on and its report.
    options : PlanOptions
        What was planned.
    """

    _document: dict = field(repr=False)
    ct: Volume = field(repr=False)
    segmentation: Segmentation = field(repr=False)
    options: PlanOptions = field(repr=False)

    def __repr__(self) -> str:
        return (f"Plan(case={self.case_name!r}, outcome={self.outcome!r}, needles={len(self.needles)}, "
                f"warnings={len(self.warnings)})")

    def to_json(self) -> dict:
        """The ``plan.json`` dict ``trajplan plan`` writes for this plan (a copy; ``docs/plan_json.md``)."""
        return copy.deepcopy(self._document)

    @property
    def labels(self) -> Volume:
        """The label map planned on."""
        return self.segmentation.labels

    @property
    def outcome(self) -> str:
        """``planned`` (at least one safe needle) or ``no_safe_path``."""
        return self._document["outcome"]

    @property
    def needles(self) -> tuple[PlacedNeedle, ...]:
        """The planned needles, best first, with their rank and target coverage (none when no path is safe)."""
        return tuple(PlacedNeedle(needle_from_json(n), rank=n["rank"], target_coverage=n.get("target_coverage"))
                     for n in self._document["needles"])

    @property
    def alternatives(self) -> tuple[Needle, ...]:
        """The best candidates of each technique and side, safe or not (``plan.json`` ``alternatives``)."""
        return tuple(needle_from_json(n) for n in self._document["alternatives"])

    @property
    def warnings(self) -> tuple[str, ...]:
        """What the operator must know: sides or techniques without a safe path, a partial segmentation, ..."""
        return tuple(self._document.get("warnings", ()))

    @property
    def margins_mm(self) -> dict[str, float]:
        """The margin (mm) every critical structure was held to."""
        return dict(self._document["parameters"]["margins_mm"])

    @property
    def case_name(self) -> str:
        """The case's name (given, else ``case-`` and 12 hex digits of the input checksum)."""
        return self._document["case"]["name"]


def plan(ct: Volume, labels: Volume | Segmentation | None = None, options: PlanOptions | None = None, *,
         source: str | Path | None = None, series_uid: str | None = None, case_name: str | None = None,
         position: str | None = None, timer: StageTimer | None = None) -> Plan:
    """Plan ranked needle paths on a CT, with procedure cards, as ``trajplan plan`` does.

    Parameters
    ----------
    ct : Volume
        CT in Hounsfield units (:func:`trajplan.read_ct`).
    labels : Volume or Segmentation, optional
        The label map to plan on (checked against the CT's grid), or a :func:`segment` result;
        without it the CT is segmented here.
    options : PlanOptions, optional
        Techniques, gauge, number of needles, sides, margins, ... (defaults: ``PlanOptions()``).
    source : path, optional
        The file or DICOM folder ``ct`` was read from: ``plan.json`` ``input`` then records its
        checksum and format (else those of the voxels, format ``volume``), and a DICOM series'
        PatientPosition sets ``position`` when it is not given.
    series_uid : str, optional
        The series of ``source`` when its folder holds several.
    case_name : str, optional
        The case's name in ``plan.json`` and the report (default: its anonymous id).
    position : {"prone", "supine"}, optional
        How the patient lies, for the gantry tilt's direction on the cards (default: from the
        DICOM ``source``, else prone).
    timer : trajplan.timing.StageTimer, optional
        Records the stage times (``plan.json`` ``timings_s``); the command line passes its own.

    Returns
    -------
    Plan
        No safe path is a result, not an error: ``outcome`` is then ``no_safe_path`` and the
        closest unsafe candidates are the ``alternatives``.

    Raises
    ------
    InputError
        ``ct`` or ``labels`` not a Volume, labels off the CT's grid or with unknown values, options
        that are not a PlanOptions, an unknown position; :class:`~trajplan.errors.NoSacrumError`
        when segmenting finds no sacrum.

    Examples
    --------
    >>> ct = trajplan.read_ct("case/ct.nii.gz")                          # doctest: +SKIP
    >>> p = trajplan.plan(ct, options=trajplan.PlanOptions(needles=1), source="case/ct.nii.gz")  # doctest: +SKIP
    >>> p.outcome, p.needles[0].needle.verdict                           # doctest: +SKIP
    ('planned', <Verdict.SAFE: 'safe'>)
    """
    from trajplan.card import add_cards
    from trajplan.planning import plan_needles

    _check_volume(ct, "ct")
    options = _check_options(options)
    timer = timer or StageTimer(show_progress=False)
    seg = _segmentation_of(ct, labels, timer)
    seg_report = seg.report
    with timer.stage("planning"):
        planned = plan_needles(seg.labels, options, ct=ct, lesion_uncertain=seg.lesion_uncertain,
                               implausible=seg.implausible_reason)
    document = {
        "schema": planned.get("schema", "trajplan/plan"),
        "schema_version": planned.get("schema_version", 1),
        "software": {"name": "trajplan", "version": __version__},
        "input": input_json(source, ct),
        **{k: v for k, v in planned.items() if k not in ("schema", "schema_version")},
    }
    document["segmentation"] = {
        "source": seg_report.get("source", "ct"),
        "partial": bool(seg_report.get("partial", False)),
        "implausible": seg.implausible_reason is not None,
        "implausible_reason": seg.implausible_reason,
        "lesion_uncertain": seg.lesion_uncertain,
    }
    if seg_report.get("partial"):
        document.setdefault("warnings", []).append(
            f"segmentation is partial: {seg_report.get('partial_reason', 'see segmentation.json')}"
        )
    lesion = seg_report.get("structures", {}).get("lesion", {})
    lesion_quality = lesion.get("quality", "")
    if lesion_quality.startswith("not sought"):
        document.setdefault("warnings", []).append(f"lytic lesions {lesion_quality}; look for one on the images")
    elif seg.lesion_uncertain:
        document.setdefault("warnings", []).append(
            f"the lytic lesion found ({lesion.get('volume_ml', 0):.1f} ml; not targeted: no needle aims at it) "
            f"is {lesion_quality}")
    with timer.stage("procedure cards"):
        document["case"] = case_json(document["input"]["sha256"], case_name)
        lying, where = patient_position(source, series_uid, position)
        add_cards(document, ct, seg.labels, position=lying, position_source=where,
                  lengths_mm=options.needle_lengths_mm)
    document["timings_s"] = {k: round(v, 3) for k, v in timer.seconds.items()}
    return Plan(document, ct, seg, options)


def _check_plan(plan: object) -> None:
    """An InputError unless ``plan`` is a :class:`Plan`."""
    if not isinstance(plan, Plan):
        raise InputError(f"plan must be a trajplan Plan (from trajplan.plan), got {type(plan).__name__}")


def write_plan_folder(plan: Plan, out_dir: str | Path, *, report: bool = True,
                      timer: StageTimer | None = None) -> Path:
    """Write the plan folder ``trajplan plan`` writes.

    The segmentation's files (:func:`write_segmentation_folder`), ``plan.json``, ``plan.csv``,
    ``plan.mrk.json``, ``card.html``, ``load_plan.py``, ``ct_roi.nii.gz`` and ``scene.png``, and
    with ``report`` also ``report.html``, ``scene.html`` and the views (:func:`render_plan`). The
    folder is complete or absent (built beside its place and renamed into it), and an earlier
    trajplan output there is replaced.

    Parameters
    ----------
    plan : Plan
        From :func:`plan`.
    out_dir : path
        The folder to write.
    report : bool
        Also the report and its views (the slow part).
    timer : trajplan.timing.StageTimer, optional
        Records the stage times ``writing plan`` and ``rendering``.

    Returns
    -------
    Path
        ``out_dir``.

    Raises
    ------
    InputError
        ``plan`` is not a Plan; ``out_dir`` is a non-empty folder that holds no trajplan output.
    OutputError
        The folder cannot be written (full disk, read-only, permission, a file in the way).

    Examples
    --------
    >>> trajplan.write_plan_folder(p, "case_plan", report=False)         # doctest: +SKIP
    PosixPath('case_plan')
    """
    _check_plan(plan)
    out = Path(out_dir)
    with staged_folder(out) as work:
        write_plan_files(plan, work, report=report, timer=timer)
    return out


def write_plan_files(plan: Plan, folder: Path, *, report: bool = True, timer: StageTimer | None = None) -> None:
    """The files of :func:`write_plan_folder`, written into an existing (staging) ``folder``."""
    from segmentation.pipeline import write_segmentation
    from trajplan.plan_io import write_plan
    from trajplan.views.region import view_region
    from trajplan.views.scene3d import render_scene_png

    timer = timer or StageTimer(show_progress=False)
    document = plan.to_json()
    write_segmentation(plan.segmentation, folder)
    with timer.stage("writing plan"):
        write_plan(document, folder)
        ct_roi = view_region(plan.ct, plan.labels, document)
        write_hu_file(ct_roi, folder / CT_ROI)
    with timer.stage("rendering"):
        if report:
            from trajplan.report import write_report

            write_report(folder, labels=plan.labels, plan=document, ct=ct_roi)
        else:
            render_scene_png(plan.labels, document, folder / SCENE_PNG)


def render_plan(plan: Plan, out_dir: str | Path, *, window: str = "bone") -> Path:
    """Draw a plan: ``report.html`` with its 3D views, CT slices and fluoroscopy, ``scene.html``,
    ``scene.png`` and ``card.html``, into ``out_dir`` (made when missing; files there are overwritten).

    Parameters
    ----------
    plan : Plan
        From :func:`plan`.
    out_dir : path
        The folder to draw into (e.g. a plan folder written with ``report=False``).
    window : {"bone", "soft"}
        The CT slices' window: bone (W 2000 / L 400) or soft tissue (W 400 / L 40).

    Returns
    -------
    Path
        ``out_dir/report.html``.

    Raises
    ------
    InputError
        ``plan`` is not a Plan, or an unknown window.
    OutputError
        A picture or the report cannot be written.

    Examples
    --------
    >>> trajplan.render_plan(p, "case_views", window="soft")             # doctest: +SKIP
    PosixPath('case_views/report.html')
    """
    from trajplan.card_html import card_page
    from trajplan.io.atomic import write_text
    from trajplan.io.faults import writing
    from trajplan.report import write_report
    from trajplan.views.region import view_region

    _check_plan(plan)
    if window not in ("bone", "soft"):
        raise InputError(f"unknown window {window!r} (bone or soft)")
    out = Path(out_dir)
    document = plan.to_json()
    with writing(out):
        out.mkdir(parents=True, exist_ok=True)
        write_text(out / CARD, card_page(document))
        return write_report(out, labels=plan.labels, plan=document,
                            ct=view_region(plan.ct, plan.labels, document), window=window)


# ------------------------------------------------------------------ one drawn path
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


@dataclass(frozen=True, eq=False)
class Evaluation:
    """One scored hand-drawn path: the needle, how the line was read, and ``evaluation.json``.

    Made by :func:`evaluate_path`; written by :func:`write_evaluation_folder`.

    Attributes
    ----------
    drawn_line : Mapping
        The line as drawn (LPS and RAS), where it was scored from (``scored_from``: ``bone entry``
        or ``drawn entry``), and a ``note`` in words.
    ct : Volume
        The CT scored on.
    labels : Volume
        The label map scored on.
    """

    _document: dict = field(repr=False)
    drawn_line: Mapping = field(repr=False)
    ct: Volume = field(repr=False)
    labels: Volume = field(repr=False)

    def __repr__(self) -> str:
        return f"Evaluation(verdict={self.verdict.value!r}, reasons={list(self.reasons)!r})"

    @property
    def needle(self) -> Needle:
        """The scored needle (from its bone entry; skin entry and metrics as on its procedure card)."""
        return needle_from_json(self._document["needles"][0])

    @property
    def verdict(self) -> Verdict:
        """``safe``, ``marginal`` or ``unsafe``."""
        return Verdict(self._document["needles"][0]["verdict"])

    @property
    def safe(self) -> bool:
        """The verdict is not unsafe."""
        return self.verdict is not Verdict.UNSAFE

    @property
    def reasons(self) -> tuple[str, ...]:
        """Why it is not safe (``canal``, ``foramen_S1_left``, ``outside_bone``, ...); empty when safe."""
        return tuple(self._document["needles"][0]["reasons"])

    @property
    def clearance_mm(self) -> dict[str, float]:
        """Clearance (mm, from the needle's surface) of every critical structure."""
        return dict(self._document["needles"][0]["clearance_mm"])

    @property
    def margins_mm(self) -> dict[str, float]:
        """The margin (mm) every critical structure was held to."""
        return dict(self._document["parameters"]["margins_mm"])

    @property
    def card(self) -> dict:
        """The procedure card (skin entry, depths, needle length, CT slice and gantry tilt, C-arm angles)."""
        return copy.deepcopy(self._document["needles"][0]["card"])

    def to_json(self) -> dict:
        """What ``trajplan --json evaluate`` prints: the needle object of ``plan.json`` with its
        ``drawn_line`` block (a copy)."""
        return {**copy.deepcopy(self._document["needles"][0]), "drawn_line": copy.deepcopy(dict(self.drawn_line))}

    def evaluation_json(self, timings_s: Mapping[str, float] | None = None) -> dict:
        """The ``evaluation.json`` dict (a copy), with ``timings_s`` when given."""
        doc = copy.deepcopy(self._document)
        needle = doc.pop("needles")[0]
        doc.update(drawn_line=copy.deepcopy(dict(self.drawn_line)), needle=needle)
        if timings_s is not None:
            doc["timings_s"] = dict(timings_s)
        return doc


def evaluate_path(ct: Volume, labels: Volume | Segmentation | None, entry_lps: Sequence[float],
                  tip_lps: Sequence[float], *, gauge: int | None = None, technique: str | None = None,
                  options: PlanOptions | None = None, source: str | Path | None = None,
                  series_uid: str | None = None, case_name: str | None = None, position: str | None = None,
                  labels_source: str | None = None, coordinates: str = "lps",
                  timer: StageTimer | None = None) -> Evaluation:
    """Metrics, verdict, reasons, clearances and procedure card of one hand-drawn path, as ``trajplan evaluate``.

    A line drawn from the skin (its first point outside the sacral bone) is scored from where it
    first enters the sacral bone, as a planned needle is; the part outside the bone still gives
    the skin entry, the approach crossings and the card.

    Parameters
    ----------
    ct : Volume
        CT in Hounsfield units.
    labels : Volume or Segmentation or None
        The label map to score on (checked against the CT's grid), a :func:`segment` result, or
        None to segment the CT here.
    entry_lps, tip_lps : sequence of float
        Where the line starts (on the bone or the skin) and its tip, LPS mm.
    gauge : {11, 13}, optional
        The needle gauge (default: that of ``options``, 11).
    technique : {"short_axis", "long_axis"}, optional
        Score it as this technique (default: the long axis within 35 degrees of the sacrum's long
        axis, else the short axis).
    options : PlanOptions, optional
        Margins, score weights, placement error and Monte Carlo size, needle lengths, seed (the
        technique, side, needle count and separation do not apply).
    source, series_uid, case_name, position
        As for :func:`plan`.
    labels_source : str, optional
        How the labels were made, in words, recorded as ``evaluation.json`` ``labels`` (default:
        ``labels given``, ``segmentation given`` or ``segmented here``).
    coordinates : {"lps", "ras"}
        The system the caller's points were given in, recorded in ``drawn_line`` only: the points
        passed here are LPS.
    timer : trajplan.timing.StageTimer, optional
        Records the stage times.

    Returns
    -------
    Evaluation

    Raises
    ------
    InputError
        ``ct`` or ``labels`` not a Volume, labels off the CT's grid, points that are not three
        finite numbers or less than 1 mm apart, an unknown gauge, technique or position.

    Examples
    --------
    >>> ev = trajplan.evaluate_path(ct, labels, [7.0, 44.7, -109.5], [32.5, 5.5, 41.5])  # doctest: +SKIP
    >>> ev.verdict, ev.reasons, ev.clearance_mm["canal"]                 # doctest: +SKIP
    (<Verdict.SAFE: 'safe'>, (), 9.87)
    """
    from segmentation.pipeline import Segmentation
    from trajplan.card import add_cards
    from trajplan.planning import evaluate_path as score_path
    from trajplan.planning.defaults import resolve_margins
    from trajplan.planning.options import settings_json
    from trajplan.planning.plan import untrusted_warning

    _check_volume(ct, "ct")
    entry_given, tip = _point(entry_lps, "entry_lps"), _point(tip_lps, "tip_lps")
    options = _check_options(options)
    if gauge is not None:
        options = replace(options, gauge=gauge)
    if coordinates not in ("lps", "ras"):
        raise InputError(f"unknown coordinates {coordinates!r} (lps or ras)")
    timer = timer or StageTimer(show_progress=False)
    words = ("segmented here" if labels is None else
             "segmentation given" if isinstance(labels, Segmentation) else "labels given")
    seg = _segmentation_of(ct, labels, timer, stage="labels")
    label_map, implausible = seg.labels, seg.implausible_reason
    entry, block = drawn_line(label_map, entry_given, tip, coordinates)
    with timer.stage("evaluating"):
        needle = score_path(label_map, entry, tip, gauge=options.gauge, margins_mm=options.margins_mm, ct=ct,
                            technique=technique, mc_samples=options.mc_samples, seed=options.seed,
                            weights=options.weights, entry_sigma_mm=options.entry_sigma_mm,
                            angle_sigma_deg=options.angle_sigma_deg, implausible=implausible,
                            lesion_uncertain=seg.lesion_uncertain)
    source_json = input_json(source, ct)
    document = {
        "schema": "trajplan/evaluation", "schema_version": 1,
        "software": {"name": "trajplan", "version": __version__},
        "input": source_json,
        "case": case_json(source_json["sha256"], case_name),
        "labels": labels_source or words,
        "parameters": {"gauge": int(options.gauge), "margins_mm": resolve_margins(options.margins_mm)},
        "needles": [needle],
        "warnings": [untrusted_warning(implausible)] if implausible else [],
        "settings": settings_json(options),
    }
    with timer.stage("procedure card"):
        lying, where = patient_position(source, series_uid, position)
        add_cards(document, ct, label_map, position=lying, position_source=where,
                  lengths_mm=options.needle_lengths_mm)
    return Evaluation(document, block, ct, label_map)


def write_evaluation_folder(evaluation: Evaluation, out_dir: str | Path, *,
                            timer: StageTimer | None = None) -> list[str]:
    """Write the folder ``trajplan evaluate -o`` writes.

    ``evaluation.json``, ``card.html`` (the procedure card), ``evaluation.mrk.json`` (the scored
    line for 3D Slicer), ``ct_roi.nii.gz`` and ``slices/needle1_{plane,axial_entry,axial_mid,axial_tip}.png``;
    complete or absent, as a plan folder.

    Parameters
    ----------
    evaluation : Evaluation
        From :func:`evaluate_path`.
    out_dir : path
        The folder to write.
    timer : trajplan.timing.StageTimer, optional
        Its stage times so far, and those of writing, go into ``evaluation.json`` ``timings_s``.

    Returns
    -------
    list of str
        The files written, relative to ``out_dir``.

    Raises
    ------
    InputError
        ``evaluation`` is not an Evaluation; ``out_dir`` is a non-empty folder that holds no
        trajplan output.
    OutputError
        The folder cannot be written.

    Examples
    --------
    >>> trajplan.write_evaluation_folder(ev, "check")[0]                 # doctest: +SKIP
    'evaluation.json'
    """
    from trajplan.card_html import card_page
    from trajplan.io.atomic import write_json, write_text
    from trajplan.plan_io import slicer_markups
    from trajplan.views.region import view_region
    from trajplan.views.slices import render_needle_slices

    if not isinstance(evaluation, Evaluation):
        raise InputError(f"evaluation must be a trajplan Evaluation (from trajplan.evaluate_path), "
                         f"got {type(evaluation).__name__}")
    timer = timer or StageTimer(show_progress=False)
    document = copy.deepcopy(evaluation._document)
    ranked = dict(document["needles"][0], rank=1)
    page = dict(document, needles=[ranked], drawn_line=dict(evaluation.drawn_line))
    with staged_folder(Path(out_dir)) as work:
        with timer.stage("writing"):
            write_text(work / CARD, card_page(page))
            write_json(work / EVALUATION_MARKUPS, slicer_markups([ranked]))
            ct_roi = view_region(evaluation.ct, evaluation.labels, page)
            write_hu_file(ct_roi, work / CT_ROI)
        with timer.stage("rendering"):
            slices = render_needle_slices(ct_roi, evaluation.labels, page, work)
        write_json(work / EVALUATION, evaluation.evaluation_json({k: round(v, 3) for k, v in timer.seconds.items()}))
    return [EVALUATION, CARD, EVALUATION_MARKUPS, CT_ROI, *(str(p.relative_to(work)) for p in slices.values())]
