"""The one anatomical label table, and helpers for label maps.

Every module that writes, reads, colours or names labels uses :data:`LABELS`.
A label map is a :class:`~trajplan.volume.Volume` of small integers, exclusive
(one label per voxel). Canal and foramina are lumens (not bone); the sacral bone
is the union of :data:`SACRAL_BONE` (``sacrum``, ``ala_*``, ``anterior_cortex``,
and the ``fracture`` and ``lesion`` regions that lie inside it).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from enum import Enum
from pathlib import Path

import numpy as np

from trajplan.volume import Volume


@dataclass(frozen=True)
class Label:
    """One entry of the label table: integer value, name and RGB colour (0-255)."""

    value: int
    name: str
    color: tuple[int, int, int]


class Side(str, Enum):
    """The patient's side. Its value is the word used in label names and ``plan.json``."""

    LEFT = "left"
    RIGHT = "right"

    def __str__(self) -> str:
        return self.value

    @property
    def sign(self) -> int:
        """+1 for the left, -1 for the right: the sign of LPS x (+x is the patient's left)."""
        return 1 if self is Side.LEFT else -1

    @property
    def words(self) -> str:
        """Display name: ``patient's left``."""
        return f"patient's {self.value}"


LEVELS = ("S1", "S2", "S3", "S4")
SIDES: tuple[str, ...] = tuple(side.value for side in Side)

LABELS: tuple[Label, ...] = (
    Label(1, "sacrum", (241, 214, 145)),
    Label(2, "ala_left", (230, 180, 100)),
    Label(3, "ala_right", (200, 160, 90)),
    Label(4, "anterior_cortex", (255, 120, 60)),
    Label(5, "canal", (250, 250, 50)),
    Label(6, "foramen_S1_left", (0, 151, 206)),
    Label(7, "foramen_S1_right", (0, 112, 165)),
    Label(8, "foramen_S2_left", (30, 190, 230)),
    Label(9, "foramen_S2_right", (20, 140, 190)),
    Label(10, "foramen_S3_left", (80, 210, 240)),
    Label(11, "foramen_S3_right", (60, 170, 210)),
    Label(12, "foramen_S4_left", (130, 225, 250)),
    Label(13, "foramen_S4_right", (100, 195, 230)),
    Label(14, "si_joint_left", (220, 60, 220)),
    Label(15, "si_joint_right", (170, 40, 170)),
    Label(16, "ilium_left", (200, 200, 200)),
    Label(17, "ilium_right", (170, 170, 170)),
    Label(18, "L5", (150, 120, 220)),
    Label(19, "fracture", (255, 0, 0)),
    Label(20, "lesion", (255, 0, 128)),
    Label(21, "coccyx", (190, 170, 120)),
    Label(22, "L5_S1_disc", (90, 200, 120)),
    Label(23, "presacral_vessels", (200, 30, 30)),
)

_BY_NAME = {label.name: label for label in LABELS}
_BY_VALUE = {label.value: label for label in LABELS}

FORAMINA: tuple[str, ...] = tuple(f"foramen_{lv}_{side}" for lv in LEVELS for side in SIDES)
LUMENS: tuple[str, ...] = ("canal", *FORAMINA)     # the nerve lumens: soft tissue walled by sacral bone
SACRAL_BONE: tuple[str, ...] = (
    "sacrum", "ala_left", "ala_right", "anterior_cortex", "fracture", "lesion",
)
BONE: tuple[str, ...] = SACRAL_BONE + ("ilium_left", "ilium_right", "L5", "coccyx")


def value(name: str) -> int:
    """Integer value of the label called ``name``.

    Raises
    ------
    KeyError
        If no label has that name (the message lists the known names).
    """
    try:
        return _BY_NAME[name].value
    except KeyError:
        raise KeyError(f"unknown label {name!r}; known labels: {', '.join(_BY_NAME)}") from None


def name(value_: int) -> str:
    """Name of the label with integer value ``value_`` (``"background"`` for 0)."""
    if value_ == 0:
        return "background"
    return _BY_VALUE[int(value_)].name


def color(name_: str) -> tuple[int, int, int]:
    """RGB colour (0-255) of the label called ``name_``."""
    return _BY_NAME[name_].color


def mask(labels: Volume | np.ndarray, *names: str) -> np.ndarray:
    """Boolean array true where the label map holds any of ``names``."""
    arr = labels.array if isinstance(labels, Volume) else labels
    values = [value(n) for n in names]
    if arr.dtype.kind == "u" and arr.dtype.itemsize <= 2:   # a look-up table: 20 times faster than isin
        table = np.zeros(2 ** (8 * arr.dtype.itemsize), dtype=bool)
        table[values] = True
        return table[arr]
    return np.isin(arr, values)


def sacral_bone(labels: Volume | np.ndarray) -> np.ndarray:
    """Boolean array of the sacral bone (sacrum, alae, anterior cortex, fracture, lesion)."""
    return mask(labels, *SACRAL_BONE)


def present(labels: Volume | np.ndarray) -> list[str]:
    """Names of the labels that have at least one voxel, in table order."""
    arr = labels.array if isinstance(labels, Volume) else labels
    found = set(np.unique(arr).tolist())
    return [label.name for label in LABELS if label.value in found]


def table_json() -> list[dict]:
    """The label table as written to ``labels.json``: ``[{"value", "name", "color"}, ...]``."""
    return [{"value": label.value, "name": label.name, "color": list(label.color)} for label in LABELS]


def read_table(path: str | Path) -> dict[int, str]:
    """Read a ``labels.json`` file into ``{value: name}``, checking it against the table.

    Raises
    ------
    ValueError
        If an entry's value and name disagree with :data:`LABELS`.
    """
    entries = json.loads(Path(path).read_text())
    out: dict[int, str] = {}
    for entry in entries:
        v, n = int(entry["value"]), str(entry["name"])
        if n in _BY_NAME and _BY_NAME[n].value != v:
            raise ValueError(f"{path}: label {n!r} has value {v}, expected {_BY_NAME[n].value}")
        out[v] = n
    return out
