"""Needle planning on a label map, as the flow runs.

``candidates`` (entries and tips per technique and side) -> ``distance`` (distance maps of the
critical structures) -> ``scoring`` (screen, measure, verdict, score; with ``ct_guard``, the CT
read along the needle, and ``ahead``, the labels past its tip) -> ``robustness`` (placement-error
Monte Carlo) -> ``selection`` (the needle set) -> the entry points ``plan.plan_needles`` (a whole
plan) and ``evaluate.evaluate_path`` (one drawn path). ``options`` says what to plan, ``defaults``
holds the clinical defaults, ``verify`` re-checks a needle independently (tests and validation only).
No module here reads or writes files.
"""

from trajplan.planning.evaluate import evaluate_path
from trajplan.planning.options import PlanOptions
from trajplan.planning.plan import plan_needles

__all__ = ["PlanOptions", "evaluate_path", "plan_needles"]
