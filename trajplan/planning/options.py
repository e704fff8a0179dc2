"""What to plan (:class:`PlanOptions`) and the effective settings block of ``plan.json``."""

from __future__ import annotations

from dataclasses import dataclass

from trajplan.errors import InputError
from trajplan.labels import Side
from trajplan.needle import Technique, radius_mm
from trajplan.planning.defaults import (
    ANGLE_SIGMA_DEG,
    DEFAULT_MARGINS_MM,
    ENTRY_SIGMA_MM,
    GAUGE,
    MC_SAMPLES,
    MIN_SEPARATION_MM,
    NEEDLES,
    STANDARD_NEEDLE_LENGTHS_MM,
    resolve_margins,
    resolve_weights,
)

# --technique and --side: the techniques and sides each choice plans, in planning order.
TECHNIQUE_CHOICES: dict[str, tuple[Technique, ...]] = {
    "short": (Technique.SHORT_AXIS,), "long": (Technique.LONG_AXIS,), "both": tuple(Technique),
}
SIDE_CHOICES: dict[str, tuple[Side, ...]] = {"left": (Side.LEFT,), "right": (Side.RIGHT,), "both": tuple(Side)}
# settings-file key of each placement-error field of PlanOptions
PLACEMENT_KEYS = {"entry_sigma_mm": "entry_sigma_mm", "angle_sigma_deg": "angle_sigma_deg", "samples": "mc_samples"}


@dataclass(frozen=True)
class PlanOptions:
    """What to plan; validated at construction. Defaults: :mod:`trajplan.planning.defaults`.

    Parameters
    ----------
    technique : {"both", "short", "long"}
    gauge : {11, 13}
    needles : int
        Needles in the plan, 1 to 5.
    side : {"both", "left", "right"}
    margins_mm : dict, optional
        Margins (mm) by class (``canal``, ``foramen``, ``anterior_cortex``, ``si_joint``, ``ilium``,
        ``L5_S1_disc``, ...) or by structure (``foramen_S2_left``), over the defaults.
    min_separation_mm : float
        Smallest distance between two needles of a plan.
    entry_sigma_mm, angle_sigma_deg : float
        The placement error of the Monte Carlo.
    mc_samples : int
        Monte Carlo samples per needle, 10 to 100000.
    seed : int
        The Monte Carlo's seed.
    weights : dict, optional
        Score weights over :data:`trajplan.planning.defaults.WEIGHTS`.
    needle_lengths_mm : tuple of float, optional
        The needle lengths the cards choose from (default the standard lengths).

    Raises
    ------
    InputError
        For any value out of its range, an unknown margin or weight name.

    Examples
    --------
    >>> options = trajplan.PlanOptions(technique="short", needles=1, margins_mm={"canal": 4})  # doctest: +SKIP
    """

    technique: str = "both"      # short|long|both
    gauge: int = GAUGE           # 11|13
    needles: int = NEEDLES       # 1..5
    side: str = "both"           # left|right|both
    margins_mm: dict[str, float] | None = None
    min_separation_mm: float = MIN_SEPARATION_MM
    entry_sigma_mm: float = ENTRY_SIGMA_MM
    angle_sigma_deg: float = ANGLE_SIGMA_DEG
    mc_samples: int = MC_SAMPLES
    seed: int = 0
    weights: dict[str, float] | None = None            # overrides of trajplan.planning.defaults.WEIGHTS
    needle_lengths_mm: tuple[float, ...] | None = None  # None: STANDARD_NEEDLE_LENGTHS_MM

    def __post_init__(self) -> None:
        if self.technique not in TECHNIQUE_CHOICES:
            raise InputError(f"unknown technique {self.technique!r} (use short, long or both)")
        radius_mm(self.gauge)
        if self.side not in SIDE_CHOICES:
            raise InputError(f"unknown side {self.side!r} (use left, right or both)")
        if not 1 <= int(self.needles) <= 5:
            raise InputError(f"needles must be 1 to 5, got {self.needles}")
        if self.min_separation_mm < 0 or self.entry_sigma_mm < 0 or self.angle_sigma_deg < 0:
            raise InputError("separation and placement errors must not be negative")
        if not 10 <= self.mc_samples <= 100_000:
            raise InputError(f"mc_samples must be 10 to 100000, got {self.mc_samples}")
        resolve_margins(self.margins_mm)
        resolve_weights(self.weights)
        if self.needle_lengths_mm is not None and (
                not len(self.needle_lengths_mm) or not all(0 < float(v) <= 500 for v in self.needle_lengths_mm)):
            raise InputError(f"needle lengths must be 1 or more lengths of 0 to 500 mm, got {self.needle_lengths_mm}")


def settings_json(options: PlanOptions) -> dict:
    """The effective settings of ``options`` in the settings file's layout (every key filled in),
    as ``plan.json`` ``settings`` (the file itself: :mod:`trajplan.settings`).

    ``margins_mm`` holds every margin class, and any structure given on its own.
    """
    given = dict(options.margins_mm or {})
    resolved = resolve_margins(given)
    margins = {cls: float(given.get(cls, DEFAULT_MARGINS_MM[cls])) for cls in DEFAULT_MARGINS_MM}
    margins.update({name: resolved[name] for name in given if name not in DEFAULT_MARGINS_MM})
    return {
        "min_separation_mm": float(options.min_separation_mm),
        "needle_lengths_mm": [float(v) for v in (options.needle_lengths_mm or STANDARD_NEEDLE_LENGTHS_MM)],
        "margins_mm": margins,
        "weights": resolve_weights(options.weights),
        "placement_error": {file_key: getattr(options, field) for file_key, field in PLACEMENT_KEYS.items()},
    }
