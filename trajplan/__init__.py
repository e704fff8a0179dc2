"""trajplan: CT-guided needle trajectory planning for sacroplasty.

The public API (``docs/api.md``): read a CT, segment it, plan needles, score a drawn path, write
and draw the results, on objects::

    import trajplan

    ct = trajplan.read_ct("case/ct.nii.gz")
    plan = trajplan.plan(ct, options=trajplan.PlanOptions(needles=2), source="case/ct.nii.gz")
    trajplan.write_plan_folder(plan, "case_plan")

The names in ``__all__`` are the public ones. Each is loaded on first use (PEP 562), so
``import trajplan`` and ``python -m trajplan --help`` stay fast.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

# public name -> the module that defines it
_HOMES = {
    "read_ct": "trajplan.io.reader",
    "read_labels": "trajplan.api",
    "segment": "trajplan.api",
    "plan": "trajplan.api",
    "evaluate_path": "trajplan.api",
    "write_segmentation_folder": "trajplan.api",
    "write_plan_folder": "trajplan.api",
    "write_evaluation_folder": "trajplan.api",
    "render_plan": "trajplan.api",
    "Plan": "trajplan.api",
    "Evaluation": "trajplan.api",
    "PlanOptions": "trajplan.planning.options",
    "Volume": "trajplan.volume",
    "Segmentation": "segmentation.pipeline",
    "Needle": "trajplan.needle",
    "NeedlePath": "trajplan.needle",
    "NeedleMetrics": "trajplan.needle",
    "PlacedNeedle": "trajplan.needle",
    "Technique": "trajplan.needle",
    "Verdict": "trajplan.needle",
    "Side": "trajplan.labels",
    "Label": "trajplan.labels",
    "LABELS": "trajplan.labels",
    "InputError": "trajplan.errors",
    "DicomError": "trajplan.errors",
    "NoSacrumError": "trajplan.errors",
    "NoSafePathError": "trajplan.errors",
    "OutputError": "trajplan.errors",
}

# the public names (docs/api.md); every one but __version__ has its home in _HOMES
__all__ = [
    "__version__",
    "read_ct", "read_labels", "segment", "plan", "evaluate_path",
    "write_segmentation_folder", "write_plan_folder", "write_evaluation_folder", "render_plan",
    "Plan", "Evaluation", "PlanOptions", "Volume", "Segmentation",
    "Needle", "NeedlePath", "NeedleMetrics", "PlacedNeedle", "Technique", "Verdict",
    "Side", "Label", "LABELS",
    "InputError", "DicomError", "NoSacrumError", "NoSafePathError", "OutputError",
]

if TYPE_CHECKING:
    from segmentation.pipeline import Segmentation
    from trajplan.api import (
        Evaluation,
        Plan,
        evaluate_path,
        plan,
        read_labels,
        render_plan,
        segment,
        write_evaluation_folder,
        write_plan_folder,
        write_segmentation_folder,
    )
    from trajplan.errors import DicomError, InputError, NoSacrumError, NoSafePathError, OutputError
    from trajplan.io.reader import read_ct
    from trajplan.labels import LABELS, Label, Side
    from trajplan.needle import Needle, NeedleMetrics, NeedlePath, PlacedNeedle, Technique, Verdict
    from trajplan.planning.options import PlanOptions
    from trajplan.volume import Volume


def __getattr__(name: str) -> Any:
    """Load a public name from its module on first use (PEP 562)."""
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module 'trajplan' has no attribute {name!r}")
    value = getattr(importlib.import_module(home), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
