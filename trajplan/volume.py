"""The one image type: voxels together with their geometry.

A :class:`Volume` holds a 3-D array indexed ``array[i, j, k]`` (x-fastest order as
in ITK, *not* the ``[k, j, i]`` order of ``sitk.GetArrayFromImage``) and the
geometry that places each voxel in the world:

``world = origin + direction @ (spacing * index)``

World coordinates are LPS millimetres (the DICOM / ITK convention): +x towards the
patient's left, +y posterior, +z superior. ``direction`` holds, as its columns, the
world direction of the i, j and k index axes.

CT volumes (HU) and label maps (integer label values) are both ``Volume``s.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field

import numpy as np
import SimpleITK as sitk

from trajplan.errors import InputError

MAX_SPACING_MM = 10.0


def bounding_box(mask: np.ndarray, pad: np.ndarray | int = 0) -> tuple[slice, ...]:
    """Index box of a non-empty ``mask``, widened by ``pad`` voxels per axis and clipped to the array."""
    pad = np.broadcast_to(np.asarray(pad, dtype=int), (mask.ndim,))
    box = []
    for axis in range(mask.ndim):
        hit = np.flatnonzero(mask.any(axis=tuple(a for a in range(mask.ndim) if a != axis)))
        box.append(slice(max(hit[0] - pad[axis], 0), min(hit[-1] + pad[axis] + 1, mask.shape[axis])))
    return tuple(box)


def block_means(array: np.ndarray, block, dtype=None) -> np.ndarray:
    """The mean of each whole block of ``block`` voxels per axis of a 3-D ``array`` (a partial block at
    an array's far end is left out); ``dtype`` as in ``np.mean``."""
    block = np.broadcast_to(np.asarray(block, dtype=int), (3,))
    shape = np.asarray(array.shape) // block
    whole = array[:shape[0] * block[0], :shape[1] * block[1], :shape[2] * block[2]]
    return whole.reshape(shape[0], block[0], shape[1], block[1], shape[2], block[2]).mean(axis=(1, 3, 5), dtype=dtype)


@dataclass(frozen=True, eq=False)
class Volume:
    """A 3-D voxel array with spacing, origin and direction (LPS mm).

    Parameters
    ----------
    array : np.ndarray
        3-D array indexed ``[i, j, k]``.
    spacing : sequence of float
        Voxel size along i, j, k in mm; each in (0, 10].
    origin : sequence of float, optional
        World position (LPS mm) of the centre of voxel (0, 0, 0).
    direction : array_like, optional
        3x3 orthonormal matrix whose columns are the world directions of i, j, k.

    Raises
    ------
    InputError
        If the array is not 3-D or the geometry is absurd (zero, negative or
        > 10 mm spacing, non-orthonormal direction, non-finite origin).
    """

    array: np.ndarray
    spacing: np.ndarray
    origin: np.ndarray = field(default_factory=lambda: np.zeros(3))
    direction: np.ndarray = field(default_factory=lambda: np.eye(3))

    def __post_init__(self) -> None:
        array = np.asarray(self.array)
        spacing = np.asarray(self.spacing, dtype=float).reshape(-1)
        origin = np.asarray(self.origin, dtype=float).reshape(-1)
        direction = np.asarray(self.direction, dtype=float)
        if array.ndim != 3:
            raise InputError(f"expected a 3-D volume, got an array of shape {array.shape}")
        if spacing.shape != (3,) or not np.all(np.isfinite(spacing)):
            raise InputError(f"spacing must be three finite numbers, got {spacing.tolist()}")
        if np.any(spacing <= 0) or np.any(spacing > MAX_SPACING_MM):
            raise InputError(
                f"absurd voxel spacing {np.round(spacing, 4).tolist()} mm "
                f"(each must be > 0 and <= {MAX_SPACING_MM:g} mm)"
            )
        if origin.shape != (3,) or not np.all(np.isfinite(origin)):
            raise InputError(f"origin must be three finite numbers, got {origin.tolist()}")
        if direction.shape != (3, 3) or not np.allclose(
            direction.T @ direction, np.eye(3), atol=1e-4
        ):
            raise InputError(f"direction must be an orthonormal 3x3 matrix, got {direction.tolist()}")
        object.__setattr__(self, "array", array)
        object.__setattr__(self, "spacing", spacing)
        object.__setattr__(self, "origin", origin)
        object.__setattr__(self, "direction", direction)

    # ----------------------------------------------------------------- geometry
    @property
    def shape(self) -> tuple[int, int, int]:
        """Number of voxels along i, j, k."""
        return tuple(int(n) for n in self.array.shape)  # type: ignore[return-value]

    @property
    def affine(self) -> np.ndarray:
        """4x4 matrix mapping homogeneous voxel indices to LPS mm."""
        out = np.eye(4)
        out[:3, :3] = self.direction * self.spacing[None, :]
        out[:3, 3] = self.origin
        return out

    @property
    def voxel_volume_ml(self) -> float:
        """Volume of one voxel in millilitres."""
        return float(np.prod(self.spacing)) / 1000.0

    def index_to_world(self, index: np.ndarray) -> np.ndarray:
        """Map (continuous) voxel indices ``(..., 3)`` to LPS mm ``(..., 3)``."""
        index = np.asarray(index, dtype=float)
        return index @ (self.direction * self.spacing[None, :]).T + self.origin

    def world_to_index(self, points: np.ndarray) -> np.ndarray:
        """Map LPS mm points ``(..., 3)`` to continuous voxel indices ``(..., 3)``."""
        points = np.asarray(points, dtype=float)
        return ((points - self.origin) @ self.direction) / self.spacing

    def values_at(self, points: np.ndarray, outside: float = 0) -> np.ndarray:
        """The values of the voxels nearest to LPS mm points ``(n, 3)``, in the array's dtype;
        ``outside`` where a point's nearest voxel lies outside the array."""
        idx = np.rint(self.world_to_index(points)).astype(int).reshape(-1, 3)
        inside = np.all((idx >= 0) & (idx < np.asarray(self.shape)), axis=1)
        values = np.full(len(idx), outside, dtype=self.array.dtype)
        values[inside] = self.array[tuple(idx[inside].T)]
        return values

    def world_bounds(self) -> tuple[np.ndarray, np.ndarray]:
        """Axis-aligned LPS bounding box (min, max) of the voxel centres."""
        corners = np.array(
            [[a, b, c] for a in (0, self.shape[0] - 1) for b in (0, self.shape[1] - 1)
             for c in (0, self.shape[2] - 1)],
            dtype=float,
        )
        world = self.index_to_world(corners)
        return world.min(axis=0), world.max(axis=0)

    def same_geometry(self, other: "Volume", tol_mm: float = 1e-3) -> bool:
        """True when ``other`` has the same shape and voxel positions (within ``tol_mm``)."""
        return (
            self.shape == other.shape
            and np.allclose(self.spacing, other.spacing, atol=tol_mm)
            and np.allclose(self.origin, other.origin, atol=tol_mm)
            and np.allclose(self.direction, other.direction, atol=1e-5)
        )

    # ------------------------------------------------------------- derivation
    def with_array(self, array: np.ndarray) -> "Volume":
        """A volume with the same geometry and new voxels of the same shape."""
        array = np.asarray(array)
        if array.shape != self.array.shape:
            raise ValueError(f"array shape {array.shape} differs from volume shape {self.shape}")
        return Volume(array, self.spacing, self.origin, self.direction)

    def crop(self, lower: tuple[int, int, int], upper: tuple[int, int, int]) -> "Volume":
        """Sub-volume ``array[lower[0]:upper[0], ...]`` with its origin moved accordingly.

        Bounds are clipped to the volume; the result shares no memory with ``self``.
        """
        lo = np.clip(np.asarray(lower, dtype=int), 0, self.shape)
        hi = np.clip(np.asarray(upper, dtype=int), lo, self.shape)
        if np.any(hi <= lo):
            raise ValueError(f"empty crop {lo.tolist()} .. {hi.tolist()} of a {self.shape} volume")
        sub = self.array[lo[0]:hi[0], lo[1]:hi[1], lo[2]:hi[2]].copy()
        return Volume(sub, self.spacing, self.index_to_world(lo), self.direction)

    def pad(self, width: int, value: float = 0) -> "Volume":
        """Volume grown by ``width`` voxels on every side, filled with ``value``."""
        arr = np.pad(self.array, width, mode="constant", constant_values=value)
        return Volume(arr, self.spacing, self.index_to_world(-np.full(3, width)), self.direction)

    def to_canonical(self) -> tuple["Volume", "AxisReorder"]:
        """Reorder and flip axes (exactly, without interpolation) so i, j, k run L, P, S.

        Returns the reordered volume and the :class:`AxisReorder` that undoes it,
        so that algorithms can rely on anatomical axis order while results are
        written back on the input grid. An oblique direction stays oblique, but
        each axis is then the one closest to L, P and S respectively.
        """
        reorder = AxisReorder.for_direction(self.direction)
        return reorder.apply(self), reorder

    # ------------------------------------------------------------ SimpleITK
    def to_sitk(self) -> sitk.Image:
        """SimpleITK image with the same voxels and geometry."""
        arr = self.array
        if arr.dtype == bool:
            arr = arr.astype(np.uint8)
        image = sitk.GetImageFromArray(np.ascontiguousarray(arr.transpose(2, 1, 0)))
        image.SetSpacing(tuple(float(s) for s in self.spacing))
        image.SetOrigin(tuple(float(o) for o in self.origin))
        image.SetDirection(tuple(float(d) for d in self.direction.reshape(-1)))
        return image

    @classmethod
    def from_sitk(cls, image: sitk.Image) -> "Volume":
        """Volume from a 3-D single-component SimpleITK image."""
        if image.GetDimension() != 3:
            raise InputError(f"expected a 3-D image, got a {image.GetDimension()}-D image")
        if image.GetNumberOfComponentsPerPixel() != 1:
            raise InputError(
                f"expected one value per voxel, got {image.GetNumberOfComponentsPerPixel()} (colour image?)"
            )
        arr = sitk.GetArrayFromImage(image).transpose(2, 1, 0)
        return cls(
            np.ascontiguousarray(arr),
            image.GetSpacing(),
            image.GetOrigin(),
            np.asarray(image.GetDirection(), dtype=float).reshape(3, 3),
        )

    def resample(
        self,
        spacing: tuple[float, float, float] | np.ndarray,
        *,
        interpolator: str = "linear",
        fill: float = 0,
    ) -> "Volume":
        """Resample to a new spacing over the same physical extent and direction.

        Parameters
        ----------
        spacing : sequence of float
            New voxel size in mm along i, j, k.
        interpolator : {"linear", "nearest", "bspline"}
            ``"nearest"`` for label maps.
        fill : float
            Value outside the input.
        """
        spacing = np.asarray(spacing, dtype=float)
        size = np.maximum(1, np.round((np.asarray(self.shape) - 1) * self.spacing / spacing) + 1)
        reference = Volume(np.zeros(1, dtype=np.uint8).reshape(1, 1, 1), spacing, self.origin,
                           self.direction)
        return self.resample_onto(reference, size=tuple(int(s) for s in size),
                                  interpolator=interpolator, fill=fill)

    def resample_onto(
        self,
        reference: "Volume",
        *,
        size: tuple[int, int, int] | None = None,
        interpolator: str = "linear",
        fill: float = 0,
    ) -> "Volume":
        """Resample this volume onto the grid of ``reference`` (its geometry, ``size`` or its shape)."""
        interp = {
            "linear": sitk.sitkLinear,
            "nearest": sitk.sitkNearestNeighbor,
            "bspline": sitk.sitkBSpline,
        }[interpolator]
        out_size = size if size is not None else reference.shape
        filt = sitk.ResampleImageFilter()
        filt.SetSize([int(s) for s in out_size])
        filt.SetOutputSpacing(tuple(float(s) for s in reference.spacing))
        filt.SetOutputOrigin(tuple(float(o) for o in reference.origin))
        filt.SetOutputDirection(tuple(float(d) for d in reference.direction.reshape(-1)))
        filt.SetInterpolator(interp)
        filt.SetDefaultPixelValue(float(fill))
        image = self.to_sitk()
        if interpolator != "nearest" and image.GetPixelID() not in (sitk.sitkFloat32, sitk.sitkFloat64):
            image = sitk.Cast(image, sitk.sitkFloat32)
        result = Volume.from_sitk(filt.Execute(image))
        if interpolator == "nearest":
            return result.with_array(result.array.astype(self.array.dtype, copy=False))
        return result


@dataclass(frozen=True)
class AxisReorder:
    """An exact axis permutation and flip, as produced by :meth:`Volume.to_canonical`.

    ``order[a]`` is the input axis that becomes output axis ``a``; ``flip[a]`` says
    whether that output axis runs backwards through the input.
    """

    order: tuple[int, int, int]
    flip: tuple[bool, bool, bool]

    @classmethod
    def for_direction(cls, direction: np.ndarray) -> "AxisReorder":
        """The reorder that makes output axes 0, 1, 2 point as near as possible to +L, +P, +S."""
        direction = np.asarray(direction, dtype=float)
        order = max(
            itertools.permutations(range(3)),
            key=lambda perm: sum(abs(direction[world, perm[world]]) for world in range(3)),
        )
        flip = tuple(bool(direction[world, order[world]] < 0) for world in range(3))
        return cls(tuple(order), flip)  # type: ignore[arg-type]

    @property
    def is_identity(self) -> bool:
        """True when nothing is permuted or flipped."""
        return self.order == (0, 1, 2) and not any(self.flip)

    def apply(self, volume: Volume) -> Volume:
        """Reorder ``volume`` (exactly; geometry updated so world positions are unchanged)."""
        arr = np.transpose(volume.array, self.order)
        shape = np.asarray(arr.shape)
        direction = volume.direction[:, list(self.order)].copy()
        origin_index = np.zeros(3)
        for axis, flipped in enumerate(self.flip):
            if flipped:
                arr = np.flip(arr, axis)
                direction[:, axis] *= -1
                origin_index[self.order[axis]] = shape[axis] - 1
        origin = volume.index_to_world(origin_index)
        spacing = volume.spacing[list(self.order)]
        return Volume(np.ascontiguousarray(arr), spacing, origin, direction)

    def undo(self, volume: Volume) -> Volume:
        """Map a volume on the reordered grid back onto the original grid."""
        arr = volume.array
        origin_index = np.zeros(3)
        direction = volume.direction.copy()
        for axis, flipped in enumerate(self.flip):
            if flipped:
                arr = np.flip(arr, axis)
                direction[:, axis] *= -1
                origin_index[axis] = arr.shape[axis] - 1
        origin = volume.index_to_world(origin_index)
        inverse = np.argsort(self.order)
        arr = np.transpose(arr, inverse)
        return Volume(
            np.ascontiguousarray(arr),
            volume.spacing[list(inverse)],
            origin,
            direction[:, list(inverse)],
        )

