"""The sacrum-ilium border moved onto the sacroiliac joint's dark sheet (step 3c).

The bone split (:mod:`segmentation.separation`) grows its seeds back by a watershed through
bright bone first. Where an erosion seed of an ilium still holds part of the ala (the joint
bridged at its top by partial volume) or the ala's fatty marrow is darker than the joint, the
border it leaves runs through the ala instead of the joint. The joint itself is a thin dark
sheet between two cortical plates: across it the intensity curves up strongly, along it hardly
at all. Measured so (a Hessian "valley sheetness", after Krcah et al., ISBI 2011, who enhance
the bright plates instead), it stands out from the marrow, which is dark but not a sheet.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage
from skimage.segmentation import watershed

from segmentation.parts import distances_where_both_near
from trajplan.volume import block_means, bounding_box

VALLEY_SIGMA_MM = 2.0        # the scale of the joint gap (2-4 mm wide with its partial volume)
BORDER_BAND_MM = 15.0        # the border may move this far into either bone (at 20 a fracture line
                             # beside the joint was taken for it: real case 003, 6 ml of its ala to the ilium)
MAX_SPACING_MM = 2.0         # coarser voxels blur the gap into its plates: the search runs on a grid
FINE_MM = 1.0                # refined to this (linear interpolation of the CT), and the border is brought back


def valley_sheetness(image: np.ndarray, spacing: np.ndarray, sigma_mm: float = VALLEY_SIGMA_MM) -> np.ndarray:
    """How much each voxel lies on a dark sheet (HU / mm^2, float32, >= 0).

    The largest eigenvalue of the Hessian (Gaussian derivatives at ``sigma_mm``, in mm) less
    the magnitude of the middle one: large across a dark sheet (a joint gap, a fracture line),
    small in a dark tube (a foramen: two large curvatures) and in uniform marrow.

    Parameters
    ----------
    image : np.ndarray
        Intensities (HU) on a grid of ``spacing``.
    spacing : np.ndarray
        Voxel size (mm) per axis.
    sigma_mm : float
        Scale of the derivatives (mm).
    """
    image = np.asarray(image, dtype=np.float32)
    sigma = sigma_mm / np.asarray(spacing, dtype=float)
    second = []                                  # the Hessian's elements 11, 22, 33, 12, 13, 23
    for i, j in ((0, 0), (1, 1), (2, 2), (0, 1), (0, 2), (1, 2)):
        order = [0, 0, 0]
        order[i] += 1
        order[j] += 1
        second.append(ndimage.gaussian_filter(image, sigma, order=order) / (spacing[i] * spacing[j]))
    _, middle, largest = symmetric_eigenvalues(*second)
    return np.clip(largest - np.abs(middle), 0.0, None).astype(np.float32)


def symmetric_eigenvalues(a11: np.ndarray, a22: np.ndarray, a33: np.ndarray, a12: np.ndarray, a13: np.ndarray,
                          a23: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The eigenvalues of symmetric 3 x 3 matrices given element-wise, smallest, middle, largest.

    In closed form (the trigonometric solution of the characteristic cubic, O. K. Smith,
    Comm. ACM 1961), in float64: a batched ``np.linalg.eigvalsh`` over every voxel of a
    Hessian took 4 of the 36 s of segmenting a real sacrum at 0.86 mm; this takes a tenth of
    that, and agrees with LAPACK's to a billionth of the largest eigenvalue.

    Parameters
    ----------
    a11, a22, a33, a12, a13, a23 : np.ndarray
        The matrices' upper-triangle elements, arrays of one shape.
    """
    a11, a22, a33, a12, a13, a23 = (np.asarray(a, dtype=np.float64) for a in (a11, a22, a33, a12, a13, a23))
    mean = (a11 + a22 + a33) / 3.0
    b11, b22, b33 = a11 - mean, a22 - mean, a33 - mean          # the matrix less its mean eigenvalue
    scale = np.sqrt((b11 * b11 + b22 * b22 + b33 * b33 + 2.0 * (a12 * a12 + a13 * a13 + a23 * a23)) / 6.0)
    safe = np.where(scale > 0, scale, 1.0)                        # a multiple of the identity: all equal
    half_det = (b11 * (b22 * b33 - a23 * a23) - a12 * (a12 * b33 - a23 * a13)
                + a13 * (a12 * a23 - b22 * a13)) / (2.0 * safe ** 3)
    angle = np.arccos(np.clip(half_det, -1.0, 1.0)) / 3.0
    largest = mean + 2.0 * scale * np.cos(angle)
    smallest = mean + 2.0 * scale * np.cos(angle + 2.0 * np.pi / 3.0)
    return smallest, 3.0 * mean - largest - smallest, largest


def border_on_joint(sacrum: np.ndarray, ilium: np.ndarray, smooth: np.ndarray,
                    spacing: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``sacrum`` and ``ilium`` with the border between them moved onto the darkest sheet.

    The voxels of either bone within BORDER_BAND_MM of the other are given again, by a watershed
    on :func:`valley_sheetness` seeded by the rest of each bone: the two sides flood through bone
    and marrow alike and meet on the strongest dark sheet between them, the joint. Nothing outside
    the two bones changes, and neither bone grows beyond their union. On voxels coarser than
    MAX_SPACING_MM on any axis the search runs on the band refined to FINE_MM
    (:func:`_on_refined_grid`): a 3 mm voxel holds a 2-4 mm gap only as a dip between brighter
    neighbours, which the Hessian at VALLEY_SIGMA_MM cannot resolve on the coarse grid itself
    (run there, real case 003 at 3 mm lost 0.02 of sacral Dice; refined, it gained 0.02 and 001 0.04).

    One pass; the pipeline runs a second one from the first one's border (30 mm in all, see
    :func:`segmentation.pipeline._borders_on_joints`).

    Parameters
    ----------
    sacrum, ilium : np.ndarray
        Boolean masks of the two bones (disjoint) on a grid of ``spacing``.
    smooth : np.ndarray
        The (smoothed) CT in HU on the same grid.
    spacing : np.ndarray
        Voxel size (mm) per axis.
    """
    spacing = np.asarray(spacing, dtype=float)
    band = _band(sacrum, ilium, spacing)
    if not band.any():
        return sacrum, ilium
    if np.max(spacing) > MAX_SPACING_MM:
        return _on_refined_grid(sacrum, ilium, smooth, spacing, band)
    box = bounding_box(band, np.ceil(2 * VALLEY_SIGMA_MM / spacing).astype(int) + 1)
    markers = np.zeros(band[box].shape, dtype=np.int32)
    markers[sacrum[box] & ~band[box]] = 1
    markers[ilium[box] & ~band[box]] = 2
    if not (markers == 1).any() or not (markers == 2).any():
        return sacrum, ilium
    given = watershed(valley_sheetness(smooth[box], spacing), markers, mask=(sacrum | ilium)[box])
    sacrum, ilium = sacrum.copy(), ilium.copy()
    moved = band[box] & (given > 0)
    sacrum[box][moved] = given[moved] == 1
    ilium[box][moved] = given[moved] == 2
    return sacrum, ilium


def _band(sacrum: np.ndarray, ilium: np.ndarray, spacing: np.ndarray) -> np.ndarray:
    """The voxels of either bone within BORDER_BAND_MM of the other."""
    d_sac, d_il = distances_where_both_near(sacrum, ilium, spacing, BORDER_BAND_MM)
    return (sacrum & (d_il <= BORDER_BAND_MM)) | (ilium & (d_sac <= BORDER_BAND_MM))


def _on_refined_grid(sacrum: np.ndarray, ilium: np.ndarray, smooth: np.ndarray, spacing: np.ndarray,
                     band: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """:func:`border_on_joint` on a coarse grid: the box of the ``band`` (with room for each bone's seed
    beyond it) is refined by a whole factor per axis to FINE_MM or finer (the CT by linear
    interpolation, the bones by repetition), the border is moved there, and each coarse voxel of the
    two bones goes to the bone that holds most of its fine voxels."""
    factor = np.ceil(spacing / FINE_MM).astype(int)
    box = bounding_box(band, np.ceil(2 * VALLEY_SIGMA_MM / spacing).astype(int) + 2)

    def refined(mask: np.ndarray) -> np.ndarray:
        return mask[box].repeat(factor[0], 0).repeat(factor[1], 1).repeat(factor[2], 2)

    image = ndimage.zoom(smooth[box].astype(np.float32), factor, order=1, mode="nearest", grid_mode=True)
    fine_sacrum, _ = border_on_joint(refined(sacrum), refined(ilium), image, spacing / factor)
    share = block_means(fine_sacrum, factor)
    union = (sacrum | ilium)[box]
    sacrum, ilium = sacrum.copy(), ilium.copy()
    sacrum[box] = union & (share >= 0.5)
    ilium[box] = union & (share < 0.5)
    return sacrum, ilium
