"""What lies ahead of a needle's tip: the labels on its axis extended past the tip.

The cement spreads from the tip, and a needle pushed a little too far goes straight on. So the
axis is followed past the tip (every ``STEP_MM``, up to ``REACH_MM``) through the labelled
sacral bone, and what it meets there is read:

- ``bone_ahead_mm``: how far the axis runs on in sacral bone before it first leaves it (the room
  an overshoot has; ``REACH_MM`` when it is still in bone there);
- the SI joint or an ilium met straight from that bone: a short-axis needle is aimed at the
  anterior cortex and a long-axis one at S1, never at the joint; and where the labels have taken
  a plate of ilium for ala, the joint they draw lies *inside* the ilium, straight ahead of a
  tip planned in that plate (real sacrum 003 at 3 mm: six short-axis needles called safe in the
  left ilium, each with the labelled joint and ilium ahead; on the other real scans of the
  validation, none of 127 needles called safe had). Reason ``si_joint_ahead``;
- sacral bone again soon after the axis left it (at least ``BONE_AGAIN_MM`` of it within
  ``GAP_MM``): the bone around the tip is cut off from the sacrum ahead by a gap, as a plate of
  ilium labelled ala is from the ala across the joint, or the tip points at a gap that the labels
  did not name (an unlabelled foramen). Reason ``gap_ahead``.

The labels are read at the voxel nearest each sample of the label map given (the planner's crop:
beyond it, nothing is labelled).
"""

from __future__ import annotations

import numpy as np

from trajplan import labels as lt
from trajplan.planning.ct_guard import runs
from trajplan.volume import Volume

STEP_MM = 0.5
REACH_MM = 30.0          # the axis is followed this far past the tip
GAP_MM = 20.0            # sacral bone again within this of where the axis left it ...
BONE_AGAIN_MM = 3.0      # ... over at least this long a run: the tip's bone is cut off ahead
JOINT_AHEAD = ("si_joint_left", "si_joint_right", "ilium_left", "ilium_right")

REASON_TEXT = {
    "si_joint_ahead": "the SI joint or an ilium lies straight ahead of the tip, with no gap from its bone",
    "gap_ahead": "ahead of the tip the axis leaves the bone and meets sacral bone again within 20 mm",
}


def labels_ahead(labels: Volume, tip: np.ndarray, direction: np.ndarray) -> np.ndarray:
    """The labels on the axis past ``tip`` (LPS mm) along the unit ``direction``: one per sample,
    STEP_MM to REACH_MM past the tip (0 outside the label map)."""
    steps = np.arange(1, int(round(REACH_MM / STEP_MM)) + 1) * STEP_MM
    return labels.values_at(tip[None, :] + steps[:, None] * direction[None, :])


def read_ahead(ahead: np.ndarray) -> tuple[float, str | None]:
    """``bone_ahead_mm`` and the reason (``si_joint_ahead``, ``gap_ahead`` or None) from the labels
    past the tip (:func:`labels_ahead`)."""
    bone = lt.sacral_bone(ahead)
    left = np.flatnonzero(~bone)
    if not len(left):
        return REACH_MM, None
    first = int(left[0])
    bone_ahead = first * STEP_MM
    if lt.mask(ahead[first:first + 1], *JOINT_AHEAD)[0]:
        return bone_ahead, "si_joint_ahead"
    if ahead[first] == 0:
        again = [(a, b) for a, b in runs(bone) if a > first and (a - first) * STEP_MM <= GAP_MM]
        if any((b - a) * STEP_MM >= BONE_AGAIN_MM for a, b in again):
            return bone_ahead, "gap_ahead"
    return bone_ahead, None
