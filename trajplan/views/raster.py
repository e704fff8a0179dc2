"""Small raster helpers shared by the CT slice and fluoroscopy pictures."""

from __future__ import annotations

import numpy as np
from scipy import ndimage

WINDOWS = {"bone": (2000.0, 400.0), "soft": (400.0, 40.0)}   # name -> (width, level) in HU
AXIS_LETTERS = (("R", "L"), ("A", "P"), ("I", "S"))          # LPS axis -> (negative, positive) end


def distance_to_segment(points: np.ndarray, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Distance from each point (..., n) to the segment ``a``-``b`` (any dimension n)."""
    a, b = np.asarray(a, float), np.asarray(b, float)
    ab = b - a
    t = np.clip(((points - a) @ ab) / max(float(ab @ ab), 1e-12), 0.0, 1.0)
    return np.linalg.norm(points - (a + t[..., None] * ab), axis=-1)


def windowed(hu: np.ndarray, window: str) -> np.ndarray:
    """Grey levels in [0, 1] of HU values shown in a named window (``bone`` or ``soft``).

    Raises
    ------
    ValueError
        For a window name other than those in :data:`WINDOWS`.
    """
    if window not in WINDOWS:
        raise ValueError(f"unknown window {window!r}: use {' or '.join(WINDOWS)}")
    width, level = WINDOWS[window]
    return np.clip((hu - (level - width / 2)) / width, 0.0, 1.0)


def outline(mask: np.ndarray, width_px: int = 2) -> np.ndarray:
    """The inner rim, ``width_px`` pixels wide, of a 2-D mask."""
    return mask & ~ndimage.binary_erosion(mask, iterations=width_px, border_value=1)


def smooth_mask(mask: np.ndarray, sigma_px: float) -> np.ndarray:
    """A blocky 2-D mask (labels sampled at nearest voxel on a finer grid) with rounded edges."""
    if sigma_px < 0.5 or not mask.any():
        return mask
    return ndimage.gaussian_filter(mask.astype(np.float32), sigma_px) > 0.5


def direction_letter(vector: np.ndarray) -> str:
    """Patient-direction letter (R/L, A/P, I/S) of the dominant LPS component of ``vector``."""
    axis = int(np.argmax(np.abs(vector)))
    return AXIS_LETTERS[axis][int(vector[axis] > 0)]


def to_rgb(grey: np.ndarray) -> np.ndarray:
    """An (rows, cols, 3) uint8 image from grey levels in [0, 1]."""
    return np.repeat((np.clip(grey, 0, 1) * 255).astype(np.uint8)[..., None], 3, axis=2)
