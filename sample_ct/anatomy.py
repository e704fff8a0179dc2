"""Shape of the phantom's sacrum: a cross-section swept along a curved midline.

The sacral midline (centre of the vertebral bodies) is a circular arc in the
mid-sagittal plane, running from the S1 endplate (``s = 0``) down to the tip of S5
(``s = 1``): first posteriorly and inferiorly, then curving anteriorly (the sacrum
is concave towards the pelvis). Every point has local coordinates

- ``s``: position along the midline (0 at the S1 endplate, 1 at the S5 tip;
  negative above, towards L5, and beyond 1 towards the coccyx),
- ``u``: lateral offset in mm (= world x, +left),
- ``v``: dorsal offset from the midline in mm (+ towards the dorsal surface),

so that each structure is a simple inside-test in ``(s, u, v)``. All lengths in mm,
world coordinates LPS.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

LEVEL_BOUNDS = (0.0, 0.27, 0.49, 0.67, 0.83, 1.0)   # S1..S5 segments along s
FORAMEN_S = (0.245, 0.465, 0.645, 0.805)            # S1..S4 foramina along s


@dataclass(frozen=True)
class SacralShape:
    """Dimensions of one phantom's sacrum (after seeded variation)."""

    s1_centre: np.ndarray          # world position of the S1 endplate centre (LPS mm)
    length_mm: float               # midline length S1 endplate -> S5 tip
    slope_deg: float               # tilt of the midline at S1 (0 = vertical)
    end_deg: float                 # tilt at the S5 tip (negative = curving anteriorly)
    width: float                   # scale of the widths
    depth: float                   # scale of the antero-posterior depths
    foramen_u: tuple[float, ...]   # anterior foramen centre distance from the midline, S1..S4
    foramen_r: tuple[float, ...]   # foramen channel radius, S1..S4
    si_gap_mm: float               # sacroiliac joint width

    # ----------------------------------------------------------- the midline arc
    @property
    def _theta(self) -> tuple[float, float]:
        return np.deg2rad(self.slope_deg), np.deg2rad(self.end_deg)

    @property
    def radius(self) -> float:
        """Radius of the midline arc in mm."""
        t0, t1 = self._theta
        return self.length_mm / abs(t0 - t1)

    @property
    def arc_centre_yz(self) -> np.ndarray:
        """(y, z) of the arc's centre of curvature (anterior to the sacrum)."""
        t0, _ = self._theta
        return self.s1_centre[1:] - self.radius * np.array([np.cos(t0), np.sin(t0)])

    def local(self, x: np.ndarray, y: np.ndarray, z: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """World (LPS mm) -> local ``(s, u, v)``."""
        t0, t1 = self._theta
        cy, cz = self.arc_centre_yz
        wy, wz = y - cy, z - cz
        theta = np.arctan2(wz, wy)
        s = (theta - t0) / (t1 - t0)
        v = np.hypot(wy, wz) - self.radius
        return s, x - self.s1_centre[0], v

    def world(self, s, u, v) -> np.ndarray:
        """Local ``(s, u, v)`` -> world LPS mm, shape ``(..., 3)``."""
        t0, t1 = self._theta
        s, u, v = np.broadcast_arrays(np.asarray(s, float), np.asarray(u, float), np.asarray(v, float))
        theta = t0 + (t1 - t0) * s
        r = self.radius + v
        cy, cz = self.arc_centre_yz
        return np.stack([u + self.s1_centre[0], cy + r * np.cos(theta), cz + r * np.sin(theta)], axis=-1)

    def dorsal_normal(self, s: float) -> np.ndarray:
        """World direction of +v at ``s`` (the dorsal normal of the midline)."""
        t0, t1 = self._theta
        theta = t0 + (t1 - t0) * s
        return np.array([0.0, np.cos(theta), np.sin(theta)])

    # ------------------------------------------------------- the cross-section
    def half_width(self, s):
        """Half-width of the sacrum (to the auricular surface) at ``s``."""
        return self.width * np.interp(s, (0.0, 0.22, 0.5, 1.0), (52.0, 50.0, 30.0, 12.0))

    def anterior(self, u, s):
        """v of the anterior (pelvic) surface: flat at the bodies, curving dorsally laterally."""
        s = np.asarray(s)
        depth = (self.depth * (17.0 - 11.0 * np.clip(s, 0.0, 1.0))).astype(s.dtype)
        promontory = 3.0 * np.exp(-np.minimum((s / 0.05) ** 2, 50.0)) * np.exp(-(np.asarray(u) / 15.0) ** 2)
        return -depth + 0.0032 * np.asarray(u) ** 2 * depth / 17.0 - promontory

    def dorsal(self, u, s):
        """v of the dorsal surface: the median crest (spinous tubercles), and on each side the
        intermediate crest (fused articular processes) medial to the dorsal foramina and the
        lateral crest (transverse tubercles) lateral to them."""
        u = np.abs(np.asarray(u))
        s = np.asarray(s)
        base = (self.depth * (26.0 - 18.0 * np.clip(s, 0.0, 1.0))).astype(s.dtype)
        median = 5.0 * np.exp(-(u / 4.0) ** 2) * (s < 0.85)
        intermediate = 2.0 * np.exp(-((u - (10.0 - 3.0 * s)) / 2.5) ** 2) * (s < 0.8)
        lateral = 2.5 * np.exp(-((u - (31.0 - 10.0 * s)) / 3.5) ** 2) * (s < 0.7)
        return base - 0.15 * u + median + intermediate + lateral

    def canal(self, s) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Canal centre v, half-width and half-depth at ``s``."""
        centre = self.depth * np.interp(s, (0.0, 1.0), (12.0, 3.0))
        width = self.width * np.interp(s, (0.0, 1.0), (10.0, 5.0))
        return centre, width, self.depth * np.interp(s, (0.0, 1.0), (5.0, 2.5))

    def foramen_lateral_margin(self, s):
        """|u| of the line through the lateral margins of the foramina (ala boundary)."""
        margins = np.add(self.foramen_u, self.foramen_r)
        return np.interp(s, FORAMEN_S, margins)

    def foramen_points(self, level: int, sign: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """World points of one foramen: canal recess, anterior opening, dorsal opening."""
        s = FORAMEN_S[level]
        u = self.foramen_u[level]
        vc, a, b = self.canal(s)
        recess = self.world(s, sign * (a - 1.0), vc - 0.3 * b)
        anterior = self.world(s + 0.03, sign * u, self.anterior(u, s) - 3.0)
        dorsal = self.world(s - 0.02, sign * (u + 1.0), self.dorsal(u + 1.0, s) + 3.0)
        return recess, anterior, dorsal


def segment_distance(points: np.ndarray, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Distance (mm) from ``points`` ``(..., 3)`` to the segment ``a``-``b``."""
    ab = b - a
    t = np.clip(((points - a) @ ab) / float(ab @ ab), 0.0, 1.0)
    return np.linalg.norm(points - (a + t[..., None] * ab), axis=-1)


def draw_shape(rng: np.random.Generator, variation: float) -> SacralShape:
    """A seeded sacrum: the mean adult anatomy scaled by ``variation`` (0 = mean)."""
    def jitter(sigma: float) -> float:
        return float(np.clip(rng.normal(0.0, sigma), -2 * sigma, 2 * sigma)) * variation

    return SacralShape(
        s1_centre=np.array([0.0, -5.0, 40.0]) + np.array([0.0, jitter(3.0), jitter(3.0)]),
        length_mm=105.0 * (1 + jitter(0.06)),
        slope_deg=40.0 + jitter(5.0),
        end_deg=-25.0 + jitter(8.0),
        width=1.0 + jitter(0.06),
        depth=1.0 + jitter(0.06),
        foramen_u=tuple(u + jitter(1.0) for u in (20.0, 18.0, 16.0, 14.0)),
        foramen_r=tuple(r * (1 + jitter(0.08)) for r in (4.5, 3.8, 3.2, 2.6)),
        si_gap_mm=3.0 + jitter(0.4),
    )
