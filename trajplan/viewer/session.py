"""One viewer session: a plan folder loaded once, edited needles re-scored, the plan saved back.

``plan.json`` and the label map are read when the session starts; the CT around the sacrum
(``ct_roi.nii.gz``) is read, and the distance maps, landmarks, KD-trees and targets are built
(:func:`trajplan.planning.evaluate.path_context`), once, in background threads that start with the
session, so that the page is served and drawn meanwhile: what needs them (the CT sent to the
page, scoring, the oblique plane, saving) waits for them.
An edited needle is scored by :func:`trajplan.planning.evaluate.evaluate_in_context`, the code behind
``trajplan evaluate``, with the plan's margins and placement-error parameters.
"""

from __future__ import annotations

import gzip
import json
import math
import struct
import threading
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from trajplan import labels as lt
from trajplan.card import add_cards, body_midline_x, level_heights
from trajplan.errors import InputError
from trajplan.io.atomic import write_text
from trajplan.io.checksum import sha256_of
from trajplan.io.files import read_hu_file, read_volume_file
from trajplan.io.plan_folder import CT_ROI, LABELS, ORIGINAL_PLAN, PLAN
from trajplan.needle import Technique, needle_from_json
from trajplan.planning.defaults import (
    ANGLE_SIGMA_DEG,
    CRITICAL_STRUCTURES,
    ENTRY_SIGMA_MM,
    MC_SAMPLES,
    resolve_margins,
)
from trajplan.volume import Volume

if TYPE_CHECKING:       # imported where used: scoring, saving and DICOM take a second to import
    from trajplan.planning.evaluate import PathContext

TECHNIQUES = tuple(technique.value for technique in Technique)
GAUGES = (11, 13)
MAX_NEEDLES = 10
SURFACE_STEP_MM = 2.0      # the 3D view's surfaces are made on voxels about this far apart


@dataclass(frozen=True)
class NeedleSpec:
    """An operator's needle: end points (LPS mm), technique (None: chosen as ``evaluate`` does), gauge."""

    entry_lps: tuple[float, float, float]
    tip_lps: tuple[float, float, float]
    technique: str | None
    gauge: int

    @classmethod
    def from_json(cls, data: object) -> "NeedleSpec":
        """Check and convert ``{"entry_lps", "tip_lps", "technique", "gauge"}`` from a request.

        Raises
        ------
        InputError
            When a field is missing or out of range.
        """
        if not isinstance(data, dict):
            raise InputError("a needle must be an object with entry_lps, tip_lps, technique, gauge")
        points = [_point(data.get(key), key) for key in ("entry_lps", "tip_lps")]
        technique = data.get("technique")
        if technique in ("", "auto"):
            technique = None
        if technique is not None and technique not in TECHNIQUES:
            raise InputError(f"technique must be short_axis, long_axis or auto, got {technique!r}")
        gauge = data.get("gauge", 11)
        if gauge not in GAUGES or isinstance(gauge, bool):
            raise InputError(f"gauge must be 11 or 13, got {gauge!r}")
        return cls(points[0], points[1], technique, int(gauge))

    def matches(self, needle: dict) -> bool:
        """True when ``needle`` (a plan needle object) has these end points, gauge and technique."""
        return (list(self.entry_lps) == needle["entry_lps"] and list(self.tip_lps) == needle["tip_lps"]
                and self.gauge == needle["gauge"] and self.technique in (None, needle["technique"]))


@dataclass(frozen=True)
class _Scoring:
    """What scoring an edit needs, built once: the label map's context and, for the procedure card,
    the body's midline (None without a CT) and the sacral levels' heights."""

    context: PathContext
    midline_x: float | None
    levels: dict[str, float]


NIFTI_TYPES = {2: "u1", 4: "i2", 8: "i4", 16: "f4", 64: "f8", 256: "i1", 512: "u2", 768: "u4"}


def page_ct(path: Path) -> bytes:
    """The CT file ``path`` (NIfTI, gzipped or not) as the page reads it: uncompressed NIfTI-1 of
    16-bit integers (values rounded and clipped), half the bytes of float32 and no gzip to undo.

    A 3-D NIfTI-1 file of finite numbers (as ``trajplan plan`` writes ``ct_roi.nii.gz``) keeps its
    header, geometry included, and is decompressed once; any other file is read by
    :func:`trajplan.io.files.read_volume_file` (its checks included) and written by :func:`nifti_int16`.

    Raises
    ------
    InputError
        If the file cannot be read as a volume.
    """
    raw = path.read_bytes()
    raw = gzip.decompress(raw) if raw[:2] == b"\x1f\x8b" else raw
    endian = next((e for e in "<>" if len(raw) >= 352 and struct.unpack_from(e + "i", raw)[0] == 348), None)
    if endian is not None and raw[344:348] == b"n+1\0":
        dims = struct.unpack_from(endian + "8h", raw, 40)
        datatype = struct.unpack_from(endian + "h", raw, 70)[0]
        offset, slope, inter = struct.unpack_from(endian + "3f", raw, 108)
        count = int(np.prod(dims[1:4]))
        if (datatype in NIFTI_TYPES and dims[0] in (3, 4) and (dims[0] == 3 or dims[4] == 1) and min(dims[1:4]) > 0
                and 348 <= offset and int(offset) + count * np.dtype(NIFTI_TYPES[datatype]).itemsize <= len(raw)):
            values = np.frombuffer(raw, endian + NIFTI_TYPES[datatype], count, int(offset))
            values = values * slope + inter if slope not in (0, 1) or inter != 0 else values
            if values.dtype.kind != "f" or np.isfinite(values).all():
                header = bytearray(raw[:348]) + bytes(4)   # no extensions
                struct.pack_into(endian + "hh", header, 70, 4, 16)   # datatype NIFTI_TYPE_INT16, bits per voxel
                struct.pack_into(endian + "3f", header, 108, 352.0, 1.0, 0.0)   # vox_offset, scl_slope, scl_inter
                return bytes(header) + np.clip(np.rint(values), -32768, 32767).astype(endian + "i2").tobytes()
    return nifti_int16(read_volume_file(path))


def nifti_int16(volume: Volume) -> bytes:
    """``volume`` as an uncompressed NIfTI-1 file of 16-bit integers (values rounded and clipped),
    its geometry the sform (scanner space, RAS mm)."""
    header = bytearray(352)                       # the header and an empty extension flag
    ras = np.diag([-1.0, -1.0, 1.0, 1.0]) @ volume.affine
    struct.pack_into("<i", header, 0, 348)
    struct.pack_into("<8h", header, 40, 3, *volume.shape, 1, 1, 1, 1)
    struct.pack_into("<hh", header, 70, 4, 16)    # datatype NIFTI_TYPE_INT16, bits per voxel
    struct.pack_into("<8f", header, 76, 1.0, *volume.spacing, 0, 0, 0, 0)
    struct.pack_into("<3f", header, 108, 352.0, 1.0, 0.0)   # vox_offset, scl_slope, scl_inter
    header[123] = 2                               # xyzt_units: mm
    struct.pack_into("<hh", header, 252, 0, 1)    # qform_code unknown, sform_code scanner
    struct.pack_into("<12f", header, 280, *ras[:3].ravel())
    header[344:348] = b"n+1\0"
    voxels = np.clip(np.rint(volume.array), -32768, 32767).astype("<i2")
    return bytes(header) + voxels.tobytes(order="F")


def _in_background(steps: list[tuple[Future, Callable[[], object]]]) -> threading.Thread:
    """Run ``steps`` in turn in a new daemon thread, each filling its future with its result or with the
    exception it raised (raised again by ``Future.result`` in the thread that waits for it); a step whose
    future was cancelled before it began is skipped. Returns the thread."""
    def run() -> None:
        for future, step in steps:
            if not future.set_running_or_notify_cancel():
                continue
            try:
                future.set_result(step())
            except BaseException as exc:
                future.set_exception(exc)

    thread = threading.Thread(target=run, name="trajplan-viewer", daemon=True)
    thread.start()
    return thread


def _point(value: object, key: str) -> tuple[float, float, float]:
    if (not isinstance(value, list) or len(value) != 3
            or not all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
                       for v in value)):
        raise InputError(f"{key} must be three finite numbers [x, y, z] in LPS mm")
    return (round(float(value[0]), 2), round(float(value[1]), 2), round(float(value[2]), 2))


class ViewerSession:
    """A plan folder held in memory for the viewer.

    Parameters
    ----------
    plan_dir : Path
        A folder written by ``trajplan plan`` (``plan.json``, ``labels.nii.gz`` and, for the
        CT shown and the CT guard, ``ct_roi.nii.gz``).
    ct_path : Path, optional
        The CT the plan was made from (file or DICOM folder; checked against ``plan.json``'s
        checksum): edits are then scored on the whole scan, as ``trajplan evaluate`` does,
        instead of on the CT region of the folder (which may not reach the skin).
    series_uid : str, optional
        The series to read when ``ct_path`` is a DICOM folder holding several.

    Raises
    ------
    InputError
        If ``plan_dir`` is not a plan folder, or ``ct_path`` is not the plan's CT.
    """

    def __init__(self, plan_dir: str | Path, ct_path: str | Path | None = None, *,
                 series_uid: str | None = None) -> None:
        self.plan_dir = Path(plan_dir).resolve()
        if not (self.plan_dir / PLAN).is_file():
            raise InputError(f"{plan_dir}: not a plan folder (no plan.json)")
        if not (self.plan_dir / LABELS).is_file():
            raise InputError(f"{plan_dir}: not a plan folder (no {LABELS})")
        self._plan_text = (self.plan_dir / PLAN).read_text(encoding="utf-8")
        try:
            self.plan: dict = json.loads(self._plan_text)
            self.parameters: dict = self.plan["parameters"]
        except (ValueError, KeyError) as exc:
            raise InputError(f"{self.plan_dir / 'plan.json'}: not a trajplan plan ({exc})") from None
        # the CT for the page, then the CT region, made and read in a background thread from now on; then
        # (once the label map is read) the scoring context in another: each kept by its future with the
        # exception that its step raised, for whoever waits for it
        self.has_region: bool = (self.plan_dir / CT_ROI).is_file()
        self._region: Future[Volume | None] = Future()
        self._region_nifti: Future[bytes | None] = Future()
        self._scoring: Future[_Scoring] = Future()
        self._background: list[threading.Thread] = [_in_background([
            (self._region_nifti, lambda: page_ct(self.plan_dir / CT_ROI) if self.has_region else None),
            (self._region, lambda: read_hu_file(self.plan_dir / CT_ROI) if self.has_region else None),
        ])]
        try:
            self.labels: Volume = read_volume_file(self.plan_dir / LABELS)
            self._whole_ct: Volume | None = None if ct_path is None else self._plan_ct(ct_path, series_uid)
        except BaseException:
            self.close()
            raise
        self.present_labels: list[int] = [int(v) for v in np.unique(self.labels.array) if v != 0]
        self.margins_mm: dict[str, float] = resolve_margins(self.parameters.get("margins_mm"))
        self._surfaces: list[dict] | None = None
        self._surfaces_lock = threading.Lock()
        self._lock = threading.RLock()  # one scoring or saving at a time (a save scores its edits)
        self._background.append(_in_background([(self._scoring, self._build_scoring)]))

    def close(self) -> None:
        """Stop the background work: the steps not yet begun are cancelled and the one running is waited
        for (a thread still in native code when the interpreter exits can abort the process)."""
        for future in (self._region_nifti, self._region, self._scoring):
            future.cancel()
        for thread in self._background:
            thread.join()

    def _build_scoring(self) -> _Scoring:
        """The distance maps, landmarks, KD-trees and targets of the label map (the KD-trees and
        targets too, so that the first edit is as quick as the rest), and what every edit's
        procedure card needs of the CT and the labels; begun once the CT region is read (the
        page's first picture waits for the CT, not for scoring)."""
        self._region.exception()
        from trajplan.planning.evaluate import path_context

        context = path_context(self.labels, self.parameters.get("margins_mm"))
        for structure in CRITICAL_STRUCTURES:
            context.maps.tree(structure)
        for side in ("left", "right"):
            context.targets(side)
        return _Scoring(context, None if self.ct is None else body_midline_x(self.ct), level_heights(self.labels))

    @property
    def region(self) -> Volume | None:
        """The CT region of the folder (``ct_roi.nii.gz``; None without one), once read."""
        return self._region.result()

    @property
    def ct(self) -> Volume | None:
        """The CT that edits are scored on: the whole CT when given, else the CT region (or None)."""
        return self._whole_ct if self._whole_ct is not None else self.region

    @property
    def context(self) -> PathContext:
        """The scoring context of the label map, once built (what building it raised, else)."""
        return self._scoring.result().context

    def region_nifti(self) -> bytes | None:
        """The CT region as the page reads it (:func:`page_ct`; None without one), once made."""
        return self._region_nifti.result()

    def wait_until_prepared(self, timeout: float | None = None) -> bool:
        """Wait until scoring is ready (or has failed); False when ``timeout`` seconds passed first."""
        try:
            self._scoring.exception(timeout)
        except TimeoutError:
            return False
        return True

    def _plan_ct(self, ct_path: str | Path, series_uid: str | None) -> Volume:
        """The whole CT of the plan, refused when its checksum or grid is not the plan's."""
        expected = self.plan.get("input", {}).get("sha256")
        if expected is not None and sha256_of(ct_path) != expected:
            raise InputError(f"{ct_path}: not the CT this plan was made from (its SHA-256 differs from "
                             "the one in plan.json)")
        from trajplan.io.reader import read_ct

        ct = read_ct(ct_path, series_uid=series_uid)
        if not ct.same_geometry(self.labels, tol_mm=1e-2):
            raise InputError(f"{ct_path}: not on the grid of the plan's labels.nii.gz")
        return ct

    # ------------------------------------------------------------------ reading
    def needles(self) -> list[dict]:
        """The needles shown: the plan's, each with its ``source`` (``planned`` unless saved as edited)."""
        return [dict(n, source=n.get("source", "planned")) for n in self.plan.get("needles", [])]

    def view(self) -> dict:
        """What the page needs: the plan, its needles, the label table and the image files."""
        return {
            "plan": self.plan,
            "needles": self.needles(),
            "labels": lt.table_json(),
            "present_labels": self.present_labels,
            "margins_mm": self.margins_mm,
            "files": {"ct": CT_ROI if self.has_region else None, "labels": LABELS},
            "scored_on": ("whole CT" if self._whole_ct is not None else "CT region" if self.has_region
                          else "labels only"),
            "saved_original": (self.plan_dir / ORIGINAL_PLAN).is_file(),
        }

    def surfaces(self) -> list[dict]:
        """The label map's surfaces for the 3D view (the groups of the report's 3D views), made once.

        Each: ``name``, ``color`` (RGB 0-255), ``opacity``, ``positions`` (x, y, z, ... in NiiVue's
        RAS mm, 0.1 mm) and ``triangles`` (vertex indices, three a triangle); marching cubes, not
        smoothed, on every voxel up to ``SURFACE_STEP_MM`` (every second voxel of a 1 mm label map),
        which keeps the answer a few MB.
        """
        with self._surfaces_lock:
            if self._surfaces is None:
                from trajplan.views.surfaces import SURFACE_GROUPS, mask_surface

                self._surfaces = []
                step = max(1, round(SURFACE_STEP_MM / float(min(self.labels.spacing))))
                for name, members, colour_of, opacity in SURFACE_GROUPS:
                    surface = mask_surface(lt.mask(self.labels, *members), self.labels, step_size=step)
                    if surface is None:
                        continue
                    vertices, triangles = surface
                    ras = np.round(vertices * [-1, -1, 1], 1)
                    self._surfaces.append({"name": name, "color": list(lt.color(colour_of)), "opacity": opacity,
                                           "positions": ras.ravel().tolist(),
                                           "triangles": triangles.astype(int).ravel().tolist()})
            return self._surfaces

    # ------------------------------------------------------------------ scoring
    def evaluate(self, spec: NeedleSpec) -> dict:
        """The needle object of ``trajplan evaluate`` for ``spec``, scored with the plan's parameters
        (unsafe, as every needle of the plan, when the plan's segmentation is implausible; the CT guard
        not excusing a lesion the plan's segmentation marked uncertain, as the plan's own needles).

        Raises
        ------
        InputError
            If entry and tip are less than 1 mm apart.
        """
        from trajplan.planning.evaluate import evaluate_in_context

        error = self.parameters.get("placement_error", {})
        settings = self.plan.get("settings", {})
        scoring = self._scoring.result()
        with self._lock:
            needle = evaluate_in_context(
                scoring.context, spec.entry_lps, spec.tip_lps, gauge=spec.gauge, technique=spec.technique,
                ct=self.ct, mc_samples=int(error.get("samples", MC_SAMPLES)), seed=int(error.get("seed", 0)),
                entry_sigma_mm=float(error.get("entry_sigma_mm", ENTRY_SIGMA_MM)),
                angle_sigma_deg=float(error.get("angle_sigma_deg", ANGLE_SIGMA_DEG)), weights=settings.get("weights"),
                implausible=self.plan.get("segmentation", {}).get("implausible_reason"),
                lesion_uncertain=bool(self.plan.get("segmentation", {}).get("lesion_uncertain", False)),
            )
            if self.ct is not None:      # the skin entry and procedure card, as a plan's needles have them
                position = self.plan.get("patient_position", {})
                add_cards({"needles": [needle]}, self.ct, self.labels, position=position.get("position", "prone"),
                          position_source=position.get("source", "assumed"),
                          lengths_mm=settings.get("needle_lengths_mm"), midline_x=scoring.midline_x,
                          levels=scoring.levels)
            return needle

    def oblique(self, spec: NeedleSpec, *, opacity: float = 0.35, hidden: tuple[int, ...] = ()) -> dict:
        """The needle's oblique plane (:func:`trajplan.viewer.oblique.oblique_image`) on the CT and labels.

        ``spec.technique`` None picks the technique as ``evaluate`` does
        (:func:`trajplan.planning.evaluate.technique_of`).

        Raises
        ------
        InputError
            If entry and tip are less than 1 mm apart.
        """
        from trajplan.planning.evaluate import technique_of
        from trajplan.viewer.oblique import oblique_image

        entry, tip = np.asarray(spec.entry_lps), np.asarray(spec.tip_lps)
        if np.linalg.norm(tip - entry) < 1.0:
            raise InputError("entry and tip are less than 1 mm apart")
        axis = self.context.marks.axis
        technique = spec.technique or technique_of((tip - entry) / np.linalg.norm(tip - entry), axis).value
        return oblique_image(self.labels, self.ct, entry, tip, technique, axis, opacity=opacity, hidden=hidden)

    # ------------------------------------------------------------------ saving
    def save(self, specs: list[NeedleSpec]) -> dict[str, Path]:
        """Write the plan with ``specs`` as its needles (in that order, ranked 1..n).

        A spec equal to a needle of the loaded plan keeps that needle (and its ``source``);
        any other is scored here (never taken from the page) and marked ``"source": "edited"``.
        The plan as first loaded is kept once as ``plan.orig.json``; ``plan.json``,
        ``plan.csv`` and ``plan.mrk.json`` are then written atomically. ``summary`` is
        recomputed and ``outcome`` is ``planned`` when a needle is safe, else ``no_safe_path``.

        Raises
        ------
        InputError
            For more than MAX_NEEDLES needles.
        OutputError
            When a file cannot be written.
        """
        if len(specs) > MAX_NEEDLES:
            raise InputError(f"at most {MAX_NEEDLES} needles can be saved, got {len(specs)}")
        with self._lock:
            return self._save(specs)

    def _save(self, specs: list[NeedleSpec]) -> dict[str, Path]:
        from trajplan.plan_io import write_plan
        from trajplan.planning.selection import TargetPoints, plan_summary

        loaded = self.needles()
        needles = []
        for rank, spec in enumerate(specs, start=1):
            kept = next((n for n in loaded if spec.matches(n)), None)
            needles.append(dict(kept if kept is not None else dict(self.evaluate(spec), source="edited"),
                                rank=rank))
        sides = [s for s in self.plan.get("targets", {}) if self.context.targets(s) is not None]
        targets = TargetPoints.from_sides({s: self.context.targets(s) for s in sides})
        for needle in needles:
            if needle["source"] == "edited":
                needle["target_coverage"] = plan_summary([needle_from_json(needle)], targets)["target_coverage"]
        plan = dict(self.plan, needles=needles, summary=plan_summary([needle_from_json(n) for n in needles], targets),
                    outcome="planned" if any(n["safe"] for n in needles) else "no_safe_path")
        if not (self.plan_dir / ORIGINAL_PLAN).exists():
            write_text(self.plan_dir / ORIGINAL_PLAN, self._plan_text)
        written = write_plan(plan, self.plan_dir)
        self.plan = plan
        return written
