"""3D Slicer files of a plan folder: ``labels.seg.nrrd`` and ``plan.mrk.json``."""

from __future__ import annotations

import numpy as np
import pytest

from trajplan import labels as lt
from trajplan.io.files import read_volume_file
from trajplan.io.slicer_seg import write_slicer_segmentation
from trajplan.volume import Volume

slicerio = pytest.importorskip("slicerio")
nrrd = pytest.importorskip("nrrd")


def oblique_label_map() -> Volume:
    """A small label map with every label value, anisotropic spacing and a rotated, flipped grid."""
    rng = np.random.default_rng(7)
    array = rng.integers(0, len(lt.LABELS) + 1, size=(7, 5, 4)).astype(np.uint8)
    angle = np.deg2rad(20)
    rotation = np.array([[np.cos(angle), -np.sin(angle), 0], [np.sin(angle), np.cos(angle), 0], [0, 0, 1]])
    direction = rotation @ np.diag([1.0, -1.0, -1.0])
    return Volume(array, spacing=(0.7, 1.1, 2.5), origin=(-12.5, 30.25, 101.0), direction=direction)


def check_segmentation_file(path, labels: Volume) -> None:
    seg = slicerio.read_segmentation(str(path))
    table = [(label.name, label.value, [c / 255 for c in label.color]) for label in lt.LABELS]
    found = [(s["name"], s["labelValue"], list(s["color"])) for s in seg["segments"]]
    assert [(n, v) for n, v, _ in found] == [(n, v) for n, v, _ in table]
    for (_, _, colour), (_, _, expected) in zip(found, table):
        assert np.allclose(colour, expected, atol=1e-5)
    assert all(s["layer"] == 0 for s in seg["segments"])
    assert seg["voxels"].ndim == 3 and np.array_equal(seg["voxels"], labels.array)

    data, header = nrrd.read(str(path), index_order="F")
    assert header["space"] == "left-posterior-superior"
    assert np.array_equal(data, labels.array)
    directions = np.asarray(header["space directions"], dtype=float)   # one row per index axis
    origin = np.asarray(header["space origin"], dtype=float)
    for index in ([0, 0, 0], [1, 0, 0], [0, 1, 0], [0, 0, 1], [3, 2, 1], list(np.array(labels.shape) - 1)):
        world = origin + np.asarray(index, dtype=float) @ directions
        assert np.allclose(world, labels.index_to_world(np.asarray(index, dtype=float)), atol=1e-6)


def test_seg_nrrd_of_an_oblique_label_map(tmp_path):
    labels = oblique_label_map()
    path = write_slicer_segmentation(labels, tmp_path / "labels.seg.nrrd")
    check_segmentation_file(path, labels)
    assert [p.name for p in tmp_path.iterdir()] == ["labels.seg.nrrd"]   # no temporary file left


@pytest.fixture(scope="module")
def plan_dir(truth_plan_dir):
    """A plan folder of the phantom, planned on its ground-truth labels, without the report
    (conftest's ``truth_plan_dir``)."""
    return truth_plan_dir


def test_plan_folder_seg_nrrd_matches_labels_nii(plan_dir):
    out = plan_dir
    labels = read_volume_file(out / "labels.nii.gz")
    check_segmentation_file(out / "labels.seg.nrrd", labels)


def test_plan_markups_validate_against_slicer_schema(plan_dir):
    """plan.mrk.json against Slicer's Markups JSON schema v1.0.3 (tests/data); one verdict-coloured
    Line per listed needle, named as its card in report.html, then the skin-entry point list."""
    import json
    from pathlib import Path

    jsonschema = pytest.importorskip("jsonschema")
    from trajplan.card_html import needle_title
    from trajplan.needle import Verdict
    from trajplan.plan_io import listed_needles

    schema = json.loads((Path(__file__).parent / "data" / "markups-schema-v1.0.3.json").read_text())
    doc = json.loads((plan_dir / "plan.mrk.json").read_text())
    jsonschema.Draft7Validator.check_schema(schema)
    jsonschema.validate(doc, schema, cls=jsonschema.Draft7Validator)

    needles = listed_needles(json.loads((plan_dir / "plan.json").read_text()))
    lines = [m for m in doc["markups"] if m["type"] == "Line"]
    assert len(lines) == len(needles) >= 1
    for line, needle in zip(lines, needles):
        assert line["name"] == needle_title(needle) and line["name"].startswith(f"Needle {needle['rank']}: ")
        assert line["display"]["color"] == line["display"]["selectedColor"] == list(Verdict(needle["verdict"]).rgb)
        assert [p["position"] for p in line["controlPoints"]] == [needle["entry_lps"], needle["tip_lps"]]
    report_cards = (plan_dir / "card.html").read_text()
    assert all(needle_title(n).replace("'", "&#x27;") in report_cards for n in needles)
    points = len(doc["markups"]) - len(lines)
    assert [m["type"] for m in doc["markups"]] == ["Line"] * len(lines) + ["Fiducial"] * points


def test_a_broken_markup_fails_the_schema():
    """The vendored schema does reject what Slicer would not read."""
    import json
    from pathlib import Path

    jsonschema = pytest.importorskip("jsonschema")
    schema = json.loads((Path(__file__).parent / "data" / "markups-schema-v1.0.3.json").read_text())
    bad = {"@schema": "x", "markups": [{"type": "Line", "coordinateSystem": "XYZ",
                                        "controlPoints": [{"position": [1, 2]}], "display": {"color": [2, 0, 0]}}]}
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(bad, schema, cls=jsonschema.Draft7Validator)
