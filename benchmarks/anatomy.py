"""The sacrum's anatomy measured the same way on real reference masks and on phantoms.

Usage: python benchmarks/anatomy.py [--real ../shared/ct/real_bone] [--cohort 6] [--seed 100]

One set of measuring functions takes a sacral bone mask and its CT (canonical axes: left,
posterior, superior; lengths in mm) and is applied identically to
- the real sacra of ``../shared/ct/real_bone/`` (bone = reference label 1; the canal and the
  foramina are holes of that mask), and
- phantoms (bone = the sacral bone labels: sacrum, alae, anterior cortex, fracture, lesion;
  the phantom's canal and foramina are holes of that mask too, and are found the same way).

Prints one row per case and the definitions; docs/phantom.md holds the table. Nothing from the
real CTs is written anywhere: only the aggregated figures are printed.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
from environment import SHARED_CT  # benchmarks/environment.py, beside this script
from scipy import ndimage

from sample_ct.cohort import cohort
from sample_ct.phantom import PhantomParams, make_phantom
from trajplan import labels as lt
from trajplan.io.files import read_volume_file
from trajplan.volume import Volume

REAL_BONE = SHARED_CT / "real_bone"
FRAME_MM = 1.0            # voxel size of the sacral frame the shape is measured in
SLAB_MM = 3.0             # half-thickness of the mid-sagittal slab
TRABECULAR_DEPTH_MM = 3.0
FORAMEN_MIN_MM3 = 40.0
CENTRAL_MM = 10.0         # holes nearer the midline are the canal
COLUMNS = (   # key, title, decimals
    ("volume_ml", "sacral bone volume (ml)"), ("width_mm", "width across the alae (mm)"),
    ("top_width_mm", "S1 top width, body + level alae (mm)"), ("s1_depth_mm", "S1 body depth (mm)"),
    ("height_mm", "height, anterior midline arc (mm)"), ("chord_mm", "height, straight (mm)"),
    ("curvature_deg", "sacral curvature (deg)"), ("s1_slope_deg", "S1 endplate to axial (deg)"),
    ("ala_slope_deg", "ala to S1 endplate (deg)"), ("foramen_mid_mm", "foramina from midline S1..S4 (mm)"),
    ("foramen_diam_mm", "foramen diameter S1..S4 (mm)"), ("canal_mm2", "canal S1-S2 (mm2)"),
    ("cortex_mm", "cortical thickness (mm)", 1), ("cortex_hu", "cortex HU"), ("trabecular_hu", "trabecular HU"),
)


@dataclass(frozen=True)
class Sacrum:
    """A sacral bone mask and its CT on one canonical grid (i, j, k = left, posterior, superior)."""

    bone: np.ndarray        # bool
    ct: np.ndarray          # HU, float32
    spacing: np.ndarray     # mm per axis


def _canonical(volume: Volume) -> Volume:
    return volume.to_canonical()[0]


def _cropped(bone: np.ndarray, ct: np.ndarray, spacing: np.ndarray, margin_mm: float = 10.0) -> Sacrum:
    """The box of ``bone`` with ``margin_mm`` around it."""
    hit = np.argwhere(bone)
    pad = np.ceil(margin_mm / spacing).astype(int)
    box = tuple(slice(max(lo - p, 0), hi + p + 1) for lo, hi, p in zip(hit.min(axis=0), hit.max(axis=0), pad))
    return Sacrum(bone[box], ct[box].astype(np.float32), np.asarray(spacing, float))


def real_sacrum(case_dir: Path, case: str) -> Sacrum:
    """Sacrum (reference label 1) and CT of one real case."""
    ref = _canonical(read_volume_file(case_dir / f"{case}_ref.nii.gz"))
    ct = _canonical(read_volume_file(case_dir / f"{case}_ct.nii.gz"))
    return _cropped(ref.array == 1, ct.array, ref.spacing)


def phantom_sacrum(params: PhantomParams) -> Sacrum:
    """Sacral bone (ground-truth labels) and CT of one phantom."""
    phantom = make_phantom(params)
    labels = _canonical(phantom.labels)
    return _cropped(lt.sacral_bone(labels.array), _canonical(phantom.ct).array, labels.spacing)


# ------------------------------------------------------------------------ the sagittal midline
def midline_x(sacrum: Sacrum) -> float:
    """x (mm from the box corner) of the mid-sagittal plane: the middle of the bone's left-right extent."""
    xs = np.flatnonzero(sacrum.bone.any(axis=(1, 2)))
    return 0.5 * (xs[0] + xs[-1]) * sacrum.spacing[0]


def mid_sagittal(sacrum: Sacrum) -> np.ndarray:
    """(j, k) mask of the bone within SLAB_MM of the mid-sagittal plane."""
    xs = np.arange(sacrum.bone.shape[0]) * sacrum.spacing[0]
    return sacrum.bone[np.abs(xs - midline_x(sacrum)) <= SLAB_MM].any(axis=0)


def anterior_curve(sacrum: Sacrum) -> np.ndarray:
    """(y, z) mm of the anterior (pelvic) surface in the mid-sagittal slab, from the promontory down
    to the tip: per axial level the most anterior bone, below the most anterior point of the upper half."""
    _, sy, sz = sacrum.spacing
    sagittal = mid_sagittal(sacrum)
    zs = np.flatnonzero(sagittal.any(axis=0))
    front = np.array([np.flatnonzero(sagittal[:, k])[0] * sy for k in zs])
    curve = np.column_stack([front, zs * sz])[::-1]          # top to bottom
    upper = curve[: len(curve) // 2]
    start = int(np.argmin(upper[:, 0]))
    return curve[start:]


def _arc(curve: np.ndarray) -> np.ndarray:
    """Cumulative arc length (mm) along ``curve``, smoothed over ~5 mm to ignore the voxel steps."""
    smooth = ndimage.uniform_filter1d(curve, size=5, axis=0, mode="nearest")
    return np.concatenate([[0.0], np.cumsum(np.linalg.norm(np.diff(smooth, axis=0), axis=1))])


def _direction(points: np.ndarray) -> np.ndarray:
    """Unit direction of the line fitted to ``points`` (principal axis), pointing from first to last."""
    centred = points - points.mean(axis=0)
    axis = np.linalg.svd(centred, full_matrices=False)[2][0]
    return axis if axis @ (points[-1] - points[0]) >= 0 else -axis


def curve_measures(curve: np.ndarray) -> dict[str, float]:
    """Arc length, chord and curvature (angle between the upper and lower halves' lines) of ``curve``."""
    arc = _arc(curve)
    half = arc <= arc[-1] / 2
    upper, lower = _direction(curve[half]), _direction(curve[~half])
    return {"height_mm": float(arc[-1]), "chord_mm": float(np.linalg.norm(curve[-1] - curve[0])),
            "curvature_deg": float(np.degrees(np.arccos(np.clip(upper @ lower, -1.0, 1.0))))}


def s1_axis(sacrum: Sacrum, promontory: np.ndarray) -> np.ndarray:
    """Unit (y, z) normal of the S1 endplate, pointing up: normal to the line fitted to the top of the
    mid-sagittal slab's bone from the promontory to 25 mm behind it."""
    _, sy, sz = sacrum.spacing
    sagittal = mid_sagittal(sacrum)
    js = [j for j in range(sagittal.shape[0]) if 0 <= j * sy - promontory[0] <= 25.0 and sagittal[j].any()]
    tops = np.array([[j * sy, np.flatnonzero(sagittal[j])[-1] * sz] for j in js])
    along = _direction(tops)                      # towards the back
    return np.array([-along[1], along[0]]) * np.sign(along[0])


# ---------------------------------------------------------------------------- the sacral frame
@dataclass(frozen=True)
class Frame:
    """The sacrum resampled at FRAME_MM with its S1 axis as +k: axial slices (i, j) are parallel to the
    S1 endplate plane, j runs from the pelvic surface to the back, i is left-right (midline at ``x0``)."""

    bone: np.ndarray
    centre_yz: np.ndarray   # mm (input box) at the frame's (j, k) centre
    back: np.ndarray        # (y, z) direction of +j
    up: np.ndarray          # (y, z) direction of +k
    x0: int                 # i of the mid-sagittal plane

    def index(self, yz: np.ndarray) -> np.ndarray:
        """Frame (j, k) of a mid-sagittal point ``yz`` (mm in the input box)."""
        rel = np.asarray(yz) - self.centre_yz
        return np.array([rel @ self.back, rel @ self.up]) / FRAME_MM + self.bone.shape[1] / 2


def sacral_frame(sacrum: Sacrum, up: np.ndarray) -> Frame:
    """``sacrum``'s bone rotated about the left-right axis so that ``up`` (the S1 axis, (y, z)) is +k."""
    spacing = sacrum.spacing
    extent = np.asarray(sacrum.bone.shape) * spacing
    size = int(np.ceil(np.linalg.norm(extent[1:]) / FRAME_MM)) + 2
    nx = int(np.ceil(extent[0] / FRAME_MM)) + 1
    back = np.array([up[1], -up[0]]) * np.sign(up[1])     # normal to up, towards the back (+y)
    centre_yz = extent[1:] / 2
    # Output (i, j, k) -> input index: x = i, (y, z) = centre + (j - size/2) back + (k - size/2) up (mm).
    matrix = np.zeros((3, 3))
    matrix[0, 0] = FRAME_MM / spacing[0]
    matrix[1:, 1] = back * FRAME_MM / spacing[1:]
    matrix[1:, 2] = up * FRAME_MM / spacing[1:]
    offset = np.concatenate([[0.0], (centre_yz - size / 2 * FRAME_MM * (back + up)) / spacing[1:]])
    bone = ndimage.affine_transform(sacrum.bone.astype(np.float32), matrix, offset, (nx, size, size), order=1)
    return Frame(bone >= 0.5, centre_yz, back, up, int(round(midline_x(sacrum) / FRAME_MM)))


def _holes_2d(bone: np.ndarray, axis: int) -> np.ndarray:
    """Voxels outside ``bone`` enclosed by it within their slice normal to ``axis``."""
    moved = np.moveaxis(bone, axis, 0)
    filled = np.stack([ndimage.binary_fill_holes(plane) for plane in moved])
    return np.moveaxis(filled & ~moved, 0, axis)


def endplate(frame: Frame, promontory: np.ndarray) -> tuple[int, int]:
    """Frame (j, k) of the S1 body's front and of its endplate's top: the highest bone within 10 mm
    of the midline and 0-25 mm behind the promontory."""
    front, _ = np.round(frame.index(promontory)).astype(int)
    reach = int(10 / FRAME_MM)
    column = frame.bone[frame.x0 - reach:frame.x0 + reach + 1, max(front - 2, 0):front + int(25 / FRAME_MM)]
    front = max(front - 2, 0) + int(np.flatnonzero(column.any(axis=(0, 2)))[0])
    return front, int(np.flatnonzero(column.any(axis=(0, 1)))[-1])


def _heights(bone: np.ndarray) -> np.ndarray:
    """Per (i, j) column of the frame the k of its highest bone voxel (-1 where it has none)."""
    k = np.arange(bone.shape[2])
    return np.where(bone.any(axis=2), np.max(np.where(bone, k, -1), axis=2), -1)


def s1_body(frame: Frame, front: int, top: int) -> dict[str, float]:
    """Width of the S1 top and depth (mm) of the S1 body.

    The S1 top is the upper bone surface within 3 mm of the endplate's top, connected to the midline
    just behind the front: the endplate and whatever of the alae rises to its level (on a solid mask
    the body joins the alae without an edge, so the body's own width is not measured). Width: its
    left-right extent; depth: its first run on the midline, from the front to the canal."""
    surface = _heights(frame.bone) >= top - int(3 / FRAME_MM)
    pieces, _ = ndimage.label(surface)
    row = pieces[frame.x0, front:front + int(10 / FRAME_MM)]
    piece = pieces == row[row > 0][0]
    xs = np.flatnonzero(piece.any(axis=1))
    line = piece[frame.x0, front:]
    start = int(np.argmax(line))
    depth = int(np.argmin(line[start:])) if not line[start:].all() else line.size - start
    return {"top_width_mm": float((xs[-1] - xs[0] + 1) * FRAME_MM), "s1_depth_mm": float(depth * FRAME_MM)}


def ala_slope(frame: Frame, top: int, width_mm: float) -> float:
    """Angle (deg) of the upper ala surface to the S1 plane, positive when it descends anteriorly.

    In each parasagittal band 60-80 % of the half-width from the midline, the upper surface (the
    band's highest bone per j, where it lies less than 30 mm below the endplate's top) from its
    front to the last j within 2 mm of its highest point; the angle of the line fitted to it; the
    mean of both sides."""
    angles = []
    half = width_mm / 2 / FRAME_MM
    for sign in (-1, 1):
        lo, hi = sorted(frame.x0 + sign * np.array([0.6 * half, 0.8 * half]))
        heights = _heights(frame.bone[int(lo):int(hi) + 1, :, :top + 1]).max(axis=0)
        js = np.flatnonzero(heights >= top - int(30 / FRAME_MM))
        js = js[js <= js[heights[js] >= heights[js].max() - int(2 / FRAME_MM)][-1]]
        if js.size < 3:
            continue
        slope = np.polyfit(js * FRAME_MM, heights[js] * FRAME_MM, 1)[0]
        angles.append(float(np.degrees(np.arctan(slope))))
    return float(np.mean(angles)) if angles else float("nan")


def canal_area(frame: Frame, front: int, top: int) -> float:
    """Median (over the S1-S2 slices, 10-40 mm below the endplate's top) of the area (mm2) of the
    hole enclosed by bone in the axial frame slice that the midline crosses behind the body; NaN
    where no slice encloses the canal."""
    areas = []
    for k in range(max(top - int(40 / FRAME_MM), 0), top - int(10 / FRAME_MM)):
        holes, _ = ndimage.label(ndimage.binary_fill_holes(frame.bone[:, :, k]) & ~frame.bone[:, :, k])
        found = np.unique(holes[frame.x0 - 1:frame.x0 + 2, front:])
        found = found[found > 0]
        if found.size:
            areas.append(max(np.count_nonzero(holes == f) for f in found) * FRAME_MM ** 2)
    return float(np.median(areas)) if areas else float("nan")


def canal_front(frame: Frame) -> np.ndarray:
    """Per frame level k, the j of the first gap behind the bone's front on the midline (the canal's
    front, the back of the vertebral body); -1 where the midline has no bone."""
    out = np.full(frame.bone.shape[2], -1)
    row = frame.bone[frame.x0]
    for k in np.flatnonzero(row.any(axis=0)):
        start = int(np.argmax(row[:, k]))
        out[k] = start + int(np.argmin(row[start:, k])) if not row[start:, k].all() else row.shape[0]
    return out


def foramina(frame: Frame) -> tuple[list[float], list[float]]:
    """Distance from the midline (mm) and diameter (mm) of the anterior (pelvic) foramina S1..S4, each
    the mean of both sides (NaN where a level was not found).

    Foramina are the holes of the bone in coronal frame slices (enclosed within the slice) in front
    of the canal's front at their level and more than CENTRAL_MM from the midline, joined in 3D;
    per side the four highest over FORAMEN_MIN_MM3 are S1..S4. Position: the hole's centroid.
    Diameter: that of the circle of the hole's median coronal slice area."""
    holes = _holes_2d(frame.bone, axis=1)
    reach = int(CENTRAL_MM / FRAME_MM)
    holes[frame.x0 - reach:frame.x0 + reach + 1] = False
    limit = canal_front(frame)
    holes &= np.arange(holes.shape[1])[None, :, None] < limit[None, None, :]
    pieces, _ = ndimage.label(holes)
    found: dict[int, list[tuple[float, float, float]]] = {-1: [], 1: []}
    for index, box in enumerate(ndimage.find_objects(pieces), start=1):
        piece = pieces[box] == index
        if piece.sum() * FRAME_MM ** 3 < FORAMEN_MIN_MM3:
            continue
        i, j, k = (np.argwhere(piece) + [b.start for b in box]).T
        offset = (i.mean() - frame.x0) * FRAME_MM
        areas = np.bincount(j - j.min())
        diameter = 2 * np.sqrt(np.median(areas[areas > 0]) * FRAME_MM ** 2 / np.pi)
        found[int(np.sign(offset))].append((k.mean(), abs(offset), diameter))
    levels = [sorted(side, reverse=True)[:4] for side in found.values()]
    mids, diameters = [], []
    for level in range(4):
        hits = [side[level] for side in levels if len(side) > level]
        mids.append(float(np.mean([h[1] for h in hits])) if hits else float("nan"))
        diameters.append(float(np.mean([h[2] for h in hits])) if hits else float("nan"))
    return mids, diameters


# --------------------------------------------------------------------------------- bone density
def hu_profile(sacrum: Sacrum) -> dict[str, float]:
    """Cortex and trabecular HU and cortical thickness from the HU against depth below the surface.

    Depth: distance (mm) of a bone voxel's centre to the nearest voxel outside the bone. Profile:
    median HU per 0.5 mm of depth. Cortex HU: the profile's maximum; trabecular HU: median HU
    deeper than TRABECULAR_DEPTH_MM; cortical thickness: the depth where the profile falls to halfway
    between the two, less half a voxel (the surface lies half a voxel outside the outer voxel centres)."""
    depth = ndimage.distance_transform_edt(sacrum.bone, sampling=sacrum.spacing)[sacrum.bone]
    hu = sacrum.ct[sacrum.bone]
    trabecular = float(np.median(hu[depth > TRABECULAR_DEPTH_MM]))
    edges = np.arange(0.5, TRABECULAR_DEPTH_MM + 0.5, 0.5)
    which = np.digitize(depth, edges)
    profile = np.array([np.median(hu[which == b]) if np.any(which == b) else np.nan for b in range(1, len(edges))])
    centres = (edges[:-1] + edges[1:]) / 2
    peak = int(np.nanargmax(profile))
    halfway = (profile[peak] + trabecular) / 2
    after = np.flatnonzero(profile[peak:] < halfway)
    cross = float("nan")
    if after.size:
        b = peak + int(after[0])
        cross = float(np.interp(halfway, [profile[b], profile[b - 1]], [centres[b], centres[b - 1]])) if b > peak \
            else float(centres[b])
    return {"cortex_mm": cross - float(sacrum.spacing.min()) / 2, "cortex_hu": float(profile[peak]),
            "trabecular_hu": trabecular}


# ------------------------------------------------------------------------------------- together
def measure(sacrum: Sacrum) -> dict[str, float | list[float]]:
    """Every figure of COLUMNS for one sacrum."""
    curve = anterior_curve(sacrum)
    up = s1_axis(sacrum, curve[0])
    frame = sacral_frame(sacrum, up)
    front, top = endplate(frame, curve[0])
    xs = np.flatnonzero(sacrum.bone.any(axis=(1, 2)))
    width = float((xs[-1] - xs[0] + 1) * sacrum.spacing[0])
    mids, diameters = foramina(frame)
    return {
        "volume_ml": float(sacrum.bone.sum() * np.prod(sacrum.spacing) / 1000.0), "width_mm": width,
        **s1_body(frame, front, top), **curve_measures(curve),
        "s1_slope_deg": float(np.degrees(np.arccos(abs(up[1])))),
        "ala_slope_deg": ala_slope(frame, top, width), "foramen_mid_mm": mids, "foramen_diam_mm": diameters,
        "canal_mm2": canal_area(frame, front, top), **hu_profile(sacrum),
    }


def _cell(value: float | list[float], digits: int = 0) -> str:
    values = value if isinstance(value, list) else [value]
    return " / ".join("n/f" if np.isnan(v) else f"{v:.{digits}f}" for v in values)


def table(rows: list[tuple[str, str, dict]]) -> str:
    """Markdown table: one column per case (named with its data kind), one row per measure."""
    head = "| measure | " + " | ".join(f"{name} ({kind})" for name, kind, _ in rows) + " |"
    lines = [head, "|" + " --- |" * (len(rows) + 1)]
    for key, title, *digits in COLUMNS:
        lines.append(f"| {title} | " + " | ".join(_cell(m[key], *digits) for _, _, m in rows) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--real", type=Path, default=REAL_BONE, help="folder of NNN_ct/NNN_ref.nii.gz")
    parser.add_argument("--cohort", type=int, default=6, help="cohort phantoms with varied anatomy")
    parser.add_argument("--seed", type=int, default=100, help="seed of the cohort (as benchmarks/validate.py)")
    args = parser.parse_args(argv)
    rows = []
    for case in ("001", "003"):
        if (args.real / f"{case}_ref.nii.gz").exists():
            rows.append((f"real {case}", "real CT", measure(real_sacrum(args.real, case))))
    demo = PhantomParams(seed=0, fracture="bilateral", position="prone")
    rows.append(("phantom seed 0", "phantom", measure(phantom_sacrum(demo))))
    # The cohort's anatomy at 1 mm (its spacings vary), so that shape is measured at the real CTs' resolution.
    for params in cohort(args.cohort, args.seed, vary_anatomy=True) if args.cohort else []:
        rows.append((f"phantom {params.seed} (var {params.variation:g}, op {params.osteoporosis:g})", "phantom",
                     measure(phantom_sacrum(replace(params, spacing=(1.0, 1.0, 1.0))))))
    print(table(rows))


if __name__ == "__main__":
    main()
