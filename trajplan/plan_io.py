"""Plan files: ``plan.json``, ``plan.csv`` (one row per needle) and ``plan.mrk.json``
(the needles as 3D Slicer line markups), and reading a Slicer line markup back."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import numpy as np

from trajplan.card_html import needle_title
from trajplan.errors import InputError
from trajplan.io.atomic import write_json, write_text
from trajplan.io.plan_folder import CARD, PLAN, PLAN_CSV, PLAN_MARKUPS
from trajplan.needle import Verdict
from trajplan.planning.defaults import CRITICAL_STRUCTURES

SLICER_SCHEMA = ("https://raw.githubusercontent.com/slicer/slicer/master/Modules/Loadable/Markups/"
                 "Resources/Schema/markups-schema-v1.0.3.json#")
METRIC_COLUMNS = (
    "length_mm", "length_in_bone_mm", "length_in_ala_mm", "length_outside_bone_mm", "tip_to_target_mm",
    "target", "angle_to_surface_normal_deg", "mediolateral_angle_deg", "craniocaudal_angle_deg",
    "gantry_tilt_deg", "axis_angle_deg", "skin_to_bone_mm", "cement_volume_ml", "approach_crosses",
    "bone_ahead_mm", "shaft_depth_mm",
)

CARD_KEYS = (
    "guidance", "patient_position", "skin_found", "skin_to_bone_mm", "bone_to_tip_mm", "skin_to_tip_mm",
    "needle_length_mm", "midline_offset_mm", "level", "from_level_mm", "slice_index", "table_position_mm",
    "gantry_tilt_deg", "gantry_tilt_toward", "in_plane_angle_deg", "in_plane_hub_toward",
)
C_ARM_KEYS = ("cranial_caudal_deg", "oblique_deg", "detector_side")


def card_columns(needle: dict) -> dict:
    """The procedure card of a needle as flat ``plan.csv`` columns (empty where it does not apply)."""
    card = needle.get("card") or {}
    skin = needle.get("skin_entry_lps") or [None] * 3
    ras = needle.get("skin_entry_ras") or [None] * 3
    arm = card.get("c_arm") or {}
    return {
        **{f"skin_entry_{a}": v for a, v in zip("xyz", skin)},
        **{f"skin_entry_ras_{a}": v for a, v in zip("xyz", ras)},
        **{f"card_{k}": card.get(k) for k in CARD_KEYS},
        **{f"card_c_arm_{k}": arm.get(k) for k in C_ARM_KEYS},
        "card_notes": ";".join(card.get("notes", [])),
    }


def needle_name(needle: dict) -> str:
    """Display name of a needle: ``1 short_axis left``."""
    return f"{needle.get('rank', '')} {needle['technique']} {needle['side']}".strip()


def slicer_markups(needles: list[dict]) -> dict:
    """The needles as a 3D Slicer markups document (one Line per needle, bone entry to tip, LPS mm),
    then, when the needles have skin entries, one point list (``Fiducial``) of them.

    Each line is named as the needle's card in report.html and card.html (:func:`needle_title`,
    ``Needle 1: short axis, patient's left, 11 G (safe)``) and drawn in its verdict's colour
    (``display.color`` and ``display.selectedColor``: :attr:`trajplan.needle.Verdict.rgb`)."""
    markups = []
    for needle in needles:
        markups.append({
            "type": "Line",
            "name": needle_title(needle),
            "coordinateSystem": "LPS",
            "coordinateUnits": "mm",
            "locked": True,
            "fixedNumberOfControlPoints": True,
            "labelFormat": "%N-%d",
            "lastUsedControlPointNumber": 2,
            "controlPoints": [
                {"id": "1", "label": "entry", "description": "bone entry", "position": list(needle["entry_lps"]),
                 "orientation": [-1.0, 0.0, 0.0, 0.0, -1.0, 0.0, 0.0, 0.0, 1.0], "selected": True,
                 "locked": True, "visibility": True, "positionStatus": "defined"},
                {"id": "2", "label": "tip", "description": f"{needle['verdict']}", "position": list(needle["tip_lps"]),
                 "orientation": [-1.0, 0.0, 0.0, 0.0, -1.0, 0.0, 0.0, 0.0, 1.0], "selected": True,
                 "locked": True, "visibility": True, "positionStatus": "defined"},
            ],
            "measurements": [],
            "display": {"visibility": True, "opacity": 1.0, "color": list(Verdict(needle["verdict"]).rgb),
                        "selectedColor": list(Verdict(needle["verdict"]).rgb), "lineThickness": 0.5,
                        "propertiesLabelVisibility": True, "pointLabelsVisibility": True},
        })
    skins = [n for n in needles if n.get("skin_entry_lps") is not None]
    if skins:
        markups.append({
            "type": "Fiducial",
            "name": "skin entries",
            "coordinateSystem": "LPS",
            "coordinateUnits": "mm",
            "locked": True,
            "labelFormat": "%N-%d",
            "lastUsedControlPointNumber": len(skins),
            "controlPoints": [
                {"id": str(k), "label": f"{n.get('rank', k)} skin", "description": f"skin entry of {needle_title(n)}",
                 "position": list(n["skin_entry_lps"]),
                 "orientation": [-1.0, 0.0, 0.0, 0.0, -1.0, 0.0, 0.0, 0.0, 1.0], "selected": True,
                 "locked": True, "visibility": True, "positionStatus": "defined"}
                for k, n in enumerate(skins, start=1)],
            "measurements": [],
            "display": {"visibility": True, "opacity": 1.0, "color": [0.2, 0.4, 1.0], "selectedColor": [0.2, 0.4, 1.0],
                        "propertiesLabelVisibility": True, "pointLabelsVisibility": True},
        })
    return {"@schema": SLICER_SCHEMA, "markups": markups}


def plan_rows(needles: list[dict]) -> list[dict]:
    """Flat rows of ``plan.csv``: identity, verdict, clearances, breach probabilities, metrics,
    then the procedure card (skin entry in LPS and RAS, ``card_*``)."""
    rows = []
    for needle in needles:
        row = {
            "rank": needle.get("rank"), "technique": needle["technique"], "side": needle["side"],
            "gauge": needle["gauge"], "safe": needle["safe"], "verdict": needle["verdict"],
            "reasons": ";".join(needle["reasons"]), "score": needle["score"],
            **{f"entry_{a}": v for a, v in zip("xyz", needle["entry_lps"])},
            **{f"tip_{a}": v for a, v in zip("xyz", needle["tip_lps"])},
            "breach_probability_any": needle.get("breach_probability", {}).get("any"),
            "tip_to_anterior_cortex_mm": needle.get("tip_to_anterior_cortex_mm"),
        }
        row.update({f"clearance_{s}_mm": needle["clearance_mm"].get(s) for s in CRITICAL_STRUCTURES})
        row.update({m: (";".join(v) if isinstance(v := needle["metrics"].get(m), list) else v)
                    for m in METRIC_COLUMNS})
        row.update(card_columns(needle))
        rows.append(row)
    return rows


def listed_needles(plan: dict) -> list[dict]:
    """The needles of ``plan.csv`` and ``plan.mrk.json``: the planned ones, or when no path is
    safe (``outcome`` ``no_safe_path``) the best unsafe candidates, with their verdicts."""
    return plan["alternatives"] if plan.get("outcome") == "no_safe_path" else plan["needles"]


def write_plan(plan: dict, out_dir: str | Path) -> dict[str, Path]:
    """Atomically write ``plan.json``, ``plan.csv``, ``plan.mrk.json``, ``card.html`` (the
    printable procedure cards, :func:`trajplan.card_html.card_page`) and ``load_plan.py`` (the
    folder's loader for 3D Slicer, :mod:`trajplan.io.slicer_script`) into ``out_dir``."""
    from trajplan.card_html import card_page
    from trajplan.io.slicer_script import write_load_plan

    out = Path(out_dir)
    write_json(out / PLAN, plan)
    rows = plan_rows(listed_needles(plan))
    buffer = io.StringIO()
    if rows:
        writer = csv.DictWriter(buffer, fieldnames=list(rows[0]), lineterminator="\n")
        writer.writeheader()
        writer.writerows({k: ("" if v is None else v) for k, v in r.items()} for r in rows)
    write_text(out / PLAN_CSV, buffer.getvalue())
    write_json(out / PLAN_MARKUPS, slicer_markups(listed_needles(plan)))
    write_text(out / CARD, card_page(plan))
    return {"plan": out / PLAN, "csv": out / PLAN_CSV, "markups": out / PLAN_MARKUPS, "card": out / CARD,
            "slicer_script": write_load_plan(out)}


def read_line_markup(path: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """(entry, target) in LPS mm from a 3D Slicer ``.mrk.json`` holding a line (first two points).

    RAS coordinates (as declared by ``coordinateSystem``) are converted to LPS.

    Raises
    ------
    InputError
        If the file is not a markups file or holds no line with two defined points.
    """
    path = Path(path)
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
        markup = next(m for m in doc["markups"] if m.get("type", "Line") == "Line"
                      and len(m.get("controlPoints", [])) >= 2)
        points = np.array([p["position"] for p in markup["controlPoints"][:2]], dtype=float)
    except FileNotFoundError:
        raise InputError(f"{path}: no such file") from None
    except (ValueError, KeyError, TypeError, StopIteration):
        raise InputError(f"{path}: not a 3D Slicer markups file with a two-point line") from None
    if points.shape != (2, 3) or not np.all(np.isfinite(points)):
        raise InputError(f"{path}: the line's control points are not two 3-D positions")
    units = markup.get("coordinateUnits", "mm")
    units = units[0] if isinstance(units, list) and units else units
    if units not in ("mm", "um"):
        raise InputError(f"{path}: unknown coordinateUnits {units!r} (mm or um)")
    if units == "um":
        points /= 1000.0
    system = str(markup.get("coordinateSystem", "LPS")).upper()
    if system == "RAS":
        points[:, :2] *= -1.0
    elif system != "LPS":
        raise InputError(f"{path}: unknown coordinateSystem {system!r} (LPS or RAS)")
    return points[0], points[1]


def markup_coordinate_system(path: str | Path) -> str:
    """``lps`` or ``ras``: how the line that :func:`read_line_markup` reads was saved (call it first)."""
    doc = json.loads(Path(path).read_text(encoding="utf-8"))
    markup = next(m for m in doc["markups"] if m.get("type", "Line") == "Line"
                  and len(m.get("controlPoints", [])) >= 2)
    return str(markup.get("coordinateSystem", "LPS")).lower()
