"""The plan's pictures (the PNGs of a plan folder) as DICOM Secondary Capture images (highdicom).

One RGB instance per picture, all in one series of the source CT's study; a picture is a render
(3D view, CT slice along a needle, simulated fluoroscopy), so it has no patient orientation and
is marked as made on a workstation (``ConversionType`` ``WSD``).
"""

from __future__ import annotations

from pathlib import Path

import highdicom as hd
import numpy as np
from PIL import Image
from pydicom.dataset import Dataset
from pydicom.uid import ExplicitVRLittleEndian

from trajplan import __version__
from trajplan.io.plan_folder import SCENE_PNG

PICTURE_FOLDERS = {"views": "3D view", "slices": "CT slice", "fluoro": "simulated fluoroscopy"}


def plan_pictures(plan_dir: str | Path) -> list[tuple[Path, str]]:
    """The pictures of a plan folder and their captions, in report order of their kinds.

    The 3D views (``views/``), the CT slices along each needle (``slices/``) and the simulated
    fluoroscopy (``fluoro/``), each sorted by name; ``scene.png`` only when there is none of
    these (a plan made with ``--no-report``), as ``views/posterior.png`` shows the same.
    """
    plan_dir = Path(plan_dir)
    pictures = [(path, f"{kind}: {path.stem.replace('_', ' ')}")
                for folder, kind in PICTURE_FOLDERS.items()
                for path in sorted((plan_dir / folder).glob("*.png"))]
    if not pictures and (plan_dir / SCENE_PNG).is_file():
        pictures = [(plan_dir / SCENE_PNG, "3D view: posterior")]
    return pictures


def secondary_capture(
    png: str | Path,
    caption: str,
    reference: Dataset,
    *,
    series_uid: str,
    series_number: int,
    instance_number: int,
) -> hd.sc.SCImage:
    """A PNG as an RGB Secondary Capture image in the study (and of the patient) of ``reference``.

    ``caption`` becomes its ``ImageComments`` and ``DerivationDescription``.
    """
    with Image.open(png) as image:
        pixels = np.asarray(image.convert("RGB"), dtype=np.uint8)
    sc = hd.sc.SCImage.from_ref_dataset(
        ref_dataset=reference,
        pixel_array=pixels,
        photometric_interpretation=hd.PhotometricInterpretationValues.RGB,
        bits_allocated=8,
        coordinate_system=hd.CoordinateSystemNames.PATIENT,
        patient_orientation=("L", "F"),     # required by highdicom; emptied below
        series_instance_uid=series_uid,
        series_number=series_number,
        sop_instance_uid=hd.UID(),
        instance_number=instance_number,
        manufacturer="trajplan",
        series_description="trajplan plan pictures",
        software_versions=__version__,
        transfer_syntax_uid=ExplicitVRLittleEndian,
    )
    sc.PatientOrientation = None            # Type 2: a render has no row and column directions in the patient
    sc.Laterality = None                    # Type 2C: a picture of both sides
    sc.ConversionType = "WSD"               # made on a workstation
    sc.BurnedInAnnotation = "NO"            # captions and scale bars only, nothing that identifies the patient
    sc.ImageComments = caption
    sc.DerivationDescription = caption
    return sc
