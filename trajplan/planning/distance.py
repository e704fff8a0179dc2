"""Distance maps of the critical structures around the sacrum, for scoring needle paths.

Everything lives on a crop of the label map around the sacral bone. Each critical
structure gets a Euclidean distance map (mm from the nearest voxel centre of the
structure, capped at :data:`~trajplan.planning.defaults.CLEARANCE_CAP_MM`), computed only in a
box around that structure. ``slack`` is the smallest ``distance - margin`` over all
structures: a needle axis sample with ``slack < radius`` is too close to something. ``depth``
is how deep every voxel lies in the labelled anatomy: its distance to the nearest unlabelled
voxel outside it (:func:`exterior`: soft tissue, air, a lumen's unlabelled opening; not a pocket of
marrow left unlabelled and walled in by labels), over the whole crop.
Exact distances for the final few paths come from KD-trees of voxel centres.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy import ndimage
from scipy.spatial import cKDTree

from trajplan import labels as lt
from trajplan.distance import distance_mm
from trajplan.errors import InputError
from trajplan.planning.defaults import CLEARANCE_CAP_MM, CRITICAL_STRUCTURES
from trajplan.volume import Volume, bounding_box

CROP_PAD_MM = 40.0


@dataclass
class DistanceMaps:
    """Distance maps, bone masks and KD-trees on a crop around the sacral bone."""

    labels: Volume                         # the label map cropped (its geometry is the crop's)
    distance: dict[str, np.ndarray]        # structure -> mm to its nearest voxel centre (capped)
    margins: dict[str, float]              # structure -> margin (mm)
    slack: np.ndarray                      # min over structures of (distance - margin), mm
    bone: np.ndarray                       # sacral bone
    depth: np.ndarray                      # mm to the nearest unlabelled voxel centre outside (0 there, capped)
    _trees: dict[str, cKDTree | None] = field(default_factory=dict)

    @property
    def half_voxel_mm(self) -> float:
        """Half the voxel diagonal: a distance to a voxel centre minus this is at most the
        distance to the nearest point of that voxel, whatever the direction."""
        return 0.5 * float(np.linalg.norm(self.labels.spacing))

    def tree(self, structure: str) -> cKDTree | None:
        """KD-tree of the world positions (LPS mm) of a structure's voxel centres (None if absent)."""
        if structure not in self._trees:
            idx = np.argwhere(self.labels.array == lt.value(structure))
            self._trees[structure] = cKDTree(self.labels.index_to_world(idx)) if len(idx) else None
        return self._trees[structure]

    def gather(self, array: np.ndarray, index_points: np.ndarray) -> np.ndarray:
        """Values of ``array`` at the voxels nearest to continuous crop indices ``(..., 3)``."""
        idx = np.rint(index_points).astype(np.intp)
        for axis in range(3):
            np.clip(idx[..., axis], 0, array.shape[axis] - 1, out=idx[..., axis])
        flat = np.ravel_multi_index((idx[..., 0], idx[..., 1], idx[..., 2]), array.shape)
        return array.reshape(-1)[flat]


def sacral_crop(labels: Volume, pad_mm: float = CROP_PAD_MM) -> Volume:
    """The label map cropped to the sacral bone's bounding box plus ``pad_mm``.

    Raises
    ------
    InputError
        When the label map holds no sacral bone.
    """
    bone = lt.sacral_bone(labels)
    if not bone.any():
        raise InputError("the label map holds no sacral bone (sacrum, ala, anterior_cortex): nothing to plan on")
    box = bounding_box(bone, np.ceil(pad_mm / labels.spacing).astype(int))
    return labels.crop(tuple(b.start for b in box), tuple(b.stop for b in box))


def structure_distance(mask: np.ndarray, spacing: np.ndarray, cap_mm: float = CLEARANCE_CAP_MM) -> np.ndarray:
    """Distance (mm) of every voxel to the nearest voxel of ``mask``, capped at ``cap_mm``.

    Computed only in the box around ``mask`` widened by ``cap_mm``; voxels farther
    away get ``cap_mm``. An empty mask gives ``cap_mm`` everywhere.
    """
    out = np.full(mask.shape, cap_mm, dtype=np.float32)
    if not mask.any():
        return out
    box = bounding_box(mask, np.ceil(cap_mm / np.asarray(spacing)).astype(int) + 1)
    dist = distance_mm(~mask[box], spacing)
    out[box] = np.minimum(dist, cap_mm)
    return out


def build_distance_maps(labels: Volume, margins: dict[str, float]) -> DistanceMaps:
    """Distance maps of every critical structure on a crop around the sacral bone.

    Parameters
    ----------
    labels : Volume
        Exclusive label map with at least some sacral bone (else InputError, from
        :func:`sacral_crop`).
    margins : dict
        Margin (mm) per critical structure (see :func:`trajplan.planning.defaults.resolve_margins`).
    """
    crop = sacral_crop(labels)
    distance = {}
    slack = np.full(crop.shape, CLEARANCE_CAP_MM, dtype=np.float32)
    for structure in CRITICAL_STRUCTURES:
        dist = structure_distance(crop.array == lt.value(structure), crop.spacing)
        distance[structure] = dist
        np.minimum(slack, dist - margins[structure], out=slack)
    depth = np.minimum(distance_mm(~exterior(crop.array == 0), crop.spacing), CLEARANCE_CAP_MM)
    return DistanceMaps(labels=crop, distance=distance, margins=margins, slack=slack,
                        bone=lt.sacral_bone(crop), depth=depth)


def exterior(unlabelled: np.ndarray) -> np.ndarray:
    """The voxels of ``unlabelled`` (a crop's label-0 voxels) connected to the crop's faces: the soft
    tissue around the bone and what opens into it, not a pocket walled in by labels."""
    pieces, _ = ndimage.label(unlabelled)
    faces = np.concatenate([np.moveaxis(pieces, axis, 0)[[0, -1]].ravel() for axis in range(pieces.ndim)])
    touching = np.unique(faces[faces > 0])
    return np.isin(pieces, touching)
