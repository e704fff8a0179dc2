"""The parametric sacrum phantom: a plausible pelvic CT with exact ground-truth labels.

``make_phantom(PhantomParams(...))`` builds, from a seed, a CT in HU (int16) and an
exclusive label map on the same grid (label names and values from
:mod:`trajplan.labels`), plus ``info``: the parameters and the fracture / lesion
geometry in LPS mm. ``write_phantom`` writes them as ``ct.nii.gz``,
``labels.nii.gz``, ``labels.json``, ``phantom.json`` (and a DICOM series).

The anatomy (see :mod:`sample_ct.anatomy`) is evaluated at voxel centres in world
coordinates, so prone and supine phantoms hold the same anatomy at the same LPS
positions; only the storage order differs (prone is stored with direction
diag(-1, -1, 1), as a head-first-prone scan is).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from scipy import ndimage

from sample_ct.anatomy import FORAMEN_S, LEVEL_BOUNDS, SacralShape, draw_shape, segment_distance
from sample_ct.pelvis import hip_bone_parts
from trajplan import labels as lt
from trajplan.errors import InputError
from trajplan.io.atomic import write_json
from trajplan.io.files import write_volume_file
from trajplan.volume import Volume

FRACTURES = ("none", "left", "right", "bilateral")
LESIONS = ("none", "left", "right", "body")
POSITIONS = ("supine", "prone")
DEFAULT_FOV_MM = (340.0, 270.0, 210.0)
FOV_CENTRE = np.array([0.0, -10.0, -5.0])
SIDES = {side.value: side.sign for side in lt.Side}   # LPS: +x is the patient's left

# Hounsfield units of the tissues.
HU = {
    "air": -1000.0, "fat": -100.0, "muscle": 45.0, "pelvis": -30.0, "vessel": 40.0,
    "canal": 10.0, "foramen": 5.0, "disc": 80.0, "joint": 60.0, "fracture": 40.0,
    "lesion": 30.0,
}


@dataclass(frozen=True)
class PhantomParams:
    """Parameters of one phantom; all randomness comes from ``seed``.

    Raises
    ------
    InputError
        For an unknown fracture / lesion / position, osteoporosis outside 0..1,
        spacing outside 0.5-3 mm, variation outside 0..2, a lesion radius outside
        3-25 mm, a field of view outside 160-600 mm, or a negative noise or blur.
    """

    seed: int = 0
    spacing: tuple[float, float, float] = (1.0, 1.0, 1.0)
    fov_mm: tuple[float, float, float] | None = None
    fracture: str = "none"
    lesion: str = "none"
    lesion_radius_mm: float = 10.0
    osteoporosis: float = 0.0
    noise_hu: float = 20.0
    blur_mm: float = 1.0
    position: str = "supine"
    variation: float = 1.0

    def __post_init__(self) -> None:
        spacing = np.asarray(self.spacing, dtype=float).reshape(-1)
        if spacing.size == 1:
            spacing = np.repeat(spacing, 3)
        if spacing.size != 3 or np.any(spacing < 0.5) or np.any(spacing > 3.0):
            raise InputError(f"phantom spacing must be 0.5-3 mm per axis, got {self.spacing}")
        object.__setattr__(self, "spacing", tuple(float(s) for s in spacing))
        for name, allowed in (("fracture", FRACTURES), ("lesion", LESIONS), ("position", POSITIONS)):
            if getattr(self, name) not in allowed:
                raise InputError(f"unknown {name} {getattr(self, name)!r} (use {', '.join(allowed)})")
        if not 0.0 <= self.osteoporosis <= 1.0:
            raise InputError(f"osteoporosis must be between 0 and 1, got {self.osteoporosis}")
        for name in ("noise_hu", "blur_mm"):
            if getattr(self, name) < 0:
                raise InputError(f"{name} must not be negative, got {getattr(self, name)}")
        if not 0.0 <= self.variation <= 2.0:
            raise InputError(f"variation must be between 0 and 2, got {self.variation}")
        if not 3.0 <= self.lesion_radius_mm <= 25.0:
            raise InputError(f"lesion radius must be 3-25 mm, got {self.lesion_radius_mm}")
        if self.fov_mm is not None:
            fov = tuple(float(f) for f in self.fov_mm)
            if len(fov) != 3 or min(fov) < 160.0 or max(fov) > 600.0:
                raise InputError(f"phantom field of view must be 160-600 mm per axis, got {self.fov_mm}")
            object.__setattr__(self, "fov_mm", fov)


@dataclass(frozen=True)
class Phantom:
    """A phantom CT (HU, int16), its ground-truth label map (uint8) and its description."""

    ct: Volume
    labels: Volume
    info: dict


def _grid(params: PhantomParams) -> tuple[np.ndarray, np.ndarray]:
    """Number of voxels and world position of the first voxel (supine storage order)."""
    spacing = np.asarray(params.spacing)
    fov = np.asarray(params.fov_mm or DEFAULT_FOV_MM)
    shape = np.maximum(np.round(fov / spacing).astype(int), 8)
    first = FOV_CENTRE - (shape - 1) / 2.0 * spacing
    return shape, first


def _axes(shape: np.ndarray, first: np.ndarray, spacing: np.ndarray) -> list[np.ndarray]:
    return [first[a] + spacing[a] * np.arange(shape[a]) for a in range(3)]


def _box(axes: list[np.ndarray], lo, hi) -> tuple[slice, slice, slice]:
    """Index slices of the voxels whose centres lie in the world box [lo, hi]."""
    return tuple(slice(int(np.searchsorted(ax, low)), int(np.searchsorted(ax, high, side="right")))
                 for ax, low, high in zip(axes, lo, hi))  # type: ignore[return-value]


def _points(axes: list[np.ndarray], box: tuple[slice, slice, slice]) -> np.ndarray:
    """World positions (float32, ``(..., 3)``) of the voxel centres in ``box``."""
    return np.stack(np.meshgrid(*(ax[sl] for ax, sl in zip(axes, box)), indexing="ij"), axis=-1).astype(np.float32)


def _body_tissue(axes: list[np.ndarray]) -> np.ndarray:
    """HU of air, subcutaneous fat, muscle and the pelvic cavity, as elliptic cylinders."""
    x, y = np.meshgrid(axes[0], axes[1], indexing="ij")
    body = (x / 165.0) ** 2 + ((y + 15.0) / 115.0) ** 2
    muscle = (x / 150.0) ** 2 + ((y + 15.0) / 100.0) ** 2
    pelvis = (x / 75.0) ** 2 + ((y + 70.0) / 48.0) ** 2
    plane = np.full(x.shape, HU["air"], dtype=np.float32)
    plane[body <= 1] = HU["fat"]
    plane[muscle <= 1] = HU["muscle"]
    plane[pelvis <= 1] = HU["pelvis"]
    return np.repeat(plane[:, :, None], len(axes[2]), axis=2)


def _label_sacral_region(shape: SacralShape, params: PhantomParams, axes: list[np.ndarray], info: dict,
                         label: np.ndarray, hu: np.ndarray) -> None:
    """Label the sacrum and its close neighbours on the grid of voxel-centre ``axes`` (world mm).

    Writes, in place, ``label`` and the HU of the soft structures (``hu``: disc, joints,
    vessels, lumens; bone HU is set later). Everything the sacral local coordinates
    describe lies in this region: L5, disc, sacrum, coccyx, SI joints, the auricular
    part of the ilia, presacral vessels.
    """
    pts = _points(axes, (slice(None),) * 3)
    s, u, v = (c.astype(np.float32) for c in shape.local(pts[..., 0], pts[..., 1], pts[..., 2]))
    au = np.abs(u)

    v_ant, v_dor = shape.anterior(u, s), shape.dorsal(u, s)
    half_w = shape.half_width(s)
    mid = 0.5 * (v_ant + v_dor)
    half = np.maximum(0.5 * (v_dor - v_ant), 1e-3)
    rounding = 3.0 * ((v - mid) / half) ** 4          # rounded lateral edges
    inside_section = (v >= v_ant) & (v <= v_dor) & (au <= half_w - rounding)
    envelope = inside_section & (s >= 0.0) & (s <= 1.0)

    # Neighbours: L5 (its own straight axis, leaning ~15 degrees: a wedge-shaped L5-S1 disc),
    # coccyx, the auricular part of the ilium and SI joints, presacral vessels.
    lean = np.deg2rad(15.0)
    up = np.array([0.0, -np.sin(lean), np.cos(lean)], dtype=np.float32)
    back = np.array([0.0, np.cos(lean), np.sin(lean)], dtype=np.float32)
    rel = pts - shape.s1_centre.astype(np.float32)
    t, w = rel @ up, rel @ back
    vc0, a0, b0 = shape.canal(0.0)
    body_l5 = (u / (25.0 * shape.width)) ** 2 + ((w + 2.0) / (16.0 * shape.depth)) ** 2 <= 1
    spinal = (u / a0) ** 2 + ((w - vc0) / b0) ** 2 <= 1
    arch = ((u / (a0 + 6.0)) ** 2 + ((w - vc0) / (b0 + 6.0)) ** 2 <= 1) & (w > vc0 - 2.0) & ~spinal
    spinous = (au < 4.0) & (w >= vc0) & (w <= vc0 + 35.0) & (t >= 18.0)
    label[(t >= 11.0) & (t <= 38.0) & (body_l5 | ((t >= 14.0) & (arch | spinous)))] = lt.value("L5")
    label[(s < 0.0) & (t < 11.0) & (t > -8.0) & body_l5] = lt.value("L5_S1_disc")
    hu[label == lt.value("L5_S1_disc")] = HU["disc"]

    s_cx = 1.0 + 2.0 / shape.length_mm
    t_cx = np.clip((s - s_cx) / (25.0 / shape.length_mm), 0.0, 1.0)
    coccyx = (s >= s_cx) & (s <= s_cx + 25.0 / shape.length_mm) & (
        (u / (8.0 - 4.0 * t_cx)) ** 2 + (v / (5.0 - 2.0 * t_cx)) ** 2 <= 1)
    label[coccyx] = lt.value("coccyx")

    # SI joint: a gap of cartilage along the auricular surface (S1-S3), backed by the
    # auricular part of the ilium, which reaches dorsally past the sacrum (iliac tuberosity)
    # and is rounded on its lateral side.
    edge = shape.half_width(np.clip(s, 0.0, 0.5))
    edge_ant, edge_dor = shape.anterior(edge, s), shape.dorsal(edge, s)
    lateral = au - edge
    gap = shape.si_gap_mm
    joint = (s >= 0.0) & (s <= 0.5) & (lateral > 0) & (lateral <= gap) & (v >= edge_ant + 1.0) & (
        v <= edge_dor - 1.0)
    block_v = ((v - 0.5 * (edge_ant + edge_dor + 12.0)) / (0.5 * (edge_dor - edge_ant) + 8.0)) ** 4
    block_s = ((s - 0.23) / 0.35) ** 4
    roundness = np.maximum(block_v, block_s)
    block = (roundness < 1.0) & (lateral > gap) & (
        lateral <= gap + 20.0 * np.sqrt(np.maximum(1.0 - roundness, 0.0)))
    for name, sign in SIDES.items():
        side = np.sign(u) == sign
        label[block & side] = lt.value(f"ilium_{name}")
        label[joint & side] = lt.value(f"si_joint_{name}")
    hu[joint] = HU["joint"]

    vessel_v = v - (shape.anterior(15.0, s) - 9.0)
    vessel_dist = np.minimum(np.hypot(u - 15.0, vessel_v), np.hypot(u + 15.0, vessel_v))
    vessels = (vessel_dist <= 5.0) & (s >= -0.1) & (s <= 0.6)
    label[vessels & (label == 0)] = lt.value("presacral_vessels")
    hu[vessels] = HU["vessel"]

    # Sacral bone: sacrum, alae lateral to the foramina line, anterior cortex band.
    label[envelope] = lt.value("sacrum")
    ala = envelope & (au > shape.foramen_lateral_margin(s))
    label[ala & (u > 0)] = lt.value("ala_left")
    label[ala & (u < 0)] = lt.value("ala_right")
    label[envelope & (v - v_ant < 2.0)] = lt.value("anterior_cortex")

    # Lesion and fracture lines (inside the sacral bone).
    if params.lesion != "none":
        centre = np.asarray(info["lesion"]["centre_lps"], dtype=np.float32)
        in_lesion = np.linalg.norm(pts - centre, axis=-1) <= params.lesion_radius_mm
        label[envelope & in_lesion] = lt.value("lesion")
    fracture_thickness = max(1.5, float(max(params.spacing)))
    for line in info["fracture_lines"]:
        sign = SIDES[line["side"]]
        u_line = sign * (line["u_mm"] + np.tan(np.deg2rad(line["tilt_deg"])) * (s - 0.25) * shape.length_mm)
        crack = envelope & (np.abs(u - u_line) <= fracture_thickness / 2) & (s >= 0.0) & (s <= 0.55)
        label[crack] = lt.value("fracture")

    # Lumens last: canal (with the dorsal hiatus) and the foramina channels.
    vc, a, b = shape.canal(s)
    canal = (s >= 0.0) & (s <= 1.0) & ((u / a) ** 2 + ((v - vc) / b) ** 2 <= 1)
    hiatus = (s > 0.85) & (s <= 1.0) & (au <= a) & (v >= vc) & (v <= v_dor)
    filled = envelope | canal
    for level, name in enumerate(("S1", "S2", "S3", "S4")):
        for side, sign in SIDES.items():
            recess, front, back = shape.foramen_points(level, sign)
            r = shape.foramen_r[level]
            for end, radius in ((front, r), (back, 0.8 * r)):
                ends = np.stack([recess, end])
                box = _box(axes, ends.min(axis=0) - radius, ends.max(axis=0) + radius)
                lumen = (segment_distance(pts[box], recess, end) <= radius) & filled[box] & ~canal[box]
                label[box][lumen] = lt.value(f"foramen_{name}_{side}")
                hu[box][lumen] = HU["foramen"]
    label[canal | (hiatus & envelope)] = lt.value("canal")
    hu[canal | (hiatus & envelope)] = HU["canal"]


def _label_hip_bones(shape: SacralShape, axes: list[np.ndarray], label: np.ndarray) -> None:
    """Add each hip bone's wing, body, acetabulum, ischium and pubic ramus (``ilium_*``) where
    ``label`` is still background; each solid is evaluated in its own box only."""
    for name, sign in SIDES.items():
        for part in hip_bone_parts(shape, sign):
            box = _box(axes, *part.bounds())
            if any(sl.start >= sl.stop for sl in box):
                continue
            target = label[box]
            target[part.inside(_points(axes, box)) & (target == 0)] = lt.value(f"ilium_{name}")


def _bone_intensities(label: np.ndarray, hu: np.ndarray, params: PhantomParams, rng: np.random.Generator) -> None:
    """Set bone HU in place: trabecular bone with texture under a cortical shell at every bone
    surface (with partial volume), and the low HU of fracture lines and the lesion."""
    op = params.osteoporosis
    cortex_hu = 1000.0 - 400.0 * op
    trab_hu = 250.0 - 200.0 * op
    shell = 1.5 - 0.7 * op
    sampling = np.asarray(params.spacing)
    voxel = float(sampling.min())
    bone = np.isin(label, [lt.value(n) for n in lt.BONE if n not in ("fracture", "lesion")])
    # Depth below the bone surface; only depths up to shell + one voxel matter, so each
    # connected piece of bone is measured in its own box, padded by that depth.
    depth = np.full(label.shape, np.inf, dtype=np.float32)
    pad = int(np.ceil((shell + voxel) / voxel)) + 1
    pieces, _ = ndimage.label(bone)
    for index, found in enumerate(ndimage.find_objects(pieces), start=1):
        box = tuple(slice(max(sl.start - pad, 0), min(sl.stop + pad, n)) for sl, n in zip(found, label.shape))
        piece = pieces[box] == index
        depth[box][piece] = ndimage.distance_transform_edt(bone[box], sampling=sampling)[piece]
    # Partial volume: the fraction of a voxel covered by the shell, from its depth (a boundary
    # voxel has depth = one voxel), so a shell thinner than a voxel still shows, dimmed.
    cortical = np.clip((shell - (depth[bone] - voxel)) / voxel, 0.0, 1.0)
    hu[bone] = trab_hu + cortical * (cortex_hu - trab_hu)
    hu[label == lt.value("fracture")] = HU["fracture"]
    hu[label == lt.value("lesion")] = HU["lesion"]
    # Trabecular texture (correlated over ~1 mm) in every bone voxel.
    all_bone = np.isin(label, [lt.value(n) for n in lt.BONE])
    texture = ndimage.gaussian_filter(rng.normal(0.0, 1.0, label.shape).astype(np.float32), sigma=1.0 / sampling)
    hu[all_bone] += texture[all_bone] * (60.0 / max(float(texture.std()), 1e-6))


def _lesion_and_fractures(shape: SacralShape, params: PhantomParams, rng: np.random.Generator) -> dict:
    """Fracture-line and lesion geometry (local and LPS), drawn before they are rasterised."""
    info: dict = {"fracture_lines": [], "lesion": None}
    sides = {"left": ["left"], "right": ["right"], "bilateral": ["left", "right"], "none": []}
    tilts = rng.uniform(-8.0, 8.0, size=2)
    fractions = rng.uniform(0.35, 0.55, size=2)
    for i, side in enumerate(("left", "right")):
        if side not in sides[params.fracture]:
            continue
        sign = SIDES[side]
        s_mid = 0.25
        margin = float(shape.foramen_lateral_margin(s_mid))
        u_mm = margin + fractions[i] * (float(shape.half_width(s_mid)) - margin)
        tilt = float(tilts[i])
        points = []
        for s in np.linspace(0.02, 0.53, 6):
            u = sign * (u_mm + np.tan(np.deg2rad(tilt)) * (s - 0.25) * shape.length_mm)
            v = 0.5 * (float(shape.anterior(u, s)) + float(shape.dorsal(u, s)))
            points.append(shape.world(s, u, v).round(2).tolist())
        normal = np.array([np.cos(np.deg2rad(tilt)), 0.0, 0.0]) * sign
        info["fracture_lines"].append({
            "side": side, "u_mm": round(u_mm, 3), "tilt_deg": round(tilt, 3),
            "thickness_mm": max(1.5, float(max(params.spacing))),
            "points_lps": points, "point_lps": points[len(points) // 2],
            "normal_lps": normal.round(4).tolist(), "levels": "S1-S3",
        })
    if params.lesion != "none":
        s = 0.13
        if params.lesion == "body":
            u, v = 0.0, 0.5 * (float(shape.anterior(0.0, s)) + float(shape.canal(s)[0]) - float(shape.canal(s)[2]))
        else:
            margin = float(shape.foramen_lateral_margin(s))
            u = SIDES[params.lesion] * 0.5 * (margin + float(shape.half_width(s)))
            v = 0.5 * (float(shape.anterior(u, s)) + float(shape.dorsal(u, s)))
        info["lesion"] = {"where": params.lesion, "centre_lps": shape.world(s, u, v).round(2).tolist(),
                          "radius_mm": params.lesion_radius_mm}
    return info


def _landmarks(shape: SacralShape) -> dict:
    """Level centres, foramen openings and SI joint lines in LPS mm (for docs and tests)."""
    levels = {f"S{i + 1}": shape.world(0.5 * (LEVEL_BOUNDS[i] + LEVEL_BOUNDS[i + 1]), 0.0, 0.0).round(2).tolist()
              for i in range(5)}
    foramina = {}
    for level, s in enumerate(FORAMEN_S):
        for side, sign in SIDES.items():
            _, front, back = shape.foramen_points(level, sign)
            foramina[f"foramen_S{level + 1}_{side}"] = {"anterior_lps": front.round(2).tolist(),
                                                        "dorsal_lps": back.round(2).tolist()}
    joints = {}
    for side, sign in SIDES.items():
        joints[f"si_joint_{side}"] = [shape.world(s, sign * (float(shape.half_width(s)) + shape.si_gap_mm / 2), 0.0)
                                      .round(2).tolist() for s in (0.0, 0.25, 0.5)]
    return {"levels": levels, "foramina": foramina, "si_joints": joints,
            "s1_endplate_centre_lps": np.round(shape.s1_centre, 2).tolist()}


def make_phantom(params: PhantomParams) -> Phantom:
    """Build the phantom CT, its ground-truth labels and its description (deterministic)."""
    rng = np.random.default_rng(params.seed)
    shape = draw_shape(rng, params.variation)
    info = _lesion_and_fractures(shape, params, rng)
    noise_seed = int(rng.integers(2**31))

    spacing = np.asarray(params.spacing)
    dims, first = _grid(params)
    axes = _axes(dims, first, spacing)
    labels = np.zeros(tuple(dims), dtype=np.uint8)
    hu = np.full(tuple(dims), np.nan, dtype=np.float32)   # NaN: soft-tissue background

    # The sacrum and its close neighbours (everything described in sacral coordinates), then
    # the rest of the hip bones.
    centre = shape.s1_centre
    near = _box(axes, centre + np.array([-95.0, -50.0, -150.0]), centre + np.array([95.0, 75.0, 60.0]))
    _label_sacral_region(shape, params, [ax[sl] for ax, sl in zip(axes, near)], info, labels[near], hu[near])
    _label_hip_bones(shape, axes, labels)

    # Bone HU (in the box that holds all bone), then the body's soft tissue around it, then
    # CT blur (blur_mm = FWHM) and noise everywhere.
    noise_rng = np.random.default_rng(noise_seed)
    found = ndimage.find_objects(np.isin(labels, [lt.value(n) for n in lt.BONE]).astype(np.uint8))
    if found:   # the box of all bone, with a margin so that its surface lies inside
        bone_box = tuple(slice(max(sl.start - 4, 0), min(sl.stop + 4, n)) for sl, n in zip(found[0], dims))
        _bone_intensities(labels[bone_box], hu[bone_box], params, noise_rng)
    hu = np.where(np.isnan(hu), _body_tissue(axes), hu)
    if params.blur_mm > 0:
        hu = ndimage.gaussian_filter(hu, sigma=params.blur_mm / 2.355 / spacing)
    if params.noise_hu > 0:
        hu += noise_rng.normal(0.0, params.noise_hu, hu.shape).astype(np.float32)
    ct_array = np.clip(np.round(hu), -1024, 3071).astype(np.int16)

    direction = np.eye(3)
    origin = first
    if params.position == "prone":
        ct_array, labels = ct_array[::-1, ::-1, :], labels[::-1, ::-1, :]
        direction = np.diag([-1.0, -1.0, 1.0])
        origin = first + np.array([(dims[0] - 1) * spacing[0], (dims[1] - 1) * spacing[1], 0.0])
    ct = Volume(np.ascontiguousarray(ct_array), spacing, origin, direction)
    label_volume = Volume(np.ascontiguousarray(labels), spacing, origin, direction)
    info = {
        "generator": "trajplan sample_ct.phantom",
        "parameters": {k: (list(v) if isinstance(v, tuple) else v) for k, v in asdict(params).items()},
        "shape": {"length_mm": round(shape.length_mm, 2), "slope_deg": round(shape.slope_deg, 2),
                  "end_deg": round(shape.end_deg, 2), "width_scale": round(shape.width, 4),
                  "depth_scale": round(shape.depth, 4), "si_gap_mm": round(shape.si_gap_mm, 3)},
        "fracture_lines": [{k: v for k, v in line.items() if k not in ("u_mm", "tilt_deg")}
                           for line in info["fracture_lines"]],
        "lesion": info["lesion"],
        "landmarks": _landmarks(shape),
    }
    return Phantom(ct=ct, labels=label_volume, info=info)


def write_phantom(phantom: Phantom, out_dir: str | Path, *, dicom: bool = False) -> dict[str, Path]:
    """Write ``ct.nii.gz``, ``labels.nii.gz``, ``labels.json``, ``phantom.json`` (and ``dicom/``).

    Every file is written atomically. Returns the written paths by name.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    written = {
        "ct": write_volume_file(phantom.ct, out / "ct.nii.gz"),
        "labels": write_volume_file(phantom.labels, out / "labels.nii.gz"),
    }
    write_json(out / "labels.json", lt.table_json())
    write_json(out / "phantom.json", phantom.info)
    written["labels_json"] = out / "labels.json"
    written["phantom_json"] = out / "phantom.json"
    if dicom:
        from trajplan.io.dicom import write_dicom_series

        position = "HFP" if phantom.info["parameters"]["position"] == "prone" else "HFS"
        written["dicom"] = write_dicom_series(phantom.ct, out / "dicom", series_description="trajplan phantom",
                                              patient_position=position)
    return written
