"""The phantom's hip bones beyond the sacroiliac joint, as rounded world-space solids.

Each hip bone (labelled ``ilium_left`` / ``ilium_right``) is the union of

- the iliac wing: a curved plate fanning laterally and anteriorly from the joint, concave
  towards the pelvis, 6 mm thick, thicker at the arched iliac crest and next to the joint, its anterior
  border running down from the anterior superior iliac spine towards the acetabulum;
- the iliac body: two thick tubes from the lower wing and from the auricular part down to
  the acetabulum (in front of the greater sciatic notch);
- the acetabular mass (an ellipsoid) and, from it, the ischium running down and back and
  the superior pubic ramus running forward to the symphysis (a gap of cartilage between
  the two sides, so the hip bones do not touch).

The auricular block facing the sacrum is part of the sacral-region labelling (it must
follow the sacrum's shape); these parts are anchored on it. All lengths in mm, world LPS.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from sample_ct.anatomy import SacralShape, segment_distance

JOINT_S = 0.15          # level (along the sacral midline) of the joint centre the bone is anchored on
BLOCK_MM = 10.0         # lateral distance from the joint gap to the anchor (the auricular block's middle)


@dataclass(frozen=True)
class Capsule:
    """Points within ``radius`` mm of the segment ``a``-``b`` (world LPS mm)."""

    a: np.ndarray
    b: np.ndarray
    radius: float

    def bounds(self) -> tuple[np.ndarray, np.ndarray]:
        """World box (low corner, high corner) that holds the solid."""
        return np.minimum(self.a, self.b) - self.radius, np.maximum(self.a, self.b) + self.radius

    def inside(self, pts: np.ndarray) -> np.ndarray:
        """Boolean array: which of ``pts`` ``(..., 3)`` lie in the capsule."""
        return segment_distance(pts, self.a, self.b) <= self.radius


@dataclass(frozen=True)
class Ellipsoid:
    """Axis-aligned ellipsoid with ``centre`` and semi-axes ``radii`` (world LPS mm)."""

    centre: np.ndarray
    radii: np.ndarray

    def bounds(self) -> tuple[np.ndarray, np.ndarray]:
        """World box (low corner, high corner) that holds the solid."""
        return self.centre - self.radii, self.centre + self.radii

    def inside(self, pts: np.ndarray) -> np.ndarray:
        """Boolean array: which of ``pts`` ``(..., 3)`` lie in the ellipsoid."""
        return np.sum(((pts - self.centre) / self.radii) ** 2, axis=-1) <= 1.0


@dataclass(frozen=True)
class IliacWing:
    """The curved iliac plate of one side, anchored at ``anchor`` (x, y of the joint block; z of S1).

    In the axial plane the plate's mid-surface runs from the anchor laterally and anteriorly,
    bending forward (``y = y0 - 0.45 a - 0.0025 a^2`` at lateral distance ``a``).
    """

    anchor: np.ndarray
    sign: int               # +1 patient left, -1 right

    REACH = 80.0            # greatest lateral reach from the anchor (mm)

    def bounds(self) -> tuple[np.ndarray, np.ndarray]:
        """World box (low corner, high corner) that holds the solid."""
        x0, y0, z0 = self.anchor
        lateral = (x0 - 5.0, x0 + self.REACH)
        xs = sorted((self.sign * lateral[0], self.sign * lateral[1]))
        return (np.array([xs[0], y0 - 75.0, z0 - 40.0]), np.array([xs[1], y0 + 15.0, z0 + 60.0]))

    def inside(self, pts: np.ndarray) -> np.ndarray:
        """Boolean array: which of ``pts`` ``(..., 3)`` lie in the wing."""
        x0, y0, z0 = self.anchor
        a = self.sign * pts[..., 0] - x0
        y, z = pts[..., 1], pts[..., 2]
        top = z0 + 42.0 - 0.007 * (a - 40.0) ** 2                  # arched iliac crest
        reach = np.minimum(self.REACH - 2.0, 32.0 + 1.1 * (z - (z0 - 35.0)))   # anterior border
        half = 3.0 + 4.0 * np.exp(-np.maximum(top - z, 0.0) / 8.0) + 6.0 * np.exp(-np.maximum(a, 0.0) / 18.0)
        mid = y0 - 0.45 * a - 0.0025 * a ** 2
        # Rounded borders: the plate thins to nothing over its last 6 mm at the crest and in front.
        fade = np.clip(np.minimum(top - z, reach - a) / 6.0, 0.0, 1.0)
        return (a >= -5.0) & (z >= z0 - 38.0) & (np.abs(y - mid) <= half * np.sqrt(fade))


def hip_bone_parts(shape: SacralShape, sign: int) -> list[Capsule | Ellipsoid | IliacWing]:
    """The solids that make one hip bone (``sign`` +1 left, -1 right), world LPS mm."""
    edge = float(shape.half_width(JOINT_S))
    v_mid = 0.5 * (float(shape.anterior(edge, JOINT_S)) + float(shape.dorsal(edge, JOINT_S)))
    joint = shape.world(JOINT_S, sign * (edge + shape.si_gap_mm + BLOCK_MM), v_mid)
    x0, y0, z0 = abs(float(joint[0])), float(joint[1]), float(shape.s1_centre[2])

    def at(lateral: float, dy: float, dz: float) -> np.ndarray:
        return np.array([sign * (x0 + lateral), y0 + dy, z0 + dz])

    acetabulum = at(32.0, -45.0, -100.0)
    return [
        IliacWing(np.array([x0, y0, z0]), sign),
        Capsule(at(0.0, -2.0, -40.0), acetabulum, 14.0),            # sciatic buttress (from the auricular part)
        Capsule(at(18.0, -12.0, -25.0), acetabulum, 15.0),          # iliac body (from the wing)
        Ellipsoid(acetabulum, np.array([20.0, 24.0, 22.0])),          # acetabular mass
        Capsule(acetabulum, at(12.0, 8.0, -125.0), 11.0),            # ischium (down and back)
        Capsule(acetabulum, np.array([sign * 13.0, y0 - 100.0, z0 - 120.0]), 9.0),   # superior pubic ramus
    ]
