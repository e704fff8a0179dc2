"""The oblique plane of a needle, resampled on the server for the viewer.

- **short axis**: the gantry-tilted axial plane that holds the needle, as the CT operator sees it
  with the gantry tilted to the needle: its horizontal is the patient's left-right axis (LPS +x, to
  the right of the picture: radiological convention), its vertical the needle's direction with its
  left-right part removed (posterior down);
- **long axis**: the plane through the needle and the sacrum's long axis (S4 -> S1, up), its
  horizontal the needle's direction with its part along that axis removed (patient left to the
  right when it runs mostly left-right, else anterior to the right, as NiiVue's views).

The CT (linear interpolation, bone window) and the label map (nearest label, in the label table's
colours) are sampled with ``scipy.ndimage.map_coordinates`` and returned as a PNG.
"""

from __future__ import annotations

import base64
import io

import numpy as np
from scipy import ndimage

from trajplan import labels as lt
from trajplan.card import gantry_tilt
from trajplan.volume import Volume

BONE_WINDOW = (-600.0, 1400.0)
MARGIN_MM = 30.0        # shown beyond the needle's ends
MIN_HALF_MM = 50.0
MAX_PIXELS = 400
LETTERS = (("R", "L"), ("A", "P"), ("I", "S"))   # LPS axis -> (negative, positive) end


def letter(direction: np.ndarray) -> str:
    """The patient direction a screen direction points to most (R/L, A/P, I/S)."""
    axis = int(np.argmax(np.abs(direction)))
    return LETTERS[axis][int(direction[axis] > 0)]


def plane_axes(entry: np.ndarray, tip: np.ndarray, technique: str,
               sacral_axis: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The plane's unit screen-right and screen-down directions (LPS)."""
    d = (tip - entry) / np.linalg.norm(tip - entry)
    if technique == "short_axis":
        right = np.array([1.0, 0.0, 0.0])
        down = d - d[0] * right
        down = down / np.linalg.norm(down) if np.linalg.norm(down) > 1e-3 else np.array([0.0, 1.0, 0.0])
        if down[1] < 0:
            down = -down
        return right, down
    up = np.asarray(sacral_axis, float) / np.linalg.norm(sacral_axis)
    right = d - (d @ up) * up
    if np.linalg.norm(right) < 1e-3:           # the needle along the axis: the plane of the axis and A-P
        right = np.cross(up, [1.0, 0.0, 0.0])
    right = right / np.linalg.norm(right)
    if (right[0] < 0 if abs(right[0]) > abs(right[1]) else right[1] > 0):
        right = -right                          # patient left (+x) or anterior (-y) to the right
    return right, -up


def oblique_image(labels: Volume, ct: Volume | None, entry_lps, tip_lps, technique: str,
                  sacral_axis: np.ndarray, *, opacity: float = 0.35, hidden: tuple[int, ...] = ()) -> dict:
    """The needle's oblique plane as a PNG and the facts needed to draw on it.

    Returns
    -------
    dict
        ``png`` (base64), ``width``, ``height``, ``pixel_mm``, ``entry_px`` and ``tip_px``
        ([column, row] of the needle's ends), ``letters`` (``left``, ``right``, ``top``,
        ``bottom``), ``technique``, ``centre_lps``, ``right_lps``, ``down_lps`` and, for the short
        axis, ``gantry_tilt_deg`` (the plane's tilt from the axial plane, about the left-right axis).
    """
    from PIL import Image

    entry, tip = np.asarray(entry_lps, float), np.asarray(tip_lps, float)
    right, down = plane_axes(entry, tip, technique, sacral_axis)
    centre = (entry + tip) / 2
    half = max(MIN_HALF_MM, np.linalg.norm(tip - entry) / 2 + MARGIN_MM)
    pixel = max(float(min(labels.spacing)) / 2, 2 * half / MAX_PIXELS)
    n = int(np.ceil(2 * half / pixel)) | 1       # odd: the centre is a pixel's centre
    offsets = (np.arange(n) - (n - 1) / 2) * pixel
    rows, cols = np.meshgrid(offsets, offsets, indexing="ij")
    points = centre + cols[..., None] * right + rows[..., None] * down
    flat = points.reshape(-1, 3)

    if ct is not None:
        hu = ndimage.map_coordinates(ct.array.astype(np.float32), ct.world_to_index(flat).T, order=1,
                                     cval=-1024.0, mode="constant")
        grey = np.clip((hu - BONE_WINDOW[0]) / (BONE_WINDOW[1] - BONE_WINDOW[0]), 0, 1) * 255
    else:
        grey = np.zeros(len(flat))
    rgb = np.repeat(grey[:, None], 3, axis=1)
    values = ndimage.map_coordinates(labels.array, labels.world_to_index(flat).T, order=0, cval=0,
                                     mode="constant").astype(int)
    colours = np.zeros((max(label.value for label in lt.LABELS) + 1, 3))
    shown = np.zeros(len(colours), bool)
    for label in lt.LABELS:
        colours[label.value] = label.color
        shown[label.value] = label.value not in hidden
    values = np.clip(values, 0, len(colours) - 1)
    over = shown[values] & (values > 0)
    rgb[over] = (1 - opacity) * rgb[over] + opacity * colours[values[over]]
    image = Image.fromarray(np.rint(rgb).astype(np.uint8).reshape(n, n, 3), "RGB")
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")

    def to_px(point: np.ndarray) -> list[float]:
        return [round(float((point - centre) @ right / pixel + (n - 1) / 2), 2),
                round(float((point - centre) @ down / pixel + (n - 1) / 2), 2)]

    answer = {
        "png": base64.b64encode(buffer.getvalue()).decode("ascii"), "width": n, "height": n,
        "pixel_mm": round(pixel, 4), "entry_px": to_px(entry), "tip_px": to_px(tip), "technique": technique,
        "letters": {"left": letter(-right), "right": letter(right), "top": letter(-down), "bottom": letter(down)},
        "centre_lps": centre.round(3).tolist(), "right_lps": right.round(6).tolist(),
        "down_lps": down.round(6).tolist(),
    }
    if technique == "short_axis":
        answer["gantry_tilt_deg"] = round(gantry_tilt(tip - entry, "prone")[0], 1)   # as the procedure card
    return answer
