"""CT slices along each planned needle: what the operator sees during CT guidance.

For each needle:

- the **needle plane**: the oblique slice that holds the whole needle and the patient's
  left-right axis. For a short-axis needle this is the gantry-tilted axial plane the
  scanner would acquire (the tilt is in the caption); for a long-axis needle it is the
  tilted coronal plane along the ala, between the foramina and the SI joint.
- **axial slices** at the bone entry, mid-shaft and tip, showing the needle's
  cross-section where it crosses the slice.

Images are sampled from the CT (trilinear) and the label map (nearest voxel, edges
rounded) on a square pixel grid; the needle is drawn to scale (every pixel within the
needle's outer radius of its axis, in 3-D) in the colour of its verdict; critical
structures are outlined in their label-table colours. Rows run towards the patient's
posterior (or inferior for near-coronal planes), columns towards the patient's left,
so the pictures read like the scanner's axial images (patient's right on the left).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy import ndimage

from trajplan import labels as lt
from trajplan.needle import Technique, Verdict
from trajplan.views.figure import Annotations, save_annotated
from trajplan.views.raster import direction_letter, distance_to_segment, outline, smooth_mask, to_rgb, windowed
from trajplan.volume import Volume

PIXEL_MM = 0.4
PLANE_MARGIN_MM = 35.0
PLANE_MIN_FOV_MM = (140.0, 200.0)   # rows, cols: room for the whole sacrum beside the needle
AXIAL_FOV_MM = 140.0
MIN_AXIAL_GAP_MM = 5.0       # the axial slices of a needle at least this far apart head to foot
AIR_HU = -1000.0
OUTLINED = ("canal", *(f"foramen_{lv}_{s}" for lv in lt.LEVELS for s in lt.SIDES), "anterior_cortex",
            "si_joint_left", "si_joint_right", "L5_S1_disc", "fracture", "lesion")
BONE_OUTLINE = (255, 255, 255)


@dataclass(frozen=True)
class SlicePlane:
    """A planar grid of pixels in world space (LPS mm).

    Pixel (row, col) sits at ``centre + (col - (cols-1)/2) * pixel_mm * col_dir +
    (row - (rows-1)/2) * pixel_mm * row_dir``.
    """

    centre: np.ndarray
    col_dir: np.ndarray
    row_dir: np.ndarray
    pixel_mm: float
    shape: tuple[int, int]

    def points(self) -> np.ndarray:
        """World position (rows, cols, 3) of every pixel."""
        rows, cols = self.shape
        r = (np.arange(rows) - (rows - 1) / 2) * self.pixel_mm
        c = (np.arange(cols) - (cols - 1) / 2) * self.pixel_mm
        return self.centre + r[:, None, None] * self.row_dir + c[None, :, None] * self.col_dir

    def to_pixel(self, points: np.ndarray) -> np.ndarray:
        """(row, col) of world points (n, 3) projected onto the plane."""
        rel = np.atleast_2d(points) - self.centre
        rows, cols = self.shape
        return np.stack([rel @ self.row_dir / self.pixel_mm + (rows - 1) / 2,
                         rel @ self.col_dir / self.pixel_mm + (cols - 1) / 2], axis=1)

    @property
    def tilt_from_axial_deg(self) -> float:
        """Angle (degrees) between this plane and the axial plane: the gantry tilt it needs."""
        normal = np.cross(self.col_dir, self.row_dir)
        return float(np.degrees(np.arccos(min(abs(normal[2]), 1.0))))


def _needle_ends(needle: dict) -> tuple[np.ndarray, np.ndarray]:
    """Skin entry (or bone entry when the skin is not in the CT) and tip, LPS mm."""
    start = needle.get("skin_entry_lps") or needle["entry_lps"]
    return np.asarray(start, float), np.asarray(needle["tip_lps"], float)


def needle_plane(needle: dict, *, margin_mm: float = PLANE_MARGIN_MM, pixel_mm: float = PIXEL_MM) -> SlicePlane:
    """The slice that holds the whole needle and the left-right axis.

    It reaches ``margin_mm`` beyond the needle and spans at least PLANE_MIN_FOV_MM.
    """
    start, tip = _needle_ends(needle)
    axis = (tip - start) / np.linalg.norm(tip - start)
    col_dir = np.array([1.0, 0.0, 0.0])
    if abs(axis[0]) > 0.95:                      # a needle along left-right: use the axial plane
        row_dir = np.array([0.0, 1.0, 0.0])
    else:
        row_dir = axis - (axis @ col_dir) * col_dir
        row_dir /= np.linalg.norm(row_dir)
        if (abs(row_dir[1]) >= abs(row_dir[2]) and row_dir[1] < 0) or (abs(row_dir[1]) < abs(row_dir[2])
                                                                       and row_dir[2] > 0):
            row_dir = -row_dir                   # rows run posterior (near-axial) or inferior (near-coronal)
    ends = np.stack([start, tip])
    span = np.abs(np.stack([(ends - ends.mean(0)) @ row_dir, (ends - ends.mean(0)) @ col_dir], axis=1)).max(0)
    shape = tuple(int(np.ceil(max(2 * (s + margin_mm), least) / pixel_mm)) for s, least in zip(span, PLANE_MIN_FOV_MM))
    return SlicePlane(ends.mean(0), col_dir, row_dir, pixel_mm, shape)  # type: ignore[arg-type]


def axial_plane(point: np.ndarray, *, fov_mm: float = AXIAL_FOV_MM, pixel_mm: float = PIXEL_MM) -> SlicePlane:
    """The axial slice through ``point`` (LPS mm), ``fov_mm`` square, centred on it."""
    n = int(np.ceil(fov_mm / pixel_mm))
    return SlicePlane(np.asarray(point, float), np.array([1.0, 0.0, 0.0]), np.array([0.0, 1.0, 0.0]), pixel_mm, (n, n))


def _sample(volume: Volume, points: np.ndarray, *, order: int, fill: float) -> np.ndarray:
    index = volume.world_to_index(points.reshape(-1, 3)).T
    values = ndimage.map_coordinates(volume.array, index, order=order, mode="constant", cval=fill)
    return values.reshape(points.shape[:-1])


def needle_mask(plane: SlicePlane, needle: dict, points: np.ndarray | None = None) -> np.ndarray:
    """Pixels of ``plane`` inside the needle (within its outer radius of the axis, skin to tip)."""
    points = plane.points() if points is None else points
    start, tip = _needle_ends(needle)
    return distance_to_segment(points, start, tip) <= needle["diameter_mm"] / 2


def slice_picture(ct: Volume, labels: Volume, plane: SlicePlane, needles: list[dict], *,
                  window: str = "bone") -> tuple[np.ndarray, list[tuple[str, tuple[int, int, int]]]]:
    """The RGB picture of one slice and the legend of the structures outlined in it.

    CT grey levels in ``window``; sacral bone outlined in white, each critical structure
    in its label colour; every needle that crosses the slice filled in its verdict colour.
    """
    points = plane.points()
    rgb = to_rgb(windowed(_sample(ct, points, order=1, fill=AIR_HU), window))
    label_px = _sample(labels, points, order=0, fill=0).astype(np.int32)
    sigma = 0.35 * float(labels.spacing.min()) / plane.pixel_mm
    bone = smooth_mask(np.isin(label_px, [lt.value(n) for n in lt.SACRAL_BONE]), sigma)
    rgb[outline(bone)] = BONE_OUTLINE
    legend = [("sacral bone", BONE_OUTLINE)] if bone.any() else []
    for name in OUTLINED:
        mask = smooth_mask(label_px == lt.value(name), sigma)
        if mask.any():
            rgb[outline(mask)] = lt.color(name)
            legend.append((name, lt.color(name)))
    for needle in needles:
        rgb[needle_mask(plane, needle, points)] = np.round(np.asarray(Verdict(needle["verdict"]).view_rgb) * 255)
    return rgb, legend


def _needle_marks(plane: SlicePlane, needles: list[dict], offset_px: float = 12.0) -> list[tuple[float, float, str]]:
    """Rank labels beside each needle's pixels in ``plane``, at the end nearest its skin entry."""
    points = plane.points()
    marks = []
    for needle in needles:
        pixels = np.argwhere(needle_mask(plane, needle, points))
        if len(pixels):
            start = plane.to_pixel(_needle_ends(needle)[0])[0]
            row, col = pixels[np.argmin(np.linalg.norm(pixels - start, axis=1))]
            marks.append((float(row), float(col + offset_px), str(needle["rank"])))
    return marks


def _letters(plane: SlicePlane) -> tuple[str, str, str, str]:
    return (direction_letter(-plane.row_dir), direction_letter(plane.row_dir),
            direction_letter(-plane.col_dir), direction_letter(plane.col_dir))


def _describe(needle: dict) -> str:
    return f"needle {needle['rank']} ({Technique(needle['technique']).words}, {needle['side']}, {needle['gauge']} G)"


def legend_words(legend: list[tuple[str, tuple[int, int, int]]], needles: list[dict]
                 ) -> list[tuple[str, tuple[int, int, int]]]:
    """A picture's legend in words (``S1 foramen (left)``, ``SI joint (right)``), then the needle
    colours of the verdicts drawn (``needle: safe`` ...)."""
    from trajplan.card_html import structure_words

    words = [(structure_words(name), colour) for name, colour in legend]
    verdicts = [v for v in Verdict if any(n.get("verdict") == v for n in needles)]
    return words + [(f"needle: {v}", tuple(int(round(c * 255)) for c in v.view_rgb)) for v in verdicts]


def needle_slices(needle: dict) -> dict[str, tuple[SlicePlane, str]]:
    """The planes shown for one needle: file stem -> (plane, caption).

    The plane of the needle, and axial planes at its entry, middle and tip; where the needle's
    ends are less than 2 x MIN_AXIAL_GAP_MM apart head to foot (a short-axis needle in the
    gantry's plane), the entry and tip slices are MIN_AXIAL_GAP_MM above and below the middle
    instead, so that the three differ.
    """
    rank = needle["rank"]
    entry, tip = np.asarray(needle["entry_lps"], float), np.asarray(needle["tip_lps"], float)
    plane = needle_plane(needle)
    out = {f"needle{rank}_plane": (plane, f"{_describe(needle)}: plane of the needle, "
                                          f"{plane.tilt_from_axial_deg:.0f} deg from axial")}
    mid = (entry + tip) / 2
    half_span = abs(entry[2] - tip[2]) / 2
    for where, point in (("entry", entry), ("mid", mid), ("tip", tip)):
        caption = f"{_describe(needle)}: axial at the {where} (z {point[2]:.1f} mm)"
        if where != "mid" and half_span < MIN_AXIAL_GAP_MM:
            # a needle nearly in one axial slice: the slices beside it, not three of the same
            sign = 1.0 if (entry[2] - tip[2]) * (1 if where == "entry" else -1) >= 0 else -1.0
            if entry[2] == tip[2]:
                sign = 1.0 if where == "entry" else -1.0
            point = np.array([point[0], point[1], mid[2] + sign * MIN_AXIAL_GAP_MM])
            caption = (f"{_describe(needle)}: axial at the {where} side, {MIN_AXIAL_GAP_MM:g} mm "
                       f"{'above' if sign > 0 else 'below'} the needle's middle (z {point[2]:.1f} mm; the needle "
                       f"spans {2 * half_span:.1f} mm head to foot)")
        out[f"needle{rank}_axial_{where}"] = (axial_plane(point), caption)
    return out


def render_needle_slices(ct: Volume, labels: Volume, plan: dict, out_dir: str | Path, *,
                         window: str = "bone") -> dict[str, Path]:
    """Write ``slices/needle<rank>_{plane,axial_entry,axial_mid,axial_tip}.png`` for every needle.

    Parameters
    ----------
    ct : Volume
        CT in HU covering the needles (e.g. the plan folder's ``ct_roi.nii.gz``).
    labels : Volume
        The plan's label map (any grid; sampled in world coordinates).
    plan : dict
        ``plan.json`` content; its ``needles`` are drawn.
    window : {"bone", "soft"}
        Bone (W 2000 / L 400 HU) or soft-tissue (W 400 / L 40 HU) window.

    Returns
    -------
    dict
        Caption -> PNG path, in plan order.
    """
    needles = plan.get("needles", [])
    out: dict[str, Path] = {}
    for needle in needles:
        for stem, (plane, caption) in needle_slices(needle).items():
            rgb, legend = slice_picture(ct, labels, plane, needles, window=window)
            notes = Annotations(title=f"{caption.replace(': ', chr(10))} [{window} window]", letters=_letters(plane),
                                pixel_mm=plane.pixel_mm, legend=legend_words(legend, needles),
                                marks=_needle_marks(plane, needles))
            out[caption] = save_annotated(rgb, Path(out_dir) / "slices" / f"{stem}.png", notes)
    return out
