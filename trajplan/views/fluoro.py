"""Simulated fluoroscopy: digitally reconstructed radiographs (DRR) with the needles projected.

Projection geometry: parallel rays (a C-arm with the source at infinity; a real C-arm
at about 1 m source-detector distance magnifies the sacrum by 10-20 % and keeps the
same shapes). Each projection is given by the ray direction and the image's up
direction in LPS:

| projection | rays travel | image up | image left / right |
| --- | --- | --- | --- |
| ap | anterior to posterior (+y) | superior | patient's right / left |
| lateral | left to right (-x) | superior | anterior / posterior |
| inlet | AP tilted 40 deg caudally (towards -z) | posterior, in the image plane | patient's right / left |
| outlet | AP tilted 40 deg cranially (towards +z) | superior, in the image plane | patient's right / left |

Attenuation per mm is ``mu = MU_WATER_PER_MM * (1 + HU / 1000)`` (0 for air, clipped
at 0), the CT is resampled (trilinear) onto a grid aligned with the rays and summed
along them (SimpleITK, multithreaded). The picture shows the transmitted intensity
``exp(-sum mu * step)`` contrast-stretched over the body, as a C-arm monitor does: bone
dark, air bright. Only the CT that was kept is projected (``ct_roi.nii.gz``: the
pelvis around the sacrum and the needle paths), so soft tissue outside it is missing.
The needles are drawn to scale (their outer diameter) in the colour of their verdict.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy import ndimage

from trajplan.needle import Verdict
from trajplan.views.figure import Annotations, save_annotated
from trajplan.views.raster import direction_letter, distance_to_segment, to_rgb
from trajplan.volume import Volume

MU_WATER_PER_MM = 0.02
TILT_DEG = 40.0
MIN_PIXEL_MM = 0.6
DISPLAY_SIDE_PX = 480
CONTRAST_PERCENTILES = (30.0, 99.9)   # of the line integrals through the body: black and white points
_C, _S = np.cos(np.deg2rad(TILT_DEG)), np.sin(np.deg2rad(TILT_DEG))
PROJECTIONS: dict[str, tuple[tuple[float, float, float], tuple[float, float, float]]] = {
    "ap": ((0.0, 1.0, 0.0), (0.0, 0.0, 1.0)),
    "lateral": ((-1.0, 0.0, 0.0), (0.0, 0.0, 1.0)),
    "inlet": ((0.0, _C, -_S), (0.0, 1.0, 0.0)),
    "outlet": ((0.0, _C, _S), (0.0, 0.0, 1.0)),
}


@dataclass(frozen=True)
class Detector:
    """The image plane of one projection: world point of pixel (0, 0), unit axes, pixel size."""

    corner: np.ndarray
    right: np.ndarray
    down: np.ndarray
    pixel_mm: float
    shape: tuple[int, int]

    def to_pixel(self, points: np.ndarray) -> np.ndarray:
        """(row, col) where world points (n, 3) project."""
        rel = np.atleast_2d(points) - self.corner
        return np.stack([rel @ self.down, rel @ self.right], axis=1) / self.pixel_mm


def attenuation(ct: Volume) -> Volume:
    """Linear attenuation per mm (float32) from a CT in HU (water MU_WATER_PER_MM, air 0), same grid."""
    mu = np.maximum(MU_WATER_PER_MM * (1.0 + ct.array.astype(np.float32) / 1000.0), 0.0)
    return ct.with_array(mu.astype(np.float32, copy=False))


def _axes(projection: str | tuple) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(right, down, ray) of a named projection or of a (ray, up) pair of LPS vectors."""
    if isinstance(projection, str):
        if projection not in PROJECTIONS:
            raise ValueError(f"unknown projection {projection!r}: use {', '.join(PROJECTIONS)}")
        projection = PROJECTIONS[projection]
    ray, up = (np.asarray(v, float) for v in projection)
    ray = ray / np.linalg.norm(ray)
    up = up - (up @ ray) * ray
    up /= np.linalg.norm(up)
    return np.cross(ray, up), -up, ray          # right, down, ray: a right-handed frame


def drr(mu: Volume, projection: str | tuple, *, pixel_mm: float | None = None) -> tuple[np.ndarray, Detector]:
    """Line integrals through an attenuation volume (:func:`attenuation`) along one projection's rays.

    ``projection`` is a name of PROJECTIONS or a (ray, up) pair of LPS vectors.

    Rays are cast every ``max(smallest spacing, MIN_PIXEL_MM)`` and sampled every
    smallest spacing along the ray; the image is then interpolated (bilinear) to
    ``pixel_mm``, by default fine enough for DISPLAY_SIDE_PX pixels along its longer side.

    Returns
    -------
    line_integral : np.ndarray
        (rows, cols) sums of mu * step (dimensionless).
    detector : Detector
        Where each pixel lies, for projecting points onto the image.
    """
    right, down, ray = _axes(projection)
    step = float(mu.spacing.min())
    ray_mm = max(step, MIN_PIXEL_MM)
    corners = mu.index_to_world(np.array([[a, b, c] for a in (0, mu.shape[0] - 1) for b in (0, mu.shape[1] - 1)
                                          for c in (0, mu.shape[2] - 1)], float))
    frame = np.stack([right, down, ray], axis=1)
    local = corners @ frame
    low, high = local.min(axis=0), local.max(axis=0)
    spacing = np.array([ray_mm, ray_mm, step])
    size = tuple(int(n) for n in np.ceil((high - low) / spacing) + 1)
    grid = Volume(np.zeros((1, 1, 1), np.uint8), spacing, frame @ low, frame)
    along_rays = mu.resample_onto(grid, size=size, interpolator="linear", fill=0.0)
    coarse = along_rays.array.sum(axis=2, dtype=np.float64).T * step
    pixel_mm = pixel_mm or min(ray_mm, float((high - low)[:2].max()) / DISPLAY_SIDE_PX)
    shape = tuple(int(n) for n in np.floor((np.asarray(coarse.shape) - 1) * ray_mm / pixel_mm) + 1)
    rows, cols = np.indices(shape) * (pixel_mm / ray_mm)
    line_integral = ndimage.map_coordinates(coarse, [rows, cols], order=1, mode="nearest")
    return line_integral, Detector(frame @ low, right, down, pixel_mm, line_integral.shape)


def fluoro_picture(line_integral: np.ndarray, detector: Detector, needles: list[dict]) -> np.ndarray:
    """RGB picture: transmitted intensity (bone dark) with the needles projected to scale."""
    body = line_integral[line_integral > 0.05 * line_integral.max()]
    low, high = (np.percentile(body, CONTRAST_PERCENTILES) if body.size else (0.0, 1.0))
    grey = 1.0 - np.clip((line_integral - low) / max(high - low, 1e-6), 0, 1)
    rgb = to_rgb(0.1 + 0.85 * grey)
    rows, cols = np.indices(detector.shape)
    pixels = np.stack([rows, cols], axis=-1).astype(float)
    for needle in needles:
        start = needle.get("skin_entry_lps") or needle["entry_lps"]
        ends = detector.to_pixel(np.array([start, needle["tip_lps"]], float))
        inside = distance_to_segment(pixels, ends[0], ends[1]) <= needle["diameter_mm"] / 2 / detector.pixel_mm
        rgb[inside] = np.round(np.asarray(Verdict(needle["verdict"]).view_rgb) * 255)
    return rgb


def down_the_needle(needle: dict) -> tuple[np.ndarray, np.ndarray]:
    """(ray, up) of the C-arm view down ``needle`` (hub to tip; its card's ``c_arm`` angles): the
    needle seen end-on, the image's up as near the patient's head as the ray allows."""
    start = np.asarray(needle.get("skin_entry_lps") or needle["entry_lps"], float)
    ray = np.asarray(needle["tip_lps"], float) - start
    ray /= np.linalg.norm(ray)
    up = np.array([0.0, 0.0, 1.0]) if abs(ray[2]) < 0.9 else np.array([0.0, -1.0, 0.0])
    return ray, up


def render_fluoro(ct: Volume, plan: dict, out_dir: str | Path) -> dict[str, Path]:
    """Write ``fluoro/{ap,lateral,inlet,outlet}.png``: DRRs of ``ct`` with the plan's needles, and
    ``fluoro/needle<rank>_down.png`` for every fluoroscopy-guided needle: the view down the needle
    at its card's C-arm angles (:func:`down_the_needle`), where a well-placed needle is a dot.

    Returns
    -------
    dict
        Caption -> PNG path.
    """
    needles = plan.get("needles", [])
    mu = attenuation(ct)
    out: dict[str, Path] = {}
    views: list[tuple[str | tuple, str, str]] = [
        (name, f"fluoroscopy {name.upper() if name == 'ap' else name} (simulated)", name) for name in PROJECTIONS]
    for needle in needles:
        arm = needle.get("card", {}).get("c_arm")
        if needle.get("card", {}).get("guidance") == "fluoroscopy" and arm:
            views.append((down_the_needle(needle),
                          f"fluoroscopy down needle {needle['rank']} (simulated; C-arm "
                          f"{arm['cranial_caudal_deg']:+.1f} deg cranial, "
                          f"{arm['oblique_deg']:+.1f} deg toward the left)",
                          f"needle{needle['rank']}_down"))
    for projection, caption, stem in views:
        line_integral, detector = drr(mu, projection)
        rgb = fluoro_picture(line_integral, detector, needles)
        marks = []
        for needle in needles:
            row, col = detector.to_pixel(np.asarray(needle.get("skin_entry_lps") or needle["entry_lps"], float))[0]
            marks.append((float(np.clip(row, 8, rgb.shape[0] - 8)), float(np.clip(col + 12, 8, rgb.shape[1] - 8)),
                          str(needle["rank"])))
        notes = Annotations(title=caption, pixel_mm=detector.pixel_mm, marks=marks,
                            letters=(direction_letter(-detector.down), direction_letter(detector.down),
                                     direction_letter(-detector.right), direction_letter(detector.right)))
        out[caption] = save_annotated(rgb, Path(out_dir) / "fluoro" / f"{stem}.png", notes)
    return out
