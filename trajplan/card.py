"""The procedure card of a needle: what the operator needs at the table.

Skin entry (LPS and RAS), depths, the shortest standard needle that reaches, the offset from
the body's midline and from the nearest sacral level, and the guidance numbers: for a
short-axis needle (CT guidance) the entry slice, its table position and the gantry tilt with
its direction; for a long-axis needle (fluoroscopy) the C-arm angles of a view down the needle.

The geometry functions (:func:`lps_to_ras`, :func:`gantry_tilt`, :func:`in_plane_angle`,
:func:`c_arm_angles`, :func:`needle_length`) are pure; :func:`skin_point`, :func:`entry_slice`,
:func:`body_midline_x` and :func:`level_heights` read a volume; :func:`add_cards` fills a plan.

Conventions (LPS millimetres: +x patient's left, +y posterior, +z superior; a needle's
direction runs from its hub, outside the body, to its tip):

- gantry tilt: the CT image plane that holds the whole needle contains the left-right axis;
  its tilt from the axial plane is given as a non-negative angle and the way the *top* of the
  gantry leans (``head`` or ``feet``). The top of the gantry is the side of the patient that
  faces up: posterior when prone, anterior when supine. The top leans the same way as the
  end of the needle line that points up (for a needle entering from above: its hub).
- in-plane angle: within that plane, the needle's angle from the vertical, and the side of
  the patient (``left`` / ``right``) toward which the hub leans.
- C-arm: the beam runs along the needle from the tip side to the hub side, the detector
  (image intensifier) on the hub side. ``cranial_caudal_deg`` is the detector's tilt toward the
  head (positive, cranial) or the feet (negative, caudal) out of the axial plane;
  ``oblique_deg`` the rotation about the patient's long axis toward the patient's left
  (positive) or right (negative) from straight posterior-anterior (detector posterior) or
  anterior-posterior (detector anterior).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from trajplan.needle import Technique
from trajplan.planning.defaults import STANDARD_NEEDLE_LENGTHS_MM
from trajplan.volume import Volume

BODY_HU = -500.0           # the body: voxels above this
SKIN_STEP_MM = 0.5         # march step along the needle line
SKIN_AIR_RUN_MM = 1.0      # this much air in a row is outside the body (a lone dark voxel is not)
MAX_GANTRY_TILT_DEG = 30.0  # a usual CT gantry tilts no further
STEEP_VIEW_DEG = 45.0      # a view down the needle further than this from PA is noted
LEVELS = ("S1", "S2", "S3", "S4")
POSITIONS = ("prone", "supine")


def lps_to_ras(point: Sequence[float]) -> list[float]:
    """RAS coordinates of an LPS point (x and y negated).

    Parameters
    ----------
    point : sequence of 3 floats
        LPS millimetres.

    Returns
    -------
    list of float
        RAS millimetres (3D Slicer's display convention).
    """
    x, y, z = (float(v) for v in point)
    return [-x + 0.0, -y + 0.0, z]


def _unit(direction: Sequence[float]) -> np.ndarray:
    d = np.asarray(direction, dtype=float)
    norm = np.linalg.norm(d)
    if not np.isfinite(norm) or norm < 1e-12:
        raise ValueError("a needle direction must be a non-zero vector")
    return d / norm


def _check_position(position: str) -> str:
    if position not in POSITIONS:
        raise ValueError(f"unknown patient position {position!r} (prone or supine)")
    return position


def gantry_tilt(direction: Sequence[float], position: str) -> tuple[float, str | None]:
    """Gantry tilt (degrees, >= 0) of the CT plane that holds the needle, and where its top leans.

    Parameters
    ----------
    direction : sequence of 3 floats
        The needle's direction (hub to tip, or tip to hub: the plane is the same), LPS.
    position : {"prone", "supine"}
        How the patient lies: the top of the gantry is on the side facing up.

    Returns
    -------
    tilt_deg : float
        Angle between the plane (spanned by the left-right axis and the needle) and the axial
        plane; 90 for a needle along the body's long axis.
    toward : {"head", "feet"} or None
        Where the top of the gantry leans; None for no tilt (below 0.05 degree).
    """
    d = _unit(direction)
    up = 1.0 if _check_position(position) == "prone" else -1.0    # +y is posterior
    dy, dz = d[1], d[2]
    if np.hypot(dy, dz) < 1e-9:                                    # a purely left-right needle
        return 0.0, None
    if dy * up < 0 or (dy == 0 and dz < 0):                       # orient along "up"
        dy, dz = -dy, -dz
    tilt = float(np.degrees(np.arctan2(abs(dz), abs(dy))))
    if tilt < 0.05:
        return 0.0, None
    return tilt, ("head" if dz > 0 else "feet")


def in_plane_angle(direction: Sequence[float]) -> tuple[float, str | None]:
    """The needle's angle from the vertical within its (tilted) CT plane, and where its hub leans.

    Parameters
    ----------
    direction : sequence of 3 floats
        The needle's direction, hub to tip, LPS.

    Returns
    -------
    angle_deg : float
        0 for a needle in the vertical (antero-posterior, tilted with the gantry) direction,
        90 for a left-right needle.
    hub_toward : {"left", "right"} or None
        The patient's side toward which the hub leans; None below 0.05 degree.
    """
    d = _unit(direction)
    angle = float(np.degrees(np.arctan2(abs(d[0]), np.hypot(d[1], d[2]))))
    if angle < 0.05:
        return 0.0, None
    return angle, ("left" if -d[0] > 0 else "right")


def c_arm_angles(direction: Sequence[float]) -> dict:
    """C-arm angles of the view down the needle (the needle seen end-on, as a dot).

    Parameters
    ----------
    direction : sequence of 3 floats
        The needle's direction, hub to tip, LPS.

    Returns
    -------
    dict
        ``cranial_caudal_deg`` (detector tilted toward the head: positive), ``oblique_deg``
        (detector rotated toward the patient's left: positive) and ``detector_side``
        (``posterior`` or ``anterior``: the side of the hub).
    """
    beam = -_unit(direction)                      # tip side -> hub side (toward the detector)
    cranial = float(np.degrees(np.arcsin(np.clip(beam[2], -1.0, 1.0))))
    oblique = float(np.degrees(np.arctan2(beam[0], abs(beam[1]))))
    return {"cranial_caudal_deg": round(cranial, 1) + 0.0, "oblique_deg": round(oblique, 1) + 0.0,
            "detector_side": "posterior" if beam[1] >= 0 else "anterior"}


def needle_length(skin_to_tip_mm: float,
                  lengths_mm: Sequence[float] = STANDARD_NEEDLE_LENGTHS_MM) -> float | None:
    """The shortest standard needle length (mm) that reaches ``skin_to_tip_mm``, or None."""
    for length in sorted(lengths_mm):
        if length >= skin_to_tip_mm:
            return float(length)
    return None


def skin_point(ct: Volume, entry: Sequence[float], direction: Sequence[float], *,
               body_hu: float = BODY_HU, step_mm: float = SKIN_STEP_MM) -> tuple[np.ndarray, bool]:
    """Where the needle line, extended backwards from the bone entry, leaves the body.

    The line is sampled every ``step_mm`` (nearest voxel) from the bone entry against
    ``direction``; the skin entry is the first sample of the first run of SKIN_AIR_RUN_MM of
    samples at or below ``body_hu``.

    Parameters
    ----------
    ct : Volume
        The CT in HU.
    entry : sequence of 3 floats
        The bone entry, LPS mm.
    direction : sequence of 3 floats
        The needle's direction, hub to tip (entry to tip), LPS.

    Returns
    -------
    point : ndarray (3,)
        The skin entry, or, when the line leaves the CT while still in the body, the last
        sample inside the CT (or the bone entry itself when even that lies outside the CT).
    found : bool
        True when the line was seen to leave the body.
    """
    d = _unit(direction)
    start = np.asarray(entry, dtype=float)
    lo, hi = ct.world_bounds()
    reach = float(np.linalg.norm(np.asarray(hi) - np.asarray(lo))) + step_mm
    steps = np.arange(0.0, reach, step_mm)
    pts = start[None, :] - steps[:, None] * d[None, :]
    idx = np.rint(ct.world_to_index(pts)).astype(int)
    inside = np.all((idx >= 0) & (idx < np.asarray(ct.shape)), axis=1)
    if not inside[0]:
        return start, False
    stop = np.flatnonzero(~inside)
    count = int(stop[0]) if len(stop) else len(steps)
    hu = ct.array[tuple(idx[:count].T)]
    air = hu <= body_hu
    run = max(int(round(SKIN_AIR_RUN_MM / step_mm)), 1)
    if count >= run:
        runs = np.convolve(air.astype(int), np.ones(run, dtype=int), mode="valid") == run
        first = np.flatnonzero(runs)
        if len(first):
            return pts[first[0]], True
    return pts[count - 1], False


def entry_slice(ct: Volume, point: Sequence[float]) -> tuple[int, float]:
    """The CT slice holding ``point`` and its table position.

    Parameters
    ----------
    ct : Volume
        The CT; its slices are along the index axis closest to the body's long axis.
    point : sequence of 3 floats
        LPS mm.

    Returns
    -------
    slice_index : int
        0-based index of the slice along that axis, in the CT's own stored order (for a DICOM
        series: the files sorted along the slice normal), clipped to the CT.
    table_position_mm : float
        The world z (LPS, mm) of that slice: for an axial DICOM series its ImagePositionPatient z.
    """
    axis = int(np.argmax(np.abs(ct.direction[2, :])))
    index = np.rint(ct.world_to_index(np.asarray(point, dtype=float)[None, :])[0]).astype(int)
    index = np.clip(index, 0, np.asarray(ct.shape) - 1)
    k = int(index[axis])
    corner = np.zeros(3)
    corner[axis] = k
    return k, float(ct.index_to_world(corner[None, :])[0, 2])


def body_midline_x(ct: Volume, *, grid_mm: float = 4.0) -> float:
    """The body's left-right midline (LPS x, mm), as the segmentation measures it.

    The x-centroid of the body (the largest connected region above -400 HU, holes filled:
    :func:`segmentation.bone.body_mask`), on a grid of ``grid_mm`` for speed. Falls back to
    the CT's centre when no body is found.
    """
    from segmentation.bone import body_mask
    from segmentation.pipeline import block_averaged

    coarse = block_averaged(ct, np.maximum(np.asarray(ct.spacing, float), grid_mm))
    body = body_mask(coarse.array)
    if not body.any():
        lo, hi = ct.world_bounds()
        return float((lo[0] + hi[0]) / 2.0)
    return float(coarse.index_to_world(np.argwhere(body).astype(float))[:, 0].mean())


def level_heights(labels: Volume) -> dict[str, float]:
    """World z (mm) of each sacral level: the mean z of its foramina (both sides) where labelled."""
    from trajplan import labels as lt

    out = {}
    for level in LEVELS:
        values = [lt.value(f"foramen_{level}_{side}") for side in ("left", "right")]
        idx = np.argwhere(np.isin(labels.array, values))
        if len(idx):
            out[level] = float(labels.index_to_world(idx.astype(float))[:, 2].mean())
    return out


def needle_card(needle: dict, ct: Volume, *, midline_x: float, levels: dict[str, float],
                position: str, lengths_mm: Sequence[float] | None = None) -> tuple[dict, list[float], bool]:
    """The ``card`` object of one needle, its skin entry (LPS) and whether the skin was found.

    Parameters
    ----------
    needle : dict
        A needle object of ``plan.json`` (``technique``, ``entry_lps``, ``tip_lps``).
    ct : Volume
        The CT in HU, for the skin entry and the entry slice.
    midline_x : float
        The body's midline (LPS x, mm).
    levels : dict
        Sacral level -> world z (mm), for the cranio-caudal landmark.
    position : {"prone", "supine"}
        How the patient lies (the gantry's top is the side facing up).
    lengths_mm : sequence of float, optional
        The needle lengths at hand (default STANDARD_NEEDLE_LENGTHS_MM).
    """
    lengths_mm = tuple(sorted(lengths_mm)) if lengths_mm else STANDARD_NEEDLE_LENGTHS_MM
    entry = np.asarray(needle["entry_lps"], dtype=float)
    tip = np.asarray(needle["tip_lps"], dtype=float)
    direction = _unit(tip - entry)
    skin, found = skin_point(ct, entry, direction)
    skin = np.round(skin, 2)
    skin_to_bone = float(np.linalg.norm(entry - skin))
    bone_to_tip = float(np.linalg.norm(tip - entry))
    skin_to_tip = skin_to_bone + bone_to_tip
    length = needle_length(skin_to_tip, lengths_mm)
    notes = []
    sizes = ", ".join(f"{v / 10:g}" for v in lengths_mm)
    if not found:
        notes.append("the needle line leaves the CT before the body: the skin entry is its last point in the CT "
                     "and the depths are minimums")
        notes.append(f"skin to tip is at least {skin_to_tip:.0f} mm: "
                     + (f"a needle of {length / 10:g} cm or longer" if length is not None else
                        f"longer than any standard bone needle ({sizes} cm)"))
        length = None
    elif length is None:
        notes.append(f"skin to tip is {skin_to_tip:.0f} mm: no standard bone needle ({sizes} cm) reaches")
    level, from_level = None, None
    if levels:
        level = min(levels, key=lambda name: abs(skin[2] - levels[name]))
        from_level = round(float(skin[2] - levels[level]), 1)
    card = {
        "guidance": "ct" if needle["technique"] == Technique.SHORT_AXIS else "fluoroscopy",
        "patient_position": position,
        "skin_found": bool(found),
        "skin_to_bone_mm": round(skin_to_bone, 1),
        "bone_to_tip_mm": round(bone_to_tip, 1),
        "skin_to_tip_mm": round(skin_to_tip, 1),
        "needle_length_mm": length,
        "midline_offset_mm": round(float(skin[0] - midline_x), 1) + 0.0,
        "level": level,
        "from_level_mm": from_level,
    }
    if card["guidance"] == "ct":
        index, table = entry_slice(ct, skin)
        tilt, toward = gantry_tilt(direction, position)
        angle, hub = in_plane_angle(direction)
        card.update({"slice_index": index, "table_position_mm": round(table, 2) + 0.0,
                     "gantry_tilt_deg": round(tilt, 1), "gantry_tilt_toward": toward if round(tilt, 1) else None,
                     "in_plane_angle_deg": round(angle, 1), "in_plane_hub_toward": hub if round(angle, 1) else None})
        if tilt > MAX_GANTRY_TILT_DEG:
            notes.append(f"the gantry tilt of {tilt:.0f} deg is beyond the usual {MAX_GANTRY_TILT_DEG:g} deg")
    else:
        card["c_arm"] = c_arm_angles(direction)
        steep = float(np.degrees(np.arccos(min(abs(direction[1]), 1.0))))
        if steep > STEEP_VIEW_DEG:
            notes.append(f"the view down the needle is {steep:.0f} deg from posterior-anterior (over "
                         f"{STEEP_VIEW_DEG:g} deg): the C-arm may not reach it; the lateral view shows the needle "
                         "along its length")
    card["notes"] = notes
    return card, [float(v) + 0.0 for v in skin], bool(found)


def add_cards(plan: dict, ct: Volume, labels: Volume, *, position: str = "prone",
              position_source: str = "assumed", lengths_mm: Sequence[float] | None = None,
              midline_x: float | None = None, levels: dict[str, float] | None = None) -> dict:
    """Give every needle and alternative of ``plan`` its skin entry (LPS, RAS) and ``card``.

    ``skin_entry_lps`` and ``metrics.skin_to_bone_mm`` are replaced by the card's (never null);
    a needle whose line leaves the CT before the body gets a warning in ``plan["warnings"]``.
    ``plan["patient_position"]`` records the position used and where it came from
    (``dicom``, ``option`` or ``assumed``). ``midline_x`` (:func:`body_midline_x` of ``ct``) and
    ``levels`` (:func:`level_heights` of ``labels``) may be given when already computed (a viewer
    scoring many edits on one CT). Returns ``plan`` (changed in place).
    """
    _check_position(position)
    midline = body_midline_x(ct) if midline_x is None else midline_x
    levels = level_heights(labels) if levels is None else levels
    plan["patient_position"] = {"position": position, "source": position_source}
    plan["body_midline_x_mm"] = round(midline, 1)
    warnings = plan.setdefault("warnings", [])
    for group in ("needles", "alternatives"):
        for needle in plan.get(group, []):
            card, skin, found = needle_card(needle, ct, midline_x=midline, levels=levels, position=position,
                                            lengths_mm=lengths_mm)
            needle["skin_entry_lps"] = skin
            needle["skin_entry_ras"] = lps_to_ras(skin)
            needle.setdefault("metrics", {})["skin_to_bone_mm"] = card["skin_to_bone_mm"]
            needle["card"] = card
            if group == "needles" and not found:
                warnings.append(f"needle {needle.get('rank', '')} ({Technique(needle['technique']).words}, "
                                f"{needle['side']}): its line leaves the CT before the skin; the skin entry is "
                                "the CT's edge and the depths are minimums")
    return plan
