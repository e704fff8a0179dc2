"""The needle: gauges, techniques, verdicts, a typed needle and its ``plan.json`` form.

A needle travels through planning as a :class:`Needle` (its :class:`NeedlePath` and
what was measured on it) and is turned into the needle object of ``plan.json`` by
:func:`needle_json` only, at the edge; :func:`needle_from_json` reads one back (a plan
folder's needles, as the viewer does). The side is :class:`trajplan.labels.Side`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import Enum

import numpy as np

from trajplan.errors import InputError
from trajplan.labels import Side

OUTER_DIAMETER_MM = {11: 3.05, 13: 2.41}

Point = tuple[float, float, float]


def diameter_mm(gauge: int) -> float:
    """Outer diameter (mm) of a needle of ``gauge``.

    Raises
    ------
    InputError
        For a gauge other than 11 or 13.
    """
    try:
        return OUTER_DIAMETER_MM[int(gauge)]
    except (KeyError, ValueError, TypeError):
        raise InputError(f"unknown needle gauge {gauge!r} (use 11 or 13)") from None


def radius_mm(gauge: int) -> float:
    """Outer radius (mm) of a needle of ``gauge``."""
    return diameter_mm(gauge) / 2.0


class Technique(str, Enum):
    """The two sacroplasty techniques (Kortman et al., JNIS 2013). The value is the ``plan.json`` word."""

    SHORT_AXIS = "short_axis"
    LONG_AXIS = "long_axis"

    def __str__(self) -> str:
        return self.value

    @property
    def words(self) -> str:
        """Display name: ``short axis``."""
        return self.value.replace("_", " ")

    @property
    def adjective(self) -> str:
        """As an adjective: ``short-axis`` (a ``short-axis path``)."""
        return self.value.replace("_", "-")


class Verdict(str, Enum):
    """A needle's verdict. The value is the ``plan.json`` word."""

    SAFE = "safe"
    MARGINAL = "marginal"
    UNSAFE = "unsafe"

    def __str__(self) -> str:
        return self.value

    @property
    def rgb(self) -> tuple[float, float, float]:
        """Colour (RGB 0-1) of the needle in ``plan.mrk.json`` (3D Slicer) and in the viewer's page."""
        return _MARKUP_RGB[self]

    @property
    def view_rgb(self) -> tuple[float, float, float]:
        """Colour (RGB 0-1) of the needle in the rendered views (scene, slices, fluoroscopy)."""
        return _VIEW_RGB[self]


_MARKUP_RGB = {Verdict.SAFE: (0.2, 0.75, 0.3), Verdict.MARGINAL: (1.0, 0.7, 0.0), Verdict.UNSAFE: (0.9, 0.1, 0.1)}
_VIEW_RGB = {Verdict.SAFE: (0.13, 0.70, 0.25), Verdict.MARGINAL: (1.0, 0.65, 0.0),
             Verdict.UNSAFE: (0.85, 0.05, 0.05)}


@dataclass(frozen=True)
class NeedlePath:
    """Where a needle goes: technique, side, gauge, bone entry and tip (LPS mm)."""

    technique: Technique
    side: Side
    gauge: int
    entry_lps: Point
    tip_lps: Point

    @property
    def diameter_mm(self) -> float:
        """Outer diameter (mm)."""
        return diameter_mm(self.gauge)

    @property
    def entry(self) -> np.ndarray:
        """The bone entry as an array (LPS mm)."""
        return np.asarray(self.entry_lps, dtype=float)

    @property
    def tip(self) -> np.ndarray:
        """The tip as an array (LPS mm)."""
        return np.asarray(self.tip_lps, dtype=float)


@dataclass(frozen=True)
class NeedleMetrics:
    """The ``metrics`` of a needle (see ``docs/plan_json.md``): lengths mm, angles degrees, cement ml."""

    length_mm: float
    length_in_bone_mm: float
    length_in_ala_mm: float
    length_outside_bone_mm: float
    tip_to_target_mm: float | None
    target: str | None
    mediolateral_angle_deg: float
    craniocaudal_angle_deg: float
    gantry_tilt_deg: float
    axis_angle_deg: float
    angle_to_surface_normal_deg: float | None   # None: no bone surface normal at the entry (key left out)
    skin_to_bone_mm: float | None
    approach_crosses: tuple[str, ...]
    cement_volume_ml: float
    bone_ahead_mm: float | None = None          # None: read from a plan written before it was measured
    shaft_depth_mm: float | None = None         # None: as bone_ahead_mm, or no shaft past the entry zone


@dataclass(frozen=True)
class Needle:
    """A measured needle: its path, clearances, verdict and reasons, metrics, score and robustness.

    ``breach_probability`` and ``rank_value`` are None until the placement-error Monte Carlo
    has run (:func:`trajplan.planning.scoring.apply_robustness`); ``rank_value`` (the score less
    the robustness weight times the probability of any breach) ranks needles and is not written.
    """

    path: NeedlePath
    skin_entry_lps: Point | None
    verdict: Verdict
    reasons: tuple[str, ...]
    clearance_mm: Mapping[str, float]
    tip_to_anterior_cortex_mm: float | None
    ct_guard: Mapping[str, object]
    metrics: NeedleMetrics
    score: float
    breach_probability: Mapping[str, float] | None = None
    rank_value: float | None = None

    @property
    def safe(self) -> bool:
        """Every margin kept, in bone, no bone crossed on the approach: the verdict is not unsafe."""
        return self.verdict is not Verdict.UNSAFE

    @property
    def technique(self) -> Technique:
        """The path's technique."""
        return self.path.technique

    @property
    def side(self) -> Side:
        """The path's side."""
        return self.path.side


@dataclass(frozen=True)
class PlacedNeedle:
    """A needle chosen for a plan: its rank and the fraction of the target it covers on its own
    (None when the targets are the ala only)."""

    needle: Needle
    rank: int
    target_coverage: float | None


def _metrics_json(metrics: NeedleMetrics) -> dict:
    out = {
        "length_mm": metrics.length_mm,
        "length_in_bone_mm": metrics.length_in_bone_mm,
        "length_in_ala_mm": metrics.length_in_ala_mm,
        "length_outside_bone_mm": metrics.length_outside_bone_mm,
        "tip_to_target_mm": metrics.tip_to_target_mm,
        "target": metrics.target,
        "mediolateral_angle_deg": metrics.mediolateral_angle_deg,
        "craniocaudal_angle_deg": metrics.craniocaudal_angle_deg,
        "gantry_tilt_deg": metrics.gantry_tilt_deg,
        "axis_angle_deg": metrics.axis_angle_deg,
    }
    if metrics.angle_to_surface_normal_deg is not None:
        out["angle_to_surface_normal_deg"] = metrics.angle_to_surface_normal_deg
    out.update({
        "skin_to_bone_mm": metrics.skin_to_bone_mm,
        "approach_crosses": list(metrics.approach_crosses),
        "cement_volume_ml": metrics.cement_volume_ml,
        "bone_ahead_mm": metrics.bone_ahead_mm,
        "shaft_depth_mm": metrics.shaft_depth_mm,
    })
    return out


def needle_json(needle: Needle | PlacedNeedle, *, rank: int | None = None) -> dict:
    """The needle object of ``plan.json`` (``docs/plan_json.md``), keys in their written order.

    A :class:`PlacedNeedle` gets its ``rank`` and ``target_coverage``; a :class:`Needle` gets
    ``rank`` when one is given (an alternative), none otherwise (``trajplan evaluate``).
    ``breach_probability`` is written once the Monte Carlo has run.
    """
    placed = needle if isinstance(needle, PlacedNeedle) else None
    if placed is not None:
        needle, rank = placed.needle, placed.rank
    path = needle.path
    out = {
        "technique": path.technique.value, "side": path.side.value, "gauge": int(path.gauge),
        "diameter_mm": path.diameter_mm,
        "entry_lps": list(path.entry_lps), "tip_lps": list(path.tip_lps),
        "skin_entry_lps": list(needle.skin_entry_lps) if needle.skin_entry_lps is not None else None,
        "safe": needle.safe,
        "verdict": needle.verdict.value,
        "reasons": list(needle.reasons),
        "clearance_mm": dict(needle.clearance_mm),
        "tip_to_anterior_cortex_mm": needle.tip_to_anterior_cortex_mm,
        "ct_guard": dict(needle.ct_guard),
        "metrics": _metrics_json(needle.metrics),
        "score": needle.score,
    }
    if needle.breach_probability is not None:
        out["breach_probability"] = dict(needle.breach_probability)
    if rank is not None:
        out["rank"] = rank
    if placed is not None:
        out["target_coverage"] = placed.target_coverage
    return out


def needle_from_json(data: Mapping) -> Needle:
    """A :class:`Needle` from a needle object of ``plan.json`` (keys it does not hold are ignored;
    a metric missing from an older plan is None).

    The ranking value is not stored in ``plan.json`` and stays None.
    """
    metrics = {name: data["metrics"].get(name) for name in NeedleMetrics.__dataclass_fields__}
    metrics["approach_crosses"] = tuple(metrics["approach_crosses"] or ())
    skin = data.get("skin_entry_lps")
    breach = data.get("breach_probability")
    return Needle(
        path=NeedlePath(technique=Technique(data["technique"]), side=Side(data["side"]), gauge=int(data["gauge"]),
                        entry_lps=tuple(data["entry_lps"]), tip_lps=tuple(data["tip_lps"])),
        skin_entry_lps=tuple(skin) if skin is not None else None,
        verdict=Verdict(data["verdict"]),
        reasons=tuple(data.get("reasons", ())),
        clearance_mm=dict(data["clearance_mm"]),
        tip_to_anterior_cortex_mm=data.get("tip_to_anterior_cortex_mm"),
        ct_guard=dict(data.get("ct_guard", {})),
        metrics=NeedleMetrics(**metrics),
        score=data["score"],
        breach_probability=dict(breach) if breach is not None else None,
    )
