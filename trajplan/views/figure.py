"""Write an RGB picture as a PNG, pixel for pixel, with its annotations.

The picture fills the left of the canvas from its top-left corner and one image pixel is
one PNG pixel, so a world point mapped to a pixel by the caller is exactly where it
appears in the file (the tests rely on it). Drawn on the picture: a title, orientation
letters on the four edges and a scale bar. The legend of coloured names is a white panel
to the right of the picture (:func:`legend_panel_px` wide), so it never hides the image.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from trajplan.io.atomic import atomic_path

SCALE_BARS_MM = (5, 10, 20, 50, 100)


@dataclass(frozen=True)
class Annotations:
    """What is written over a picture.

    Parameters
    ----------
    title : str
        One line at the top left.
    letters : tuple of str
        Patient-direction letters at the (top, bottom, left, right) edges.
    pixel_mm : float
        Pixel size in mm, for the scale bar.
    legend : list of (str, (r, g, b))
        Names and colours (0-255), listed in a panel right of the picture.
    marks : list of (row, col, str)
        Short labels (e.g. needle numbers) at pixel positions.
    """

    title: str
    letters: tuple[str, str, str, str]
    pixel_mm: float
    legend: list[tuple[str, tuple[int, int, int]]] = field(default_factory=list)
    marks: list[tuple[float, float, str]] = field(default_factory=list)


def _scale_bar_mm(width_mm: float) -> int:
    fitting = [b for b in SCALE_BARS_MM if b <= width_mm / 4]
    return fitting[-1] if fitting else SCALE_BARS_MM[0]


def legend_panel_px(legend: list[tuple[str, tuple[int, int, int]]], font_pt: float, dpi: int = 100) -> int:
    """Width (pixels) of the legend panel for these names at ``font_pt``; 0 without a legend."""
    if not legend:
        return 0
    longest = max(len(name) for name, _ in legend)
    return int(np.ceil((longest * 0.62 + 3.5) * font_pt * dpi / 72)) + 12


def draw_legend_panel(fig, left: float, width: float, legend: list[tuple[str, tuple[int, int, int]]],
                      font_pt: float, heading: str = "legend", notes: tuple[str, ...] = ()) -> None:
    """A white panel in figure coordinates [left, left + width] x [0, 1]: a swatch and a name per entry,
    then ``notes`` (lines of small text) below."""
    ax = fig.add_axes((left, 0, width, 1))
    ax.set_xlim(0, 1)
    ax.set_ylim(1, 0)
    ax.axis("off")
    ax.add_patch(_rectangle((0, 0), 1, 1, facecolor="white", edgecolor="#999999", linewidth=1))
    height_px = fig.get_size_inches()[1] * fig.dpi
    line = 1.7 * font_pt * fig.dpi / 72 / height_px
    y = 0.5 * line
    ax.text(0.06, y, heading, fontsize=font_pt, fontweight="bold", va="top", ha="left", color="black")
    y += 1.3 * line
    swatch_w = 1.1 * font_pt * fig.dpi / 72 / (width * fig.get_size_inches()[0] * fig.dpi)
    for name, colour in legend:
        ax.add_patch(_rectangle((0.06, y + 0.1 * line), swatch_w, 0.7 * line, facecolor=np.asarray(colour) / 255,
                                edgecolor="black", linewidth=0.5))
        ax.text(0.06 + 1.6 * swatch_w, y + 0.45 * line, name, fontsize=font_pt, va="center", ha="left", color="black")
        y += line
    y += 0.5 * line
    for text in notes:
        ax.text(0.06, y, text, fontsize=font_pt * 0.85, va="top", ha="left", color="black")
        y += 0.85 * line


def _rectangle(xy, width, height, **kw):
    from matplotlib.patches import Rectangle

    return Rectangle(xy, width, height, **kw)


def save_annotated(rgb: np.ndarray, path: str | Path, notes: Annotations, dpi: int = 100) -> Path:
    """Save ``rgb`` (rows, cols, 3 uint8) with ``notes`` as a PNG (atomically): ``rows`` high, and
    ``cols`` wide plus the legend panel on the right when there is a legend."""
    from matplotlib.figure import Figure  # no pyplot: no global backend or figure state

    rows, cols = rgb.shape[:2]
    size = max(7.0, min(rows, cols) / 40)
    panel = legend_panel_px(notes.legend, size * 0.9, dpi)
    fig = Figure(figsize=((cols + panel) / dpi, rows / dpi), dpi=dpi)
    ax = fig.add_axes((0, 0, cols / (cols + panel), 1))
    ax.imshow(rgb, interpolation="nearest", extent=(-0.5, cols - 0.5, rows - 0.5, -0.5))
    ax.set_xlim(-0.5, cols - 0.5)
    ax.set_ylim(rows - 0.5, -0.5)
    ax.axis("off")
    box = {"facecolor": "black", "alpha": 0.55, "pad": 1.5, "edgecolor": "none"}
    ax.text(6, 6, notes.title, color="white", fontsize=size, va="top", ha="left", bbox=box)
    top, bottom, left, right = notes.letters
    title_px = (notes.title.count("\n") + 1) * 1.6 * size * dpi / 72
    for x, y, letter, ha, va in ((cols / 2, 10 + title_px, top, "center", "top"),
                                 (cols / 2, rows - 4, bottom, "center", "bottom"),
                                 (4, rows / 2, left, "left", "center"), (cols - 4, rows / 2, right, "right", "center")):
        ax.text(x, y, letter, color="yellow", fontsize=size * 1.3, fontweight="bold", ha=ha, va=va, bbox=box)
    bar_mm = _scale_bar_mm(cols * notes.pixel_mm)
    bar_px = bar_mm / notes.pixel_mm
    y0 = rows - 12
    ax.plot([10, 10 + bar_px], [y0, y0], color="black", linewidth=5, solid_capstyle="butt")
    ax.plot([10, 10 + bar_px], [y0, y0], color="white", linewidth=3, solid_capstyle="butt")
    ax.text(10 + bar_px / 2, y0 - 5, f"{bar_mm} mm", color="white", fontsize=size, ha="center", va="bottom",
            bbox=box)
    if panel:
        draw_legend_panel(fig, cols / (cols + panel), panel / (cols + panel), notes.legend, size * 0.9)
    for row, col, text in notes.marks:
        ax.text(col, row, text, color="white", fontsize=size * 1.1, fontweight="bold", ha="center", va="center",
                bbox={"facecolor": "black", "alpha": 0.6, "pad": 1.0, "edgecolor": "none"})
    with atomic_path(path) as tmp:
        fig.savefig(str(tmp), dpi=dpi, format="png")
    return Path(path)
