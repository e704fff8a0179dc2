"""Write an RGB picture as a PNG, pixel for pixel, with its annotations drawn on top.

The axes fill the whole canvas and one image pixel is one PNG pixel, so a world point
mapped to a pixel by the caller is exactly where it appears in the file (the tests
rely on it). Annotations: a title, orientation letters on the four edges, a scale bar
and a legend of coloured names.
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
        Names and colours (0-255) listed at the bottom right.
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


def save_annotated(rgb: np.ndarray, path: str | Path, notes: Annotations, dpi: int = 100) -> Path:
    """Save ``rgb`` (rows, cols, 3 uint8) with ``notes`` as a PNG of exactly that size (atomically)."""
    from matplotlib.figure import Figure       # no pyplot: no global backend or figure state

    rows, cols = rgb.shape[:2]
    fig = Figure(figsize=(cols / dpi, rows / dpi), dpi=dpi)
    ax = fig.add_axes((0, 0, 1, 1))
    ax.imshow(rgb, interpolation="nearest", extent=(-0.5, cols - 0.5, rows - 0.5, -0.5))
    ax.set_xlim(-0.5, cols - 0.5)
    ax.set_ylim(rows - 0.5, -0.5)
    ax.axis("off")
    size = max(7.0, min(rows, cols) / 40)
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
    for i, (name, colour) in enumerate(reversed(notes.legend)):
        ax.text(cols - 6, rows - 8 - i * 1.6 * size, name, color=np.asarray(colour) / 255, fontsize=size * 0.9,
                ha="right", va="bottom", bbox=box)
    for row, col, text in notes.marks:
        ax.text(col, row, text, color="white", fontsize=size * 1.1, fontweight="bold", ha="center", va="center",
                bbox={"facecolor": "black", "alpha": 0.6, "pad": 1.0, "edgecolor": "none"})
    with atomic_path(path) as tmp:
        fig.savefig(str(tmp), dpi=dpi, format="png")
    return Path(path)
