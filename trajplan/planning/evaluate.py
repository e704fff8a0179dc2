"""Scoring one hand-drawn path: the entry point :func:`evaluate_path` (``trajplan evaluate``, the viewer).

A drawn path is measured as a planned one (:func:`~trajplan.planning.scoring.measure_path`,
then the placement-error Monte Carlo) and returned as the needle object of ``plan.json``
without ``rank``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from trajplan import labels as lt
from trajplan.errors import InputError
from trajplan.labels import Side
from trajplan.needle import Needle, Technique, needle_json, radius_mm
from trajplan.planning.candidates import Landmarks, Targets, find_landmarks, find_targets
from trajplan.planning.ct_guard import trusted_dark
from trajplan.planning.defaults import GAUGE, LONG_AXIS_WITHIN_DEG, MC_SAMPLES, resolve_margins
from trajplan.planning.distance import DistanceMaps, build_distance_maps
from trajplan.planning.plan import untrusted_needle
from trajplan.planning.robustness import breach_probability
from trajplan.planning.scoring import apply_robustness, measure_path
from trajplan.volume import Volume


@dataclass
class PathContext:
    """What scoring a hand-drawn path needs of a label map, computed once for many paths.

    Built by :func:`path_context`; :func:`evaluate_in_context` scores paths against it.
    The targets of each side are found on first use and kept.
    """

    maps: DistanceMaps
    marks: Landmarks
    _targets: dict[str, Targets | None] = field(default_factory=dict)

    def targets(self, side: str) -> Targets | None:
        """The targets of ``side`` (None where the side has none: a path may be checked there)."""
        if side not in self._targets:
            try:
                self._targets[side] = find_targets(self.maps, self.marks, Side(side))
            except InputError:
                self._targets[side] = None
        return self._targets[side]


def path_context(labels: Volume, margins_mm: dict[str, float] | None = None) -> PathContext:
    """Distance maps and landmarks of ``labels`` with the margins in force (defaults + ``margins_mm``)."""
    maps = build_distance_maps(labels, resolve_margins(margins_mm))
    return PathContext(maps=maps, marks=find_landmarks(maps))


def technique_of(direction: np.ndarray, sacral_axis: np.ndarray) -> Technique:
    """The technique a drawn path of unit ``direction`` is taken for: the long axis within
    LONG_AXIS_WITHIN_DEG of the sacrum's long axis, the short axis otherwise."""
    angle = np.degrees(np.arccos(np.clip(direction @ sacral_axis, -1, 1)))
    return Technique.LONG_AXIS if angle < LONG_AXIS_WITHIN_DEG else Technique.SHORT_AXIS


def line_points(entry_lps, target_lps) -> tuple[np.ndarray, np.ndarray]:
    """A hand-drawn path's entry and target as arrays (LPS mm).

    Raises
    ------
    InputError
        If they are less than 1 mm apart.
    """
    entry, tip = np.asarray(entry_lps, float), np.asarray(target_lps, float)
    if np.linalg.norm(tip - entry) < 1.0:
        raise InputError("entry and target are less than 1 mm apart")
    return entry, tip


def score_drawn_path(context: PathContext, entry_lps, target_lps, *, gauge: int = GAUGE,
                     technique: str | None = None, ct: Volume | None = None, mc_samples: int = MC_SAMPLES,
                     seed: int = 0, weights: dict[str, float] | None = None,
                     entry_sigma_mm: float | None = None, angle_sigma_deg: float | None = None,
                     lesion_uncertain: bool = False) -> Needle:
    """The :class:`~trajplan.needle.Needle` of one hand-drawn path (LPS mm); see :func:`evaluate_in_context`.

    Raises
    ------
    InputError
        If entry and target are less than 1 mm apart, or ``technique`` is unknown.
    """
    entry, tip = line_points(entry_lps, target_lps)
    maps, marks = context.maps, context.marks
    side = Side.LEFT if marks.side_of(tip[0]) > 0 else Side.RIGHT
    direction = (tip - entry) / np.linalg.norm(tip - entry)
    if technique is None:
        chosen = technique_of(direction, marks.axis)
    elif technique in tuple(Technique):
        chosen = Technique(technique)
    else:
        raise InputError(f"unknown technique {technique!r} (short_axis or long_axis)")
    needle = measure_path(maps, marks, entry, tip, technique=chosen, side=side, gauge=gauge,
                          targets=context.targets(side.value), ct=ct, weights=weights,
                          dark_targets=trusted_dark(lesion_uncertain))
    errors = {k: v for k, v in (("entry_sigma_mm", entry_sigma_mm), ("angle_sigma_deg", angle_sigma_deg))
              if v is not None}         # else breach_probability's defaults
    breach = breach_probability(maps, entry, tip, radius=radius_mm(gauge), samples=mc_samples, seed=seed,
                                **errors)
    return apply_robustness(needle, breach, weights)


def evaluate_in_context(context: PathContext, entry_lps, target_lps, *, gauge: int = GAUGE,
                        technique: str | None = None, ct: Volume | None = None, mc_samples: int = MC_SAMPLES,
                        seed: int = 0, weights: dict[str, float] | None = None,
                        entry_sigma_mm: float | None = None, angle_sigma_deg: float | None = None,
                        implausible: str | None = None, lesion_uncertain: bool = False) -> dict:
    """Metrics and verdict of one hand-drawn path (LPS mm) against a prepared :class:`PathContext`.

    ``technique`` None picks it with :func:`technique_of` (the long axis when the path runs within
    LONG_AXIS_WITHIN_DEG of the sacrum's long axis, the short axis otherwise). The side is that of
    the tip. ``weights`` (overrides of :data:`trajplan.planning.defaults.WEIGHTS`) score it;
    ``entry_sigma_mm`` and ``angle_sigma_deg`` size the placement error (None: those of
    :func:`trajplan.planning.robustness.breach_probability`). With ``implausible`` (why the
    segmentation says its sacrum cannot be a whole sacrum) the path is unsafe, its first reason
    ``segmentation_implausible`` (:func:`trajplan.planning.plan.untrusted_needle`). With
    ``lesion_uncertain`` (the segmentation marked its lesion uncertain) the CT guard does not take the
    lesion for dark by nature, as in a plan (:func:`trajplan.planning.ct_guard.trusted_dark`).

    Returns
    -------
    dict
        The needle object of ``plan.json`` without ``rank``.

    Raises
    ------
    InputError
        If entry and target are less than 1 mm apart, or ``technique`` is unknown.
    """
    needle = score_drawn_path(context, entry_lps, target_lps, gauge=gauge, technique=technique, ct=ct,
                              mc_samples=mc_samples, seed=seed, weights=weights,
                              entry_sigma_mm=entry_sigma_mm, angle_sigma_deg=angle_sigma_deg,
                              lesion_uncertain=lesion_uncertain)
    return needle_json(untrusted_needle(needle) if implausible else needle)


def evaluate_path(labels: Volume, entry_lps, target_lps, *, gauge: int = GAUGE,
                  margins_mm: dict[str, float] | None = None, ct: Volume | None = None,
                  technique: str | None = None, mc_samples: int = MC_SAMPLES, seed: int = 0,
                  weights: dict[str, float] | None = None,
                  entry_sigma_mm: float | None = None, angle_sigma_deg: float | None = None,
                  implausible: str | None = None, lesion_uncertain: bool = False) -> dict:
    """Metrics and verdict of one hand-drawn path (LPS mm), as one needle object of plan.json.

    The technique is ``technique`` when given, else the long axis when the path runs within
    LONG_AXIS_WITHIN_DEG (35 degrees) of the sacrum's long axis, the short axis otherwise; the
    side is that of the tip.
    ``weights`` (overrides of :data:`trajplan.planning.defaults.WEIGHTS`) score it;
    ``entry_sigma_mm`` and ``angle_sigma_deg`` size the placement error (None: those of
    :func:`trajplan.planning.robustness.breach_probability`); ``implausible`` and
    ``lesion_uncertain``: see :func:`evaluate_in_context`.

    Raises
    ------
    InputError
        If entry and target are less than 1 mm apart, or ``technique`` is unknown.
    """
    entry, tip = line_points(entry_lps, target_lps)          # refused before the distance maps are built
    return evaluate_in_context(path_context(labels, margins_mm), entry, tip, gauge=gauge, technique=technique, ct=ct,
                               mc_samples=mc_samples, seed=seed, weights=weights,
                               entry_sigma_mm=entry_sigma_mm, angle_sigma_deg=angle_sigma_deg,
                               implausible=implausible, lesion_uncertain=lesion_uncertain)


def bone_entry_on_line(labels: Volume, start, tip, *, step_mm: float = 0.25) -> tuple[np.ndarray, float] | None:
    """Where the line from ``start`` to ``tip`` first enters the sacral bone, and how far along it that is.

    The line is sampled every ``step_mm`` (nearest voxel of ``labels``); the first sample in the
    sacral bone (:data:`trajplan.labels.SACRAL_BONE`), rounded to 0.01 mm as ``plan.json`` writes
    it and still in the bone once rounded, is the bone entry. A ``start`` already in the sacral bone
    is its own bone entry (distance 0). Used by ``trajplan evaluate`` for a line drawn from the skin:
    the needle is scored from where it enters the bone, as planned needles are.

    Returns
    -------
    (point, distance_mm) or None
        The bone entry (LPS mm, rounded to 0.01 mm) and its distance from ``start``; None when the
        line does not meet the sacral bone before ``tip``.
    """
    start, tip = np.asarray(start, float), np.asarray(tip, float)
    length = float(np.linalg.norm(tip - start))

    def in_bone(points: np.ndarray) -> np.ndarray:
        return lt.sacral_bone(labels.values_at(points))

    if in_bone(start[None, :])[0]:
        return start, 0.0
    along = np.arange(0.0, length + 1e-9, step_mm)
    points = start + along[:, None] * (tip - start) / max(length, 1e-9)
    for k in np.flatnonzero(in_bone(points)):
        rounded = np.round(points[k], 2)
        if in_bone(rounded[None, :])[0]:
            return rounded, float(np.linalg.norm(rounded - start))
    return None
