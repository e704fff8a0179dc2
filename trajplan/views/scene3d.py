"""The 3D scene: anatomy surfaces and needles (true diameter, coloured by verdict), off-screen.

Standard views are defined in LPS terms (camera direction from the focal point):

| view | camera at | up |
| --- | --- | --- |
| posterior | behind the patient (+y) | superior (+z) |
| lateral | patient's left (+x) | superior |
| inlet | above and in front, 40 deg from the axial plane looking caudally at the pelvic inlet | posterior |
| outlet | below and in front, 40 deg, looking cranially along the sacrum | superior |
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from trajplan import labels as lt
from trajplan.needle import Verdict
from trajplan.volume import Volume

if not os.environ.get("DISPLAY"):
    os.environ.setdefault("VTK_DEFAULT_OPENGL_WINDOW", "vtkEGLRenderWindow")

VIEWS: dict[str, tuple[tuple[float, float, float], tuple[float, float, float]]] = {
    "posterior": ((0.0, 1.0, 0.0), (0.0, 0.0, 1.0)),
    "lateral": ((1.0, 0.0, 0.0), (0.0, 0.0, 1.0)),
    "inlet": ((0.0, -np.cos(np.deg2rad(40)), np.sin(np.deg2rad(40))), (0.0, 1.0, 0.0)),
    "outlet": ((0.0, -np.cos(np.deg2rad(40)), -np.sin(np.deg2rad(40))), (0.0, 0.0, 1.0)),
}
WINDOW = (1024, 768)


def _plotter(size: tuple[int, int]):
    import pyvista as pv

    pv.OFF_SCREEN = True
    plotter = pv.Plotter(off_screen=True, window_size=list(size))
    plotter.set_background("white")
    return plotter


def add_needles(plotter, needles: list[dict]) -> None:
    """Needles as tubes of their outer diameter, entry and tip marked, labelled by rank."""
    import pyvista as pv

    for needle in needles:
        entry, tip = np.asarray(needle["entry_lps"], float), np.asarray(needle["tip_lps"], float)
        start = np.asarray(needle.get("skin_entry_lps") or entry, float)
        colour = Verdict(needle["verdict"]).view_rgb
        tube = pv.Line(start, tip).tube(radius=needle["diameter_mm"] / 2, n_sides=24, capping=True)
        plotter.add_mesh(tube, color=colour, smooth_shading=True)
        plotter.add_mesh(pv.Sphere(radius=needle["diameter_mm"], center=entry), color=colour)
        plotter.add_mesh(pv.Sphere(radius=needle["diameter_mm"] * 0.8, center=tip), color="black")
        if needle.get("rank") is not None:
            plotter.add_point_labels([start], [str(needle["rank"])], font_size=22, point_size=1,
                                     text_color="black", shape_opacity=0.6, always_visible=True)


def scene_bounds(labels: Volume) -> tuple[np.ndarray, float]:
    """Focal point (sacral bone centre, LPS) and camera distance for the standard views."""
    idx = np.argwhere(lt.sacral_bone(labels))
    world = labels.index_to_world(idx[:: max(len(idx) // 20000, 1)])
    centre = world.mean(axis=0)
    radius = float(np.linalg.norm(world - centre, axis=1).max())
    return centre, 3.2 * radius


def needle_view_name(needle: dict) -> str:
    """The view name that looks down one needle: ``needle<rank>``."""
    return f"needle{needle['rank']}"


def _camera(labels: Volume, plan: dict, view: str) -> list:
    centre, distance = scene_bounds(labels)
    if view in VIEWS:
        direction, up = VIEWS[view]
        return [tuple(centre + distance * np.asarray(direction)), tuple(centre), up]
    needle = next((n for n in plan.get("needles", []) if needle_view_name(n) == view), None)
    if needle is None:
        raise ValueError(f"unknown view {view!r}: use {', '.join(VIEWS)} or needle<rank> of a planned needle")
    d = np.asarray(needle["entry_lps"], float) - np.asarray(needle["tip_lps"], float)
    d /= np.linalg.norm(d)
    up = (0.0, 0.0, 1.0) if abs(d[2]) < 0.9 else (0.0, 1.0, 0.0)
    tip = np.asarray(needle["tip_lps"], float)
    return [tuple(tip + 0.6 * distance * d), tuple(tip), up]


def build_scene(labels: Volume, plan: dict, *, view: str = "posterior", size: tuple[int, int] = WINDOW,
                surfaces: dict | None = None):
    """An off-screen plotter holding the anatomy and the plan's needles, camera set to ``view``.

    ``view`` is one of :data:`VIEWS` or ``needle<rank>``: looking down that needle from
    behind its entry, centred on its tip.
    """
    from trajplan.views.surfaces import label_surfaces

    surfaces = surfaces if surfaces is not None else label_surfaces(labels)
    plotter = _plotter(size)
    for mesh, colour, opacity in surfaces.values():
        plotter.add_mesh(mesh, color=colour, opacity=opacity, smooth_shading=True)
    add_needles(plotter, plan.get("needles", []))
    plotter.camera_position = _camera(labels, plan, view)
    title = f"view down needle {view[6:]}" if view.startswith("needle") else f"{view} view"
    plotter.add_text(f"{title}\n{image_sides(plotter)}", font_size=11, color="black")
    plotter.add_axes(xlabel="L", ylabel="P", zlabel="S", color="black", line_width=3,
                     viewport=(0.0, 0.0, 0.16, 0.22))    # orientation marker: LPS axes, lower left
    return plotter


SIDE_WORDS = (("patient's right", "patient's left"), ("anterior", "posterior"), ("inferior", "superior"))


def image_sides(plotter) -> str:
    """What lies toward the image's left and right edges, in patient terms (from the camera).

    The image's rightward direction is the camera's direction of projection crossed with its up
    vector; its largest LPS component names the sides (for a posterior view: the patient's left on
    the image left).
    """
    camera = plotter.camera
    right = np.cross(np.asarray(camera.direction, float), np.asarray(camera.up, float))
    axis = int(np.argmax(np.abs(right)))
    negative, positive = SIDE_WORDS[axis]
    left_word, right_word = (negative, positive) if right[axis] > 0 else (positive, negative)
    return f"image left: {left_word}; image right: {right_word}"


def scene_legend(surfaces: dict, needles: list[dict]) -> list[tuple[str, tuple[int, int, int]]]:
    """Names and colours (0-255) of the surfaces drawn and of the needles' verdicts."""
    from trajplan.card_html import structure_words

    names = {"sacrum": "sacral bone", "ilium": "ilia", "si_joints": "SI joints"}
    out = [(names.get(name, structure_words(name)), tuple(int(round(c * 255)) for c in colour))
           for name, (_, colour, _) in surfaces.items()]
    verdicts = [v for v in Verdict if any(n.get("verdict") == v for n in needles)]
    out += [(f"needle: {v}", tuple(int(round(c * 255)) for c in v.view_rgb)) for v in verdicts]
    if needles:
        out.append(("needle tip", (0, 0, 0)))
    return out


def world_to_pixel(plotter, points: np.ndarray) -> np.ndarray:
    """Pixel (row, column) in the plotter's screenshot of world points (n, 3), LPS mm."""
    renderer = plotter.renderer
    height = plotter.window_size[1]
    out = []
    for point in np.atleast_2d(points):
        renderer.SetWorldPoint(*point, 1.0)
        renderer.WorldToDisplay()
        x, y, _ = renderer.GetDisplayPoint()
        out.append((height - 1 - y, x))
    return np.asarray(out)


def render_scene_png(labels: Volume, plan: dict, path: str | Path, *, view: str = "posterior",
                     size: tuple[int, int] = WINDOW, surfaces: dict | None = None) -> Path:
    """Render anatomy and the plan's needles from ``view`` into a PNG (atomically).

    The 3D picture (``size``) fills the left of the PNG, pixel for pixel as :func:`world_to_pixel`
    maps it; to its right a white panel holds the colour legend (surfaces, needle verdicts) and
    the orientation marker's key. On the picture: the view's name, which patient side lies toward
    the image's left and right edges (:func:`image_sides`), and the LPS axes at the lower left.
    """
    from matplotlib.figure import Figure

    from trajplan.io.atomic import atomic_path
    from trajplan.views.figure import draw_legend_panel, legend_panel_px
    from trajplan.views.surfaces import label_surfaces

    surfaces = surfaces if surfaces is not None else label_surfaces(labels)
    plotter = build_scene(labels, plan, view=view, size=size, surfaces=surfaces)
    rgb = plotter.screenshot(None, return_img=True)
    plotter.close()
    legend = scene_legend(surfaces, plan.get("needles", []))
    rows, cols = rgb.shape[:2]
    dpi, font = 100, max(8.0, rows / 60)
    panel = max(legend_panel_px(legend, font, dpi), int(14 * font * dpi / 72))
    fig = Figure(figsize=((cols + panel) / dpi, rows / dpi), dpi=dpi)
    ax = fig.add_axes((0, 0, cols / (cols + panel), 1))
    ax.imshow(rgb, interpolation="nearest", extent=(-0.5, cols - 0.5, rows - 0.5, -0.5))
    ax.axis("off")
    draw_legend_panel(fig, cols / (cols + panel), panel / (cols + panel), legend, font,
                      notes=("Axes at lower left:", "L patient's left,", "P posterior,", "S superior (LPS)."))
    with atomic_path(path) as tmp:
        fig.savefig(str(tmp), dpi=dpi, format="png")
    return Path(path)
