"""``load_plan.py``: the script a plan folder carries to open itself in 3D Slicer's Python console.

The script uses only Slicer's own Python API (``slicer``, and ``DICOMLib`` for a DICOM folder) and
names only files of its own folder, found from its own path, so the folder can be moved or
copied whole. It is the same text in every plan folder.
"""

from __future__ import annotations

from pathlib import Path

from trajplan.io.atomic import write_text
from trajplan.io.plan_folder import LOAD_PLAN

SCRIPT = '''"""Open this trajplan plan in 3D Slicer.

In Slicer's Python console (View > Python Console), with this file's path:

    path = r"/path/to/PLAN/load_plan.py"
    exec(open(path).read(), {"__file__": path})

It loads from this folder ct_roi.nii.gz (the CT around the sacrum and the needles),
labels.seg.nrrd (the segments, shown in 3D too) and plan.mrk.json (the needle lines and the
skin entries), and shows the CT in the slice views. To load the whole CT instead of
ct_roi.nii.gz, give its file or DICOM series folder as CT:

    exec(open(path).read(), {"__file__": path, "CT": r"/path/to/ct.nii.gz"})
"""

import os

import slicer

FOLDER = os.path.dirname(os.path.abspath(__file__))
CT = globals().get("CT")


def load_ct(path):
    """The CT volume node of a volume file, or of the (first) series of a DICOM folder."""
    if not os.path.isdir(path):
        return slicer.util.loadVolume(path)
    from DICOMLib import DICOMUtils

    loaded = []
    with DICOMUtils.TemporaryDICOMDatabase() as database:
        DICOMUtils.importDicom(path, database)
        for patient in database.patients():
            loaded.extend(DICOMUtils.loadPatientByUID(patient))
    nodes = [slicer.mrmlScene.GetNodeByID(node_id) for node_id in loaded]
    return next(node for node in nodes if node.IsA("vtkMRMLScalarVolumeNode"))


ct = load_ct(CT) if CT else slicer.util.loadVolume(os.path.join(FOLDER, "ct_roi.nii.gz"))
segmentation = slicer.util.loadSegmentation(os.path.join(FOLDER, "labels.seg.nrrd"))
segmentation.CreateClosedSurfaceRepresentation()
slicer.util.loadMarkups(os.path.join(FOLDER, "plan.mrk.json"))
slicer.util.setSliceViewerLayers(background=ct, fit=True)
'''


def write_load_plan(out_dir: str | Path) -> Path:
    """Atomically write ``load_plan.py`` into the plan folder ``out_dir``."""
    path = Path(out_dir) / LOAD_PLAN
    write_text(path, SCRIPT)
    return path
