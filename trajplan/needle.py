"""Bone biopsy / vertebroplasty needles: gauges and their outer diameters."""

from __future__ import annotations

from trajplan.errors import InputError

OUTER_DIAMETER_MM = {11: 3.05, 13: 2.41}


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
