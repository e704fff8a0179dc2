"""Re-render the pictures and the report of an existing plan folder."""

from __future__ import annotations

import json
from pathlib import Path

from trajplan.errors import InputError
from trajplan.io.files import read_hu_file, read_volume_file
from trajplan.io.plan_folder import CARD, CT_ROI, LABELS, PLAN, SCENE_HTML, SCENE_PNG


def render_plan_dir(plan_dir: str | Path, *, window: str = "bone") -> dict[str, Path]:
    """Re-render ``scene.png``, every view, ``report.html`` and ``card.html`` of a plan folder.

    Reads ``plan.json``, ``labels.nii.gz`` and, when present, ``ct_roi.nii.gz`` (the CT
    around the sacrum, needed for the CT slices, drawn in ``window``, and the simulated
    fluoroscopy).

    Raises
    ------
    InputError
        If the folder does not hold a plan written by ``trajplan plan``.
    """
    from trajplan.card_html import card_page
    from trajplan.io.atomic import write_text
    from trajplan.report import write_report

    plan_dir = Path(plan_dir)
    for name in (PLAN, LABELS):
        if not (plan_dir / name).is_file():
            raise InputError(f"{plan_dir}: not a plan folder (no {name})")
    try:
        plan = json.loads((plan_dir / PLAN).read_text())
    except ValueError as exc:
        raise InputError(f"{plan_dir / PLAN}: not valid JSON ({exc})") from None
    labels = read_volume_file(plan_dir / LABELS)
    ct = read_hu_file(plan_dir / CT_ROI) if (plan_dir / CT_ROI).is_file() else None
    write_text(plan_dir / CARD, card_page(plan))
    return {
        "report": write_report(plan_dir, labels=labels, plan=plan, ct=ct, window=window),
        "card": plan_dir / CARD,
        "scene": plan_dir / SCENE_PNG,
        "scene_html": plan_dir / SCENE_HTML,
    }
