"""The interactive 3D scene: one self-contained HTML file (rotate, zoom, hide structures; no server).

The anatomy surfaces of :mod:`trajplan.views.surfaces` and the plan's needles (tubes of
their outer diameter, coloured by verdict, entry and tip marked, numbered by rank) are
drawn with plotly, whose JavaScript is embedded in the file, so it opens offline in any
browser. Axes are LPS millimetres; the initial camera is the posterior view. Clicking a
legend entry hides or shows a structure.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from trajplan.io.atomic import atomic_path
from trajplan.needle import Technique, Verdict
from trajplan.volume import Volume

MAX_TRIANGLES = 20_000   # per structure: keeps the file a few MB and the browser responsive


def _rgb(colour: tuple[float, float, float]) -> str:
    return "rgb({},{},{})".format(*(int(round(255 * c)) for c in colour))


def _mesh_trace(mesh, name: str, colour: tuple[float, float, float], opacity: float, *, legend: bool = True):
    import plotly.graph_objects as go

    mesh = mesh.triangulate()
    if mesh.n_cells > MAX_TRIANGLES:
        mesh = mesh.decimate(1.0 - MAX_TRIANGLES / mesh.n_cells)
    faces = mesh.faces.reshape(-1, 4)[:, 1:]
    points = np.asarray(mesh.points)
    return go.Mesh3d(x=points[:, 0], y=points[:, 1], z=points[:, 2], i=faces[:, 0], j=faces[:, 1], k=faces[:, 2],
                     color=_rgb(colour), opacity=opacity, name=name, showlegend=legend, hoverinfo="name",
                     flatshading=False, lighting={"ambient": 0.5, "diffuse": 0.8, "specular": 0.2})


def scene_figure(labels: Volume, plan: dict, *, surfaces: dict | None = None):
    """The plotly figure of the anatomy and the plan's needles (LPS mm)."""
    import plotly.graph_objects as go
    import pyvista as pv

    from trajplan.views.surfaces import label_surfaces

    surfaces = surfaces if surfaces is not None else label_surfaces(labels)
    traces = [_mesh_trace(mesh, name.replace("_", " "), colour, opacity)
              for name, (mesh, colour, opacity) in surfaces.items()]
    for needle in plan.get("needles", []):
        entry, tip = np.asarray(needle["entry_lps"], float), np.asarray(needle["tip_lps"], float)
        start = np.asarray(needle.get("skin_entry_lps") or entry, float)
        colour = Verdict(needle["verdict"]).view_rgb
        label = (f"needle {needle.get('rank')}: {Technique(needle['technique']).words} {needle['side']} "
                 f"{needle['gauge']} G, {needle['verdict']}")
        tube = pv.Line(start, tip).tube(radius=needle["diameter_mm"] / 2, n_sides=16, capping=True)
        traces.append(_mesh_trace(tube, label, colour, 1.0))
        traces.append(go.Scatter3d(
            x=[entry[0], tip[0]], y=[entry[1], tip[1]], z=[entry[2], tip[2]], mode="markers+text",
            marker={"size": 4, "color": [_rgb(colour), "black"]}, text=[f"{needle.get('rank')} entry", "tip"],
            textposition="top center", name=f"needle {needle.get('rank')} entry / tip", showlegend=False,
            hovertext=[f"entry (bone) {np.round(entry, 1).tolist()} mm", f"tip {np.round(tip, 1).tolist()} mm"],
            hoverinfo="text"))
    figure = go.Figure(data=traces)
    figure.update_layout(
        title="trajplan: anatomy and planned needles (LPS mm; click a legend entry to hide it)",
        scene={"aspectmode": "data", "xaxis_title": "x (L) mm", "yaxis_title": "y (P) mm", "zaxis_title": "z (S) mm",
               "camera": {"eye": {"x": 0.0, "y": 1.8, "z": 0.3}, "up": {"x": 0.0, "y": 0.0, "z": 1.0}}},
        margin={"l": 0, "r": 0, "t": 40, "b": 0}, legend={"itemsizing": "constant"}, paper_bgcolor="white")
    return figure


def write_scene_html(labels: Volume, plan: dict, path: str | Path, *, surfaces: dict | None = None) -> Path:
    """Write the interactive scene as one self-contained HTML file (atomically)."""
    figure = scene_figure(labels, plan, surfaces=surfaces)
    with atomic_path(path) as tmp:
        figure.write_html(str(tmp), include_plotlyjs=True, full_html=True,
                          config={"displaylogo": False, "responsive": True})
    return Path(path)
