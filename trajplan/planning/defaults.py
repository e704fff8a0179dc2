"""Clinical defaults of planning: margins, verdict thresholds, score weights, technique limits,
cement, placement error and needle set; the one place that sets them.

Margins are minimum clearances in mm between the needle's outer surface and a
structure. A margin class applies to every structure whose name starts with it
(``foramen`` covers ``foramen_S1_left`` ... ``foramen_S4_right``); a full
structure name overrides its class.

| class | default (mm) | why |
| --- | --- | --- |
| canal | 3 | sacral nerve roots and thecal sac |
| foramen | 3 | exiting sacral nerve roots |
| anterior_cortex | 2 | lumbosacral plexus, presacral vessels behind a thin cortex |
| si_joint | 2 | entry into the sacroiliac joint |
| ilium | 2 | the needle must stay in the sacrum |
| L5_S1_disc | 2 | the long-axis tip must stay short of the L5-S1 disc |

:class:`trajplan.planning.options.PlanOptions`, ``trajplan compare``, the settings file
(:mod:`trajplan.settings`) and the procedure cards take their defaults from here.
"""

from __future__ import annotations

from trajplan.errors import InputError

DEFAULT_MARGINS_MM: dict[str, float] = {
    "canal": 3.0,
    "foramen": 3.0,
    "anterior_cortex": 2.0,
    "si_joint": 2.0,
    "ilium": 2.0,
    "L5_S1_disc": 2.0,
}

# Critical structures measured for every path (label names from trajplan.labels).
CRITICAL_STRUCTURES: tuple[str, ...] = (
    "canal",
    "foramen_S1_left", "foramen_S1_right", "foramen_S2_left", "foramen_S2_right",
    "foramen_S3_left", "foramen_S3_right", "foramen_S4_left", "foramen_S4_right",
    "anterior_cortex", "si_joint_left", "si_joint_right", "ilium_left", "ilium_right",
    "L5_S1_disc",
)

# A safe path is "marginal" when a clearance is within this band above its margin,
# or when its placement-error breach probability exceeds MARGINAL_BREACH_PROBABILITY.
MARGINAL_BAND_MM = 1.0
MARGINAL_BREACH_PROBABILITY = 0.05
# Longest run of the needle outside bone between its bone entry and its tip.
MAX_OUTSIDE_BONE_MM = 1.0
# Past this much of the axis from the bone entry (and two voxels), the needle's whole shaft stays in
# the labelled bone: its outer surface does not run out through the bone's outer surface.
SHAFT_ENTRY_MM = 3.0
# Distances beyond this are reported as this value (nothing is nearer).
CLEARANCE_CAP_MM = 30.0

# Score terms: clearance above margin over this scale, exp(-tip to target / this scale),
# cement volume over the mean cement volume of Kortman et al. 2013.
CLEARANCE_SCALE_MM = 5.0
TARGET_SCALE_MM = 10.0
STUDY_MEAN_CEMENT_ML = 4.1

# Score = weighted mean of terms in [0, 1]; the final rank subtracts
# WEIGHTS["robustness"] x the probability of any breach under placement error.
WEIGHTS: dict[str, float] = {
    "clearance": 0.35,      # min(1, smallest clearance above its margin / CLEARANCE_SCALE_MM)
    "target": 0.30,         # exp(-tip distance to the fracture line or lesion / TARGET_SCALE_MM)
    "technique_fit": 0.20,  # short: angle to surface normal and gantry tilt; long: alignment with the sacrum
    "cement": 0.15,         # min(1, estimated cement volume / STUDY_MEAN_CEMENT_ML)
    "robustness": 1.0,
}

# Technique limits (hard constraints on candidates).
SHORT_AXIS_MAX_NORMAL_ANGLE_DEG = 45.0
SHORT_AXIS_MAX_GANTRY_TILT_DEG = 30.0
SHORT_AXIS_MEDIOLATERAL_RANGE_DEG = (-15.0, 40.0)
SHORT_AXIS_MIN_LENGTH_MM = 10.0
LONG_AXIS_MAX_AXIS_ANGLE_DEG = 25.0
LONG_AXIS_MIN_LENGTH_MM = 40.0
# A drawn path (trajplan evaluate, the viewer) within this angle of the sacrum's long axis is long axis.
LONG_AXIS_WITHIN_DEG = 35.0
# Cement: trabecular bone within this radius of the distal needle segment, filled to this fraction.
CEMENT_RADIUS_MM = 8.0
CEMENT_FILL_FRACTION = 0.4
CEMENT_SEGMENT_MM = {"short_axis": 15.0, "long_axis": 40.0}
# Target coverage: target voxels within this distance of a needle's cement segment count as covered.
COVERAGE_RADIUS_MM = 8.0

# The needle set and the placement error asked for by default.
GAUGE = 11
NEEDLES = 2
MIN_SEPARATION_MM = 10.0           # between the axes of two chosen needles
ENTRY_SIGMA_MM = 2.0               # placement error: entry offset ...
ANGLE_SIGMA_DEG = 2.0              # ... and angular error (Gaussian sigmas)
MC_SAMPLES = 300                   # placement-error Monte Carlo samples per needle
STANDARD_NEEDLE_LENGTHS_MM = (100.0, 125.0, 150.0)   # 10, 12.5 and 15 cm bone needles (procedure cards)


def margin_class(structure: str) -> str:
    """The margin class of a structure name (``foramen_S2_left`` -> ``foramen``)."""
    for name in DEFAULT_MARGINS_MM:
        if structure.startswith(name):
            return name
    raise KeyError(structure)


def min_clearance_by_class(clearances: list[dict[str, float | None]]) -> dict[str, float | None]:
    """Smallest clearance (mm) per margin class over several needles' ``clearance_mm`` dicts.

    A class no needle was measured against maps to None.
    """
    out: dict[str, float | None] = {}
    for cls in DEFAULT_MARGINS_MM:
        values = [v for c in clearances for k, v in c.items() if v is not None and margin_class(k) == cls]
        out[cls] = round(min(values), 2) if values else None
    return out


def resolve_margins(overrides: dict[str, float] | None = None) -> dict[str, float]:
    """Margin (mm) of every critical structure, with ``overrides`` by class or structure.

    Raises
    ------
    InputError
        For an unknown name or a negative or absurd (> 30 mm) margin.
    """
    overrides = dict(overrides or {})
    for name, value in overrides.items():
        if name not in DEFAULT_MARGINS_MM and name not in CRITICAL_STRUCTURES:
            raise InputError(f"unknown margin {name!r}; use one of {', '.join(DEFAULT_MARGINS_MM)} "
                             "or a structure name such as foramen_S2_left")
        if not 0.0 <= float(value) <= CLEARANCE_CAP_MM:
            raise InputError(f"margin {name}={value} mm is outside 0..{CLEARANCE_CAP_MM:g} mm")
    out = {}
    for structure in CRITICAL_STRUCTURES:
        cls = margin_class(structure)
        out[structure] = float(overrides.get(structure, overrides.get(cls, DEFAULT_MARGINS_MM[cls])))
    return out


def resolve_weights(overrides: dict[str, float] | None = None) -> dict[str, float]:
    """Every score weight (:data:`WEIGHTS`) with ``overrides`` applied.

    Raises
    ------
    InputError
        For an unknown name, a negative weight, or score weights (all but ``robustness``) that sum to 0.
    """
    overrides = dict(overrides or {})
    for name, value in overrides.items():
        if name not in WEIGHTS:
            raise InputError(f"unknown score weight {name!r}; use one of {', '.join(WEIGHTS)}")
        if not float(value) >= 0.0:
            raise InputError(f"score weight {name}={value} must not be negative")
    out = {name: float(overrides.get(name, default)) for name, default in WEIGHTS.items()}
    if sum(v for k, v in out.items() if k != "robustness") <= 0.0:
        raise InputError("the score weights clearance, target, technique_fit and cement sum to 0")
    return out
