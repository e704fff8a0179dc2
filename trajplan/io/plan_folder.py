"""The file names of trajplan's output folders: the one place that spells them.

A plan folder (``trajplan plan -o``) holds the segmentation's files, the plan files, the
CT around the sacrum and the views. ``segmentation/`` and ``sample_ct/`` write the label files
under the same names.
"""

from __future__ import annotations

# segmentation (also written by ``trajplan segment``)
LABELS = "labels.nii.gz"
SEGMENTATION = "segmentation.json"
# plan files (:func:`trajplan.plan_io.write_plan`)
PLAN = "plan.json"
PLAN_CSV = "plan.csv"
PLAN_MARKUPS = "plan.mrk.json"
CARD = "card.html"
ORIGINAL_PLAN = "plan.orig.json"          # the plan as first loaded, kept by ``trajplan view`` when it saves
LOAD_PLAN = "load_plan.py"                # the folder's loader for 3D Slicer (:mod:`trajplan.io.slicer_script`)
# views (:func:`trajplan.report.render_views`, ``trajplan render``)
CT_ROI = "ct_roi.nii.gz"                  # the CT around the sacrum and the needles
SCENE_PNG = "scene.png"
SCENE_HTML = "scene.html"
REPORT = "report.html"
# evaluation folder (``trajplan evaluate -o``)
EVALUATION = "evaluation.json"
EVALUATION_MARKUPS = "evaluation.mrk.json"    # the scored line for 3D Slicer
# a batch case folder
CASE = "case.json"
# a DICOM export folder (``trajplan export --dicom``)
EXPORT = "export.json"

# files whose presence makes a folder a trajplan output (it may then be replaced)
MARKERS = (PLAN, SEGMENTATION, CASE, EVALUATION, EXPORT)
