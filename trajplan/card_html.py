"""The procedure cards as HTML: one box per needle, in words an operator reads at the table.

Used by ``report.html`` (one card per planned needle) and by ``card.html`` (every card of the
plan on one printable page). Every value is escaped; nothing is shown as Python or JSON text.
"""

from __future__ import annotations

import html

from trajplan.labels import Side
from trajplan.needle import Technique
from trajplan.planning.ahead import REACH_MM as AHEAD_REACH_MM
from trajplan.planning.ahead import REASON_TEXT as AHEAD_TEXT
from trajplan.planning.ct_guard import REASON_TEXT
from trajplan.planning.defaults import CLEARANCE_CAP_MM
from trajplan.planning.scoring import REASON_TEXT as SCORING_TEXT

SIDE_WORDS = {side.value: side.words for side in Side}
REASON_WORDS = {
    "segmentation_implausible": "the segmentation's sacrum is implausible (too small, or off the body's midline), "
                                "so its labels are not trusted",
    **REASON_TEXT,
    **AHEAD_TEXT,
    **SCORING_TEXT,
}

COMPACT_CLEARANCES = 4     # rows of the clearance table on the printable card page

CARD_STYLE = """
.card{border:2px solid #444;border-radius:6px;padding:4px 10px;margin:8px 0;max-width:1100px;page-break-inside:avoid}
.card h3{margin:4px 0 6px 0}.card table{font-size:13px;margin:4px 0}.card td,.card th{text-align:left}
.card td.n{text-align:right}.card .note{color:#8a4b00}.card .cols{display:flex;flex-wrap:wrap;gap:6px 24px}
.card .cols>div{flex:1 1 380px}.card p{margin:4px 0}
"""


def esc(value: object) -> str:
    """HTML-escaped text of a value (None as an empty string)."""
    return html.escape("" if value is None else str(value))


def structure_words(name: str) -> str:
    """A label-table structure name in human words: ``foramen_S2_left`` -> ``S2 foramen (left)``."""
    parts = name.split("_")
    if parts[0] == "foramen" and len(parts) == 3:
        return f"{parts[1]} foramen ({parts[2]})"
    special = {"canal": "sacral canal", "anterior_cortex": "anterior cortex", "L5_S1_disc": "L5-S1 disc",
               "L5": "L5 vertebra"}
    if name in special:
        return special[name]
    if parts[-1] in ("left", "right"):
        base = " ".join(parts[:-1]).replace("si joint", "SI joint")
        return f"{base} ({parts[-1]})"
    return name.replace("_", " ")


def reason_words(reason: str) -> str:
    """Why a needle is unsafe, in words."""
    if reason in REASON_WORDS:
        return REASON_WORDS[reason]
    if reason in ("ilium_left", "ilium_right", "L5"):
        return f"the approach crosses the {structure_words(reason)}"
    return f"too close to the {structure_words(reason)}"


def technique_words(technique: str) -> str:
    """``short_axis`` -> ``short axis`` (:attr:`trajplan.needle.Technique.words`)."""
    return Technique(technique).words


def needle_title(needle: dict) -> str:
    """The name of a needle in report.html and card.html (its card's heading), as plain text:
    ``Needle 1: short axis, patient's left, 11 G (safe)``; also the name of its line in
    ``plan.mrk.json``."""
    def text(value: object) -> str:
        return "" if value is None else str(value)
    return (f"Needle {text(needle.get('rank', ''))}: {technique_words(needle['technique'])}, "
            f"{SIDE_WORDS.get(needle['side'], needle['side'])}, {text(needle.get('gauge'))} G "
            f"({text(needle.get('verdict'))})")


def mm(value: float | None, digits: int = 1) -> str:
    """A length in mm as text (``not known`` for None)."""
    return "not known" if value is None else f"{value:.{digits}f} mm"


def _bone_ahead_words(needle: dict) -> str:
    """``; bone past the tip 8.5 mm`` (the metric ``bone_ahead_mm``: the room an overshoot has), ``30 mm
    or more`` at its reach; empty for a plan written before it was measured."""
    ahead = (needle.get("metrics") or {}).get("bone_ahead_mm")
    if ahead is None:
        return ""
    return f"; bone past the tip {capped_mm(ahead, AHEAD_REACH_MM)}"


def point_text(point) -> str:
    """``(x, y, z)`` with one decimal."""
    return "(" + ", ".join(f"{float(v):.1f}" for v in point) + ")"


def capped_mm(value: float, cap: float) -> str:
    """A length measured up to ``cap`` mm, in words: ``8.5 mm``, or at the cap ``30 mm or more``."""
    return f"{cap:g} mm or more" if value >= cap else f"{value:.1f} mm"


def clearance_text(value: float) -> str:
    """A clearance in words: the cap reads ``30 mm or more``."""
    return capped_mm(value, CLEARANCE_CAP_MM)


def clearance_rows(needle: dict, margins: dict[str, float]) -> list[tuple[str, str, str, str]]:
    """(structure in words, clearance, margin, room above the margin), closest structure first."""
    out = []
    for name, value in sorted(needle.get("clearance_mm", {}).items(), key=lambda kv: (kv[1], kv[0])):
        margin = margins.get(name)
        if margin is None:
            room = ""
        elif value >= CLEARANCE_CAP_MM:
            room = f"{CLEARANCE_CAP_MM - margin:g} mm or more"
        else:
            room = f"{value - margin:+.1f} mm"
        out.append((structure_words(name), clearance_text(value), "" if margin is None else f"{margin:g} mm", room))
    return out


def _offset_words(card: dict) -> str:
    parts = []
    offset = card.get("midline_offset_mm")
    if offset is not None:
        parts.append("on the midline" if abs(offset) < 0.05 else
                     f"{abs(offset):.1f} mm to the {'left' if offset > 0 else 'right'} of the body's midline")
    level, from_level = card.get("level"), card.get("from_level_mm")
    if level and from_level is not None:
        parts.append(f"at the height of the {level} foramina" if abs(from_level) < 0.05 else
                     f"{abs(from_level):.1f} mm {'above (cranial to)' if from_level > 0 else 'below (caudal to)'} "
                     f"the {level} foramina")
    return "; ".join(parts) or "not known"


def guidance_rows(card: dict) -> list[tuple[str, str]]:
    """The CT or C-arm numbers of a card, in words."""
    position = card.get("patient_position", "prone")
    if card.get("guidance") == "ct":
        tilt, toward = card.get("gantry_tilt_deg"), card.get("gantry_tilt_toward")
        tilt_text = ("none (0 deg): an axial slice" if not tilt else
                     f"tilt {tilt:.1f} deg, top of gantry toward the {toward}")
        angle, hub = card.get("in_plane_angle_deg"), card.get("in_plane_hub_toward")
        angle_text = ("vertical (0 deg)" if not angle else
                      f"{angle:.1f} deg from vertical, hub leaning toward the {SIDE_WORDS.get(hub, hub)}")
        return [
            ("guidance", f"CT (patient {position})"),
            ("entry slice", f"slice index {card.get('slice_index')} (0-based, in the CT as stored); "
                            f"table position {card.get('table_position_mm'):.1f} mm"),
            ("gantry", f"{tilt_text} (patient {position})"),
            ("needle in the slice", angle_text),
        ]
    arm = card.get("c_arm") or {}
    cc, oblique = arm.get("cranial_caudal_deg"), arm.get("oblique_deg")
    cc_text = ("no cranial or caudal tilt" if not cc else
               f"{abs(cc):.1f} deg "
               + ("cranial (detector toward the head)" if cc > 0 else "caudal (detector toward the feet)"))
    ob_text = ("no oblique rotation" if not oblique else
               f"{abs(oblique):.1f} deg oblique toward the {SIDE_WORDS['left' if oblique > 0 else 'right']}")
    return [
        ("guidance", f"fluoroscopy (patient {position})"),
        ("C-arm down the needle", f"{cc_text}; {ob_text}; detector {arm.get('detector_side', '')}"),
    ]


def card_html(needle: dict, margins: dict[str, float], *, compact: bool = False) -> str:
    """One needle's procedure card as an HTML block.

    ``compact`` (for the printable ``card.html``): coordinates on fewer lines, the clearance table
    holds the COMPACT_CLEARANCES closest structures and one line gives the smallest clearance of
    all the others.
    """
    card = needle.get("card")
    title = esc(needle_title(needle))
    if not card:
        return f"<div class='card'><h3>{title}</h3><p>No procedure card: this plan was made without its CT.</p></div>"
    length = card.get("needle_length_mm")
    if compact:
        where = [("skin entry", f"LPS {point_text(needle['skin_entry_lps'])}; "
                                f"RAS {point_text(needle['skin_entry_ras'])}"),
                 ("bone entry, tip (LPS)", f"{point_text(needle['entry_lps'])}, {point_text(needle['tip_lps'])}")]
    else:
        where = [("skin entry (LPS mm)", point_text(needle["skin_entry_lps"])),
                 ("skin entry (RAS mm, 3D Slicer)", point_text(needle["skin_entry_ras"]))]
    rows = [
        *where[:1 if compact else 2],
        ("from landmarks" if compact else "skin entry from landmarks", _offset_words(card)),
        *(where[1:] if compact else [("bone entry (LPS mm)", point_text(needle["entry_lps"])),
                                     ("tip (LPS mm)", point_text(needle["tip_lps"]))]),
        ("depth", f"skin to bone {mm(card.get('skin_to_bone_mm'))}; bone to tip {mm(card.get('bone_to_tip_mm'))}; "
                  f"skin to tip {mm(card.get('skin_to_tip_mm'))}" + _bone_ahead_words(needle)),
        ("needle length", f"{length / 10:g} cm ({length:g} mm)" if length is not None
         else "none of the needle lengths at hand (see the note)"),
        *guidance_rows(card),
    ]
    if compact:
        short = {"from landmarks": "landmarks", "bone entry, tip (LPS)": "bone entry, tip",
                 "needle length": "needle", "C-arm down the needle": "C-arm", "needle in the slice": "in the slice"}
        rows = [(short.get(k, k), v) for k, v in rows]
    body = "".join(f"<tr><th>{esc(k)}</th><td>{esc(v)}</td></tr>" for k, v in rows)
    reasons = needle.get("reasons") or []
    why = ("<p class='note'>Unsafe: " + esc("; ".join(reason_words(r) for r in reasons)) + ".</p>") if reasons else ""
    said = card.get("notes", [])
    notes = (f"<p class='note'>{'Notes' if len(said) > 1 else 'Note'}: "
             + esc(" ".join(f"({k}) {n}." if len(said) > 1 else f"{n}." for k, n in enumerate(said, start=1)))
             + "</p>") if said else ""
    clear = clearance_rows(needle, margins)
    near = [row for row in clear if not row[1].endswith("or more")]
    far = [row[0] for row in clear if row[1].endswith("or more")]
    shown = near[:COMPACT_CLEARANCES] if compact else near
    table = ""
    if shown:
        table = ("<table><tr><th>structure (closest first)</th><th>clearance</th><th>margin</th>"
                 "<th>above the margin</th></tr>"
                 + "".join(f"<tr><td>{esc(s)}</td><td class='n'>{esc(c)}</td><td class='n'>{esc(m)}</td>"
                           f"<td class='n'>{esc(r)}</td></tr>" for s, c, m, r in shown) + "</table>")
    if compact and len(clear) > len(shown):
        rest = clear[len(shown)][1]
        rest = rest if rest.endswith("or more") else f"{rest} or more"
        table += f"<p>Every other structure: {esc(rest)} (all in report.html).</p>"
    elif far:
        table += f"<p>{esc(clearance_text(CLEARANCE_CAP_MM))} from: {esc('; '.join(far))}.</p>"
    return (f"<div class='card'><h3>{title}</h3><div class='cols'><div><table>{body}</table>{why}{notes}</div>"
            f"<div>{table}</div></div></div>")


def case_words(plan: dict) -> tuple[str, str]:
    """(case name, date of planning) for headings; the anonymous id when no name was given."""
    case = plan.get("case") or {}
    sha = (plan.get("input") or {}).get("sha256") or ""
    name = case.get("name") or (f"case-{sha[:12]}" if sha else "unnamed case")
    when = case.get("planned_utc") or ""
    date = when.replace("T", " ").replace("Z", " UTC") if when else "date not recorded"
    return name, date


def card_page(plan: dict) -> str:
    """``card.html``: every needle's procedure card on one printable page (A4 portrait, two cards a
    row, up to six cards)."""
    name, date = case_words(plan)
    needles = plan.get("needles", [])
    margins = plan.get("parameters", {}).get("margins_mm", {})
    drawn = (plan.get("drawn_line") or {}).get("note")      # a page of trajplan evaluate
    if needles:
        cards = "<div class='grid'>" + "".join(card_html(n, margins, compact=True) for n in needles) + "</div>"
    else:
        cards = "<p><b>No safe needle path.</b> There is no card to follow; see report.html for the reasons.</p>"
    warnings = [w for w in plan.get("warnings", []) if not w.startswith("needle ")]    # those are on the cards
    warn = ("<p><b>Warnings:</b></p><ul>" + "".join(f"<li>{esc(w)}</li>" for w in warnings) + "</ul>"
            if warnings else "")
    return "\n".join([
        "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>",
        f"<title>Procedure cards: {esc(name)}</title>",
        f"<style>{CARD_STYLE}"
        "body{font-family:system-ui,Arial,sans-serif;margin:10px;color:#000;font-size:11px}"
        "h1{font-size:15px;margin:0 0 2px 0}.grid{display:grid;grid-template-columns:1fr 1fr;gap:6px}"
        ".grid .card{margin:0;max-width:none}.card .cols{display:block}.card table{font-size:11px}"
        ".card h3{font-size:12px;margin:2px 0}.card th,.card td{padding:0 4px;line-height:1.15}ul{margin:2px 0}"
        ".card p{margin:2px 0;line-height:1.15}.card th{white-space:nowrap;vertical-align:top}"
        "@page{size:A4;margin:8mm}@media print{body{margin:0;font-size:9px}.card table{font-size:9px}"
        ".card h3{font-size:10px}}</style></head><body>",
        f"<h1>Sacroplasty procedure cards: {esc(name)}</h1>",
        f"<p>{'Checked' if drawn else 'Planned'} {esc(date)}. Coordinates in mm: LPS (+x left, +y posterior, "
        "+z up) and RAS (3D Slicer). Check every number against the images before use.</p>",
        (f"<p><b>A hand-drawn line</b> (trajplan evaluate): {esc(drawn)}.</p>" if drawn else ""),
        cards, warn, "</body></html>",
    ])
