"""The region a segmentation stage works in: a crop of the canonical CT and the body's midline."""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from trajplan.volume import Volume


@dataclass(frozen=True)
class Region:
    """A box of a canonical CT (axes L, P, S), its voxels, and the body's left-right midline.

    The midline is kept once, as a world point on it (``midline_lps``, LPS mm; its x is the
    midline's); each region gives it in its own index (``midline_i``) and grid millimetres
    (``midline_mm``), so a crop of a crop never converts it by hand.

    Attributes
    ----------
    canon : Volume
        The whole CT, reoriented to L, P, S axes (``Volume.to_canonical``).
    box : tuple of slice
        The region's index box in ``canon``.
    hu, smooth : ndarray
        The CT (HU, float32) and its smoothed copy inside the box.
    smooth_mm : float
        The sigma (mm) of the Gaussian that made ``smooth`` (:func:`segmentation.noise.smoothing_mm`).
    midline_lps : tuple of float
        A point on the body's left-right midline (LPS mm).
    """

    canon: Volume
    box: tuple[slice, ...]
    hu: np.ndarray
    smooth: np.ndarray
    smooth_mm: float
    midline_lps: tuple[float, float, float]

    @property
    def spacing(self) -> np.ndarray:
        """Voxel size (mm) along L, P, S."""
        return self.canon.spacing

    @property
    def shape(self) -> tuple[int, ...]:
        """The box's shape in voxels."""
        return self.hu.shape

    @property
    def midline_x_mm(self) -> float:
        """The midline's LPS x (mm)."""
        return self.midline_lps[0]

    @property
    def midline_i(self) -> float:
        """The midline as a (fractional) index along L inside the box."""
        index = self.canon.world_to_index(np.array([self.midline_lps]))[0, 0]
        return float(index) - self.box[0].start

    @property
    def midline_mm(self) -> float:
        """The midline in the box's grid millimetres (index x spacing along L)."""
        return self.midline_i * float(self.spacing[0])

    def sub(self, roi: tuple[slice, ...]) -> Region:
        """The region of ``roi`` (an index box inside this region's box), with the same midline."""
        box = tuple(slice(outer.start + inner.start, outer.start + inner.stop) for outer, inner in zip(self.box, roi))
        return replace(self, box=box, hu=self.hu[roi], smooth=self.smooth[roi])

    def midline_at(self, index: float) -> Region:
        """This region with its midline moved to ``index`` along L inside the box (the canal's centre)."""
        return replace(self, midline_lps=midline_point(self.canon, index + self.box[0].start))


def midline_point(canon: Volume, index: float) -> tuple[float, float, float]:
    """The world point (LPS mm) of ``index`` along L (0 along P and S) in ``canon``."""
    return tuple(float(v) for v in canon.index_to_world(np.array([[index, 0.0, 0.0]]))[0])


def midline_of_body(canon: Volume, body: np.ndarray, box: tuple[slice, ...]) -> tuple[float, float, float]:
    """A point (LPS mm) on the left-right midline of the ``body`` mask inside ``box``: its mean index along L."""
    column = body[box].sum(axis=(1, 2))
    return midline_point(canon, float((np.arange(len(column)) * column).sum() / column.sum()) + box[0].start)
