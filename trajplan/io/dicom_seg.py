"""The label map as a DICOM Segmentation (highdicom) of its source CT series, with coded segments.

One BINARY segment per label present in the label map, in table order, numbered 1, 2, ... (so a
segment number is not the label value when a label is absent), each named by the label
(``SegmentLabel``), coloured as in the label table and coded: SNOMED CT where a code for the
structure exists in DICOM's content mapping resource, otherwise a more general code (``Bone``
or ``Tissue``) with the structure's place (``Sacrum``) as its anatomic region and the label
name as its ``SegmentLabel``; left and right are a modifier of the property type (in its code item). The frames
lie on the CT's own slices, so each refers to its source image.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import highdicom as hd
import numpy as np
from pydicom.dataset import Dataset
from pydicom.sr.coding import Code

from trajplan import __version__
from trajplan import labels as lt
from trajplan.errors import InputError
from trajplan.volume import Volume

ANATOMY = Code("91723000", "SCT", "Anatomical Structure")
TISSUE = Code("85756007", "SCT", "Tissue")
ABNORMAL = Code("49755003", "SCT", "Morphologically Abnormal Structure")
SACRUM = Code("54735007", "SCT", "Sacrum")
BONE = Code("3138006", "SCT", "Bone")
MORPHOLOGICAL_OPERATIONS = Code("123104", "DCM", "Morphological Operations")   # CID 7162
SIDE_CODES = {"left": Code("7771000", "SCT", "Left"), "right": Code("24028007", "SCT", "Right")}


@dataclass(frozen=True)
class SegmentCode:
    """How one label is coded: category, property type, anatomic region, and whether the type is
    a general code standing in for a structure that has none of its own."""

    category: Code
    type: Code
    region: Code | None = None
    general: bool = False


_SIDED = {
    "ala": SegmentCode(TISSUE, BONE, SACRUM, general=True),
    "si_joint": SegmentCode(ANATOMY, Code("39723000", "SCT", "Sacroiliac joint")),
    "ilium": SegmentCode(ANATOMY, Code("22356005", "SCT", "Ilium")),
}
SEGMENT_CODES: dict[str, SegmentCode] = {
    "sacrum": SegmentCode(ANATOMY, SACRUM),
    **{f"{part}_{side}": code for part, code in _SIDED.items() for side in lt.SIDES},
    "anterior_cortex": SegmentCode(TISSUE, BONE, SACRUM, general=True),
    "canal": SegmentCode(ANATOMY, Code("61853006", "SCT", "Vertebral canal"), SACRUM),
    **{name: SegmentCode(TISSUE, TISSUE, SACRUM, general=True) for name in lt.FORAMINA},
    "L5": SegmentCode(ANATOMY, Code("49668003", "SCT", "L5 vertebra")),
    "fracture": SegmentCode(ABNORMAL, Code("72704001", "SCT", "Fracture"), SACRUM),
    "lesion": SegmentCode(ABNORMAL, Code("52988006", "SCT", "Lesion"), SACRUM),
    "coccyx": SegmentCode(ANATOMY, Code("64688005", "SCT", "Coccyx")),
    "L5_S1_disc": SegmentCode(ANATOMY, Code("715056000", "SCT", "L5/S1 disc")),
    "presacral_vessels": SegmentCode(ANATOMY, Code("59820001", "SCT", "Blood vessel"),
                                     Code("816092008", "SCT", "Pelvis")),
}


def side_of(name: str) -> str | None:
    """``left`` or ``right`` for a one-sided label (``ala_left``, ``foramen_S1_right``), else None."""
    side = name.rsplit("_", 1)[-1]
    return side if side in lt.SIDES else None


def segment_description(number: int, name: str, algorithm_type: str) -> hd.seg.SegmentDescription:
    """The coded description of segment ``number``, the label called ``name``."""
    code = SEGMENT_CODES[name]
    description = hd.seg.SegmentDescription(
        segment_number=number,
        segment_label=name,
        segmented_property_category=code.category,
        segmented_property_type=code.type,
        algorithm_type=algorithm_type,
        algorithm_identification=hd.AlgorithmIdentificationSequence(
            name="trajplan", version=__version__, family=MORPHOLOGICAL_OPERATIONS),
        anatomic_regions=[code.region] if code.region else None,
        display_color=hd.color.CIELabColor.from_rgb(*lt.color(name)),
    )
    side = side_of(name)
    if side is not None:
        modifier = SIDE_CODES[side]
        description.SegmentedPropertyTypeCodeSequence[0].SegmentedPropertyTypeModifierCodeSequence = [
            hd.sr.CodedConcept(modifier.value, modifier.scheme_designator, modifier.meaning)]
    return description


def check_on_slices(labels: Volume, sources: Sequence[Dataset], tol_mm: float = 0.01) -> None:
    """Check that the label map's k-th slice lies on the k-th source image, as the reader stacked them.

    In the image plane within ``tol_mm`` and with the same orientation; along the slice normal
    within half a slice (the reader accepts slightly uneven slice positions and stacks them as they
    are, so the frame of slice k is drawn on image k, where it was segmented).

    Raises
    ------
    InputError
        When they differ (a gantry-tilted series resampled on reading, or labels of another grid).
    """
    if labels.shape[2] != len(sources):
        raise InputError(f"the label map has {labels.shape[2]} slices, the DICOM series {len(sources)} images")
    row, col, normal = labels.direction[:, 0], labels.direction[:, 1], labels.direction[:, 2]
    for k, source in enumerate(sources):
        offset = np.asarray(source.ImagePositionPatient, dtype=float) - (labels.origin + k * labels.spacing[2] * normal)
        orientation = np.asarray(source.ImageOrientationPatient, dtype=float)
        if (max(abs(offset @ row), abs(offset @ col)) > tol_mm or abs(offset @ normal) > 0.5 * labels.spacing[2]
                or np.abs(orientation - np.concatenate([row, col])).max() > 1e-3):
            raise InputError(f"image {k + 1} of the DICOM series does not lie on slice {k} of the label map "
                             "(a gantry-tilted series is resampled on reading): its segmentation cannot be "
                             "exported onto the series' own images")


def dicom_segmentation(
    labels: Volume,
    sources: Sequence[Dataset],
    *,
    series_uid: str,
    series_number: int,
    algorithm_type: str = "AUTOMATIC",
) -> hd.seg.Segmentation:
    """The label map as a BINARY DICOM Segmentation of ``sources`` (the CT's images, in slice order).

    Parameters
    ----------
    labels : Volume
        A trajplan label map on the grid of ``sources`` (:func:`check_on_slices`).
    sources : sequence of Dataset
        The source CT images (headers suffice), image ``k`` at slice ``k`` of ``labels``; the
        patient, study and frame of reference are taken from them.
    algorithm_type : str
        ``AUTOMATIC`` (segmented by trajplan) or ``SEMIAUTOMATIC`` (a label map given to it).

    Raises
    ------
    InputError
        When the labels are not on the images' slices, or no label is present.
    """
    check_on_slices(labels, sources)
    present = lt.present(labels)
    if not present:
        raise InputError("the label map is empty: there is no segment to export")
    numbers = np.zeros(256, dtype=np.uint8)
    for number, name in enumerate(present, start=1):
        numbers[lt.value(name)] = number
    frames = numbers[np.asarray(labels.array, dtype=np.uint8)].transpose(2, 1, 0)   # (slice, row, column)
    return hd.seg.Segmentation(
        source_images=list(sources),
        pixel_array=frames,
        segmentation_type=hd.seg.SegmentationTypeValues.BINARY,
        segment_descriptions=[segment_description(n, name, algorithm_type)
                              for n, name in enumerate(present, start=1)],
        series_instance_uid=series_uid,
        series_number=series_number,
        sop_instance_uid=hd.UID(),
        instance_number=1,
        manufacturer="trajplan",
        manufacturer_model_name="trajplan",
        software_versions=__version__,
        device_serial_number="none",
        content_label="TRAJPLAN",
        content_description="sacroplasty plan: labels",
        series_description="trajplan segmentation",
    )
