"""The self-contained HTML report of a plan: case summary, ranked needles, warnings, views.

Every image is embedded as a data URI and no script, style sheet or font is loaded
from anywhere, so the one file opens offline in any browser. All text is escaped.
No patient identity is shown: the case is identified by its input checksum.
"""

from __future__ import annotations

import base64
import html
from pathlib import Path

from trajplan.card_html import (
    CARD_STYLE,
    card_html,
    case_words,
    clearance_text,
    reason_words,
    structure_words,
    technique_words,
)
from trajplan.io.atomic import write_text
from trajplan.io.plan_folder import REPORT, SCENE_HTML, SCENE_PNG
from trajplan.plan_io import METRIC_COLUMNS
from trajplan.planning.defaults import CLEARANCE_CAP_MM

STYLE = """
body{font-family:system-ui,Arial,sans-serif;margin:24px;color:#222;max-width:1400px}
table{border-collapse:collapse;font-size:13px;margin:8px 0}td,th{border:1px solid #bbb;padding:3px 6px;text-align:right}
th{background:#eee}td.l{text-align:left}.safe{background:#d7f2dc}.marginal{background:#ffe9b3}.unsafe{background:#f7c6c6}
.views{display:flex;flex-wrap:wrap;gap:12px}.views figure{margin:0}.views img{width:460px;border:1px solid #ccc}
.warn{color:#8a4b00}.nosafe{border:2px solid #b00;background:#fbe4e4;padding:4px 12px;margin:12px 0}
code{background:#f4f4f4;padding:1px 3px}
""" + CARD_STYLE


def _esc(value: object) -> str:
    """Escaped text of a cell: numbers with 2 decimals, lists joined in words (``none`` when
    empty), yes / no, never Python's own rendering of a list or dict."""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:.2f}"
    if isinstance(value, (list, tuple)):
        return html.escape(", ".join(_plain(v) for v in value) or "none")
    if isinstance(value, dict):
        return html.escape("; ".join(f"{k}: {_plain(v)}" for k, v in value.items()) or "none")
    return html.escape("" if value is None else str(value))


def _plain(value: object) -> str:
    """Unescaped words of one value (used inside :func:`_esc`)."""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, (list, tuple)):
        return ", ".join(_plain(v) for v in value) or "none"
    if isinstance(value, dict):
        return "; ".join(f"{k}: {_plain(v)}" for k, v in value.items()) or "none"
    return "" if value is None else str(value)


def _clearance_cell(value: object) -> str:
    """A clearance in the needle tables: the cap reads ``30 mm or more``."""
    if isinstance(value, (int, float)) and not isinstance(value, bool) and value >= CLEARANCE_CAP_MM:
        return _esc(clearance_text(float(value)))
    return _esc(value)


def _segmentation_words(seg: dict | None) -> str:
    """``{"source": "ct", "partial": False}`` in words."""
    if not seg:
        return "not recorded"
    source = {"ct": "segmented from the CT by trajplan", "labels file": "a label map given with --labels",
              "labels given": "a label map given to trajplan.plan"}.get(
        seg.get("source"), f"from {seg.get('source')}")
    return f"{source}; {'partial (see the warnings)' if seg.get('partial') else 'complete'}"


def _position_words(plan: dict) -> str:
    pos = plan.get("patient_position") or {}
    if not pos:
        return "not recorded"
    source = {"dicom": "from the DICOM PatientPosition", "option": "as given with --position",
              "assumed": "assumed (the input does not say)"}.get(pos.get("source"), pos.get("source", ""))
    return f"{pos.get('position')}, {source}"


def _cards(plan: dict) -> list[str]:
    """The procedure card of every planned needle."""
    needles = plan.get("needles", [])
    if not needles:
        return []
    margins = plan.get("parameters", {}).get("margins_mm", {})
    return ["<h2>Procedure cards (at the table)</h2>",
            "<p>Printable on one page: <a href='card.html'>card.html</a> beside this report. "
            "Clearances are from the needle's outer surface; the margin is the smallest clearance allowed.</p>",
            *[card_html(n, margins) for n in needles]]


def _parameters(params: dict) -> str:
    """The planning parameters as a table in words."""
    names = {"technique": "technique", "gauge": "needle gauge", "needles": "needles asked for",
             "side": "side", "min_separation_mm": "smallest distance between needles (mm)",
             "margins_mm": "margins (mm)", "weights": "score weights", "placement_error": "placement error"}
    rows = []
    for key, value in params.items():
        if key == "margins_mm" and isinstance(value, dict):
            value = "; ".join(f"{structure_words(k)} {v:g}" for k, v in value.items())
        elif isinstance(value, dict):
            value = "; ".join(f"{_column_words(k)}: {_plain(v)}" for k, v in value.items())
        rows.append(f"<tr><th>{_esc(names.get(key, key.replace('_', ' ')))}</th><td class='l'>{_esc(value)}</td></tr>")
    return "<table>" + "".join(rows) + "</table>"


def _image(path: Path, caption: str) -> str:
    data = base64.b64encode(Path(path).read_bytes()).decode("ascii")
    return (f'<figure><img alt="{_esc(caption)}" src="data:image/png;base64,{data}">'
            f"<figcaption>{_esc(caption)}</figcaption></figure>")


def _column_words(name: str) -> str:
    """A metric key as a column heading: ``length_in_bone_mm`` -> ``length in bone (mm)``."""
    for suffix, unit in (("_mm", "mm"), ("_deg", "deg"), ("_ml", "ml")):
        if name.endswith(suffix):
            return f"{name[:-len(suffix)].replace('_', ' ')} ({unit})"
    return name.replace("_", " ")


def _needle_table(needles: list[dict]) -> str:
    structures = sorted({s for n in needles for s in n["clearance_mm"]})
    head = ["#", "technique", "side", "gauge", "verdict", "why unsafe", "score", "P(breach)",
            "bone entry LPS mm", "tip LPS mm", *[f"{structure_words(s)} (mm)" for s in structures],
            *[_column_words(m) for m in METRIC_COLUMNS]]
    rows = ["<tr>" + "".join(f"<th>{_esc(h)}</th>" for h in head) + "</tr>"]
    for n in needles:
        crosses = n["metrics"].get("approach_crosses")
        metrics = {**n["metrics"], "approach_crosses": [structure_words(b) for b in crosses or []]}
        cells = [n.get("rank"), technique_words(n["technique"]), n["side"], n["gauge"], n["verdict"],
                 "; ".join(reason_words(r) for r in n["reasons"]) or "none",
                 n["score"], n.get("breach_probability", {}).get("any"),
                 ", ".join(f"{v:.1f}" for v in n["entry_lps"]), ", ".join(f"{v:.1f}" for v in n["tip_lps"]),
                 *[n["clearance_mm"].get(s) for s in structures], *[metrics.get(m) for m in METRIC_COLUMNS]]
        first_clearance = 10
        row = "".join(f'<td class="l">{_esc(c)}</td>' if i in (1, 2, 5) else
                      f"<td>{_clearance_cell(c)}</td>" if first_clearance <= i < first_clearance + len(structures)
                      else f"<td>{_esc(c)}</td>" for i, c in enumerate(cells))
        rows.append(f'<tr class="{_esc(n["verdict"])}">{row}</tr>')
    return "<table>" + "".join(rows) + "</table>"


def _sections(sections: dict[str, dict[str, Path]]) -> list[str]:
    out = []
    for title, images in sections.items():
        out += [f"<h2>{_esc(title)}</h2><div class='views'>", *[_image(p, c) for c, p in images.items()], "</div>"]
        if title == "3D views":
            out.append("<p>Interactive 3D scene (rotate, zoom, hide structures): "
                       "<a href='scene.html'>scene.html</a> beside this report.</p>")
    return out


def _no_safe_path(plan: dict) -> list[str]:
    """The banner of a plan without a safe needle: why nothing fits, and where the closest are."""
    if plan.get("outcome") != "no_safe_path":
        return []
    reasons = "".join(f"<li>{_esc(w)}</li>" for w in plan.get("warnings", []))
    why = ("The segmentation's sacrum is implausible, so no candidate is called safe, whatever its margins"
           if plan.get("segmentation", {}).get("implausible") else "No candidate keeps every margin")
    return ["<div class='nosafe'><h2>No safe needle path</h2>",
            f"<p>{why}. What blocks each technique and side:</p><ul>{reasons}</ul>",
            "<p>The closest candidates are listed under <a href='#alternatives'>Alternatives</a> "
            "with their verdict (unsafe) and reasons; none of them is a plan.</p></div>"]


def report_html(plan: dict, sections: dict[str, dict[str, Path]]) -> str:
    """The report page for ``plan`` with its pictures (section -> {caption: PNG path})."""
    inp = plan.get("input", {})
    geometry = inp.get("geometry", {})
    warnings = plan.get("warnings", [])
    name, date = case_words(plan)
    shape = " x ".join(str(v) for v in geometry.get("shape", [])) or "not recorded"
    spacing = " x ".join(f"{v:g}" for v in geometry.get("spacing", [])) or "not recorded"
    origin = ("(" + ", ".join(f"{v:.1f}" for v in geometry["origin"]) + ")" if geometry.get("origin")
              else "not recorded")
    parts = [
        "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>",
        f"<title>trajplan report: {_esc(name)}</title>", f"<style>{STYLE}</style></head><body>",
        f"<h1>Sacroplasty needle plan: {_esc(name)}</h1>",
        f"<p>Planned {_esc(date)}.</p>",
        *_no_safe_path(plan),
        "<h2>Case</h2><table>",
        f"<tr><th>case</th><td class='l'>{_esc(name)}</td></tr>",
        f"<tr><th>planned</th><td class='l'>{_esc(date)}</td></tr>",
        f"<tr><th>input checksum (SHA-256)</th><td class='l'><code>{_esc(inp.get('sha256'))}</code></td></tr>",
        f"<tr><th>format</th><td class='l'>{_esc(inp.get('format'))}</td></tr>",
        f"<tr><th>voxels</th><td class='l'>{_esc(shape)}</td></tr>",
        f"<tr><th>spacing (mm)</th><td class='l'>{_esc(spacing)}</td></tr>",
        f"<tr><th>origin (LPS mm)</th><td class='l'>{_esc(origin)}</td></tr>",
        f"<tr><th>segmentation</th><td class='l'>{_esc(_segmentation_words(plan.get('segmentation')))}</td></tr>",
        f"<tr><th>patient position</th><td class='l'>{_esc(_position_words(plan))}</td></tr>",
        "</table>",
        "<h2>Warnings</h2>" + ("<ul>" + "".join(f"<li class='warn'>{_esc(w)}</li>" for w in warnings) + "</ul>"
                               if warnings else "<p>none</p>"),
        *_cards(plan),
        "<h2>Planned needles (best first)</h2>", _needle_table(plan.get("needles", [])),
        "<h2>Technique comparison</h2><table><tr><th>plan</th><th>needles</th><th>target coverage</th>"
        "<th>cement ml</th><th>min clearance mm</th><th>max P(breach)</th></tr>",
        *[f"<tr><td class='l'>{_esc(k)}</td><td>{_esc(v.get('needles'))}</td><td>{_esc(v.get('target_coverage'))}</td>"
          f"<td>{_esc(v.get('cement_volume_ml'))}</td><td>{_esc(v.get('min_clearance_mm'))}</td>"
          f"<td>{_esc(v.get('max_breach_probability'))}</td></tr>" for k, v in plan.get("comparison", {}).items()],
        "</table>",
        *_sections(sections),
        "<h2 id='alternatives'>Alternatives</h2>", _needle_table(plan.get("alternatives", [])),
        "<h2>Parameters</h2>", _parameters(plan.get("parameters", {})),
        f"<p>{_esc(plan.get('software', {}).get('name'))} {_esc(plan.get('software', {}).get('version'))}; "
        "coordinates are LPS millimetres.</p></body></html>",
    ]
    return "\n".join(parts)


def render_views(out_dir: str | Path, *, labels, plan: dict, ct=None, window: str = "bone"
                 ) -> dict[str, dict[str, Path]]:
    """Every picture of a plan folder: 3D views, the interactive scene, CT slices, fluoroscopy.

    Writes ``scene.png`` (the posterior view), ``views/<view>.png`` (posterior, lateral,
    inlet, outlet and ``needle<rank>`` down each needle) and ``scene.html``; with the CT (``ct``, in HU) also
    ``slices/needle<rank>_{plane,axial_entry,axial_mid,axial_tip}.png`` in ``window``
    (``bone`` or ``soft``) and ``fluoro/{ap,lateral,inlet,outlet}.png``.

    Returns
    -------
    dict
        Section name -> {caption: PNG path}, in report order.
    """
    from trajplan.views.scene3d import VIEWS, needle_view_name, render_scene_png
    from trajplan.views.scene_html import write_scene_html
    from trajplan.views.surfaces import label_surfaces

    out = Path(out_dir)
    surfaces = label_surfaces(labels)
    render_scene_png(labels, plan, out / SCENE_PNG, surfaces=surfaces)
    sections: dict[str, dict[str, Path]] = {"3D views": {}}
    views = list(VIEWS) + [needle_view_name(n) for n in plan.get("needles", [])]
    for view in views:
        caption = f"down needle {view[6:]}" if view.startswith("needle") else f"{view} view"
        sections["3D views"][caption] = render_scene_png(labels, plan, out / "views" / f"{view}.png", view=view,
                                                         surfaces=surfaces, size=(800, 600))
    write_scene_html(labels, plan, out / SCENE_HTML, surfaces=surfaces)
    if ct is not None:
        from trajplan.views.fluoro import render_fluoro
        from trajplan.views.slices import render_needle_slices

        sections["CT slices along the needles"] = render_needle_slices(ct, labels, plan, out, window=window)
        sections["Simulated fluoroscopy"] = render_fluoro(ct, plan, out)
    return sections


def write_report(out_dir: str | Path, *, labels, plan: dict, ct=None, window: str = "bone") -> Path:
    """Render every view of the plan (:func:`render_views`) and write ``out_dir/report.html``."""
    out = Path(out_dir)
    sections = render_views(out, labels=labels, plan=plan, ct=ct, window=window)
    path = out / REPORT
    write_text(path, report_html(plan, sections))
    return path
