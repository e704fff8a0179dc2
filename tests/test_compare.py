"""trajplan compare: technique comparison on a small phantom cohort and on a batch output."""

from __future__ import annotations

import csv
from pathlib import Path

import matplotlib.image
import pytest

from trajplan.batch import BatchOptions, run_batch
from trajplan.cli import main
from trajplan.compare import COMPARISON_COLUMNS, CompareOptions, run_compare
from trajplan.planning import PlanOptions
from trajplan.planning.defaults import DEFAULT_MARGINS_MM

SMALL = CompareOptions(gauges=(11,), needle_counts=(1, 2), mc_samples=20)


def read_rows(path: Path) -> list[dict]:
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


@pytest.fixture(scope="module")
def cohort_out(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("compare")
    code = main(["-q", "compare", "-o", str(out), "--cohort", "4", "--seed", "7", "--spacing", "2.5",
                 "--max-needles", "3", "--mc-samples", "20"])
    assert code == 0
    return out


@pytest.mark.slow   # a cohort of four phantoms
def test_one_row_per_case_and_configuration(cohort_out):
    rows = read_rows(cohort_out / "comparison.csv")
    assert list(rows[0]) == list(COMPARISON_COLUMNS)
    assert len(rows) == 4 * 2 * 3 * 3           # cases x gauges x techniques x needle counts
    assert {r["status"] for r in rows} == {"done"}
    patterns = {(r["fracture"], r["lesion"]) for r in rows}
    assert {("left", "none"), ("right", "none"), ("bilateral", "none")} <= patterns
    assert any(lesion != "none" for _, lesion in patterns)
    for r in rows:
        assert int(r["needles_placed"]) <= int(r["needles_requested"])


@pytest.mark.slow   # a cohort of four phantoms
def test_every_reported_clearance_respects_its_margin(cohort_out):
    rows = [r for r in read_rows(cohort_out / "comparison.csv") if int(r["needles_placed"])]
    assert rows
    for r in rows:
        for cls, margin in DEFAULT_MARGINS_MM.items():
            value = r[f"min_clearance_{cls}_mm"]
            if value:
                assert float(value) >= margin, (r["case_id"], r["technique"], cls, value)


@pytest.mark.slow   # a cohort of four phantoms
def test_long_axis_is_longer_in_bone_and_reaches_more_cement(cohort_out):
    rows = [r for r in read_rows(cohort_out / "comparison.csv")
            if r["needles_requested"] == "1" and r["needles_placed"] == "1" and r["gauge"] == "11"]
    by = {(r["case_id"], r["technique"]): r for r in rows}
    pairs = [(by[(c, "short_axis")], by[(c, "long_axis")])
             for c, t in by if t == "short_axis" and (c, "long_axis") in by]
    assert len(pairs) >= 3
    longer = sum(float(lg["mean_length_in_bone_mm"]) > float(sh["mean_length_in_bone_mm"]) for sh, lg in pairs)
    more_cement = sum(float(lg["cement_volume_ml"]) > float(sh["cement_volume_ml"]) for sh, lg in pairs)
    assert longer == len(pairs)
    assert more_cement >= len(pairs) - 1


@pytest.mark.slow   # a cohort of four phantoms
def test_markdown_links_real_figures(cohort_out):
    text = (cohort_out / "comparison.md").read_text()
    assert "What a phantom can and cannot say" in text and "cement flow" in text
    links = [line.split("](")[1].rstrip(")") for line in text.splitlines() if line.startswith("![")]
    assert len(links) == 5
    for link in links:
        image = matplotlib.image.imread(cohort_out / link)
        assert image.shape[0] >= 300 and image.shape[1] >= 500
        assert image[..., :3].std() > 0.05       # not a blank page


def test_same_seed_same_numbers(tmp_path):
    # one case: the cohort's size is tested above, what is repeated here is a case's numbers
    first = run_compare(tmp_path / "a", cohort_size=1, seed=3, spacings=(2.5,), options=SMALL)
    second = run_compare(tmp_path / "b", cohort_size=1, seed=3, spacings=(2.5,), options=SMALL)
    assert first["rows"] == second["rows"] == 1 * 3 * 2
    assert (tmp_path / "a" / "comparison.csv").read_text() == (tmp_path / "b" / "comparison.csv").read_text()
    assert (tmp_path / "a" / "comparison.md").read_text() == (tmp_path / "b" / "comparison.md").read_text()
    other = run_compare(tmp_path / "c", cohort_size=1, seed=4, spacings=(2.5,), options=SMALL)
    assert other["rows"] == first["rows"]
    assert (tmp_path / "c" / "comparison.csv").read_text() != (tmp_path / "a" / "comparison.csv").read_text()


def test_from_batch_compares_the_finished_cases(tmp_path):
    from sample_ct.phantom import PhantomParams, make_phantom, write_phantom

    archive = tmp_path / "archive"
    write_phantom(make_phantom(PhantomParams(seed=11, spacing=(2.5,) * 3, fracture="bilateral")), archive / "p")
    (archive / "p" / "labels.nii.gz").unlink()
    (archive / "broken.nii.gz").write_bytes(b"not a nifti")
    batch = tmp_path / "batch"
    run_batch(BatchOptions(input=archive, output=batch, plan=PlanOptions(needles=1, mc_samples=20), report=False))
    summary = {r["input"]: r for r in read_rows(batch / "summary.csv")}
    assert summary["p/ct.nii.gz"]["status"] == "done" and summary["broken.nii.gz"]["status"] == "failed"

    out = tmp_path / "cmp"
    assert main(["-q", "compare", "-o", str(out), "--from-batch", str(batch), "--gauges", "11",
                 "--max-needles", "2", "--mc-samples", "20"]) == 0
    rows = read_rows(out / "comparison.csv")
    assert {r["case_id"] for r in rows} == {summary["p/ct.nii.gz"]["case_id"]}
    assert {r["source"] for r in rows} == {"batch"} and len(rows) == 3 * 2
    assert "finished cases of the batch output" in (out / "comparison.md").read_text()


@pytest.mark.parametrize("argv, message", [
    (["--from-batch", "."], "not a trajplan batch output"),
    (["--spacing", "5"], "--spacing must be 0.5-3 mm"),
    (["--cohort", "0"], "1 to 1000 cases"),
])
def test_bad_arguments_exit_2(tmp_path, capsys, argv, message):
    assert main(["compare", "-o", str(tmp_path / "x"), *argv]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


def test_a_batch_case_whose_lesion_is_marked_uncertain_is_compared_on_its_alae(tmp_path, canal_lesion_labels):
    # As trajplan plan: a lesion that segmentation.json marks uncertain gives way to the alae (here no
    # safe path reaches it either: no long-axis path, the S4 foramina erased; the short axis cannot).
    import json

    import numpy as np

    from trajplan import labels as lt
    from trajplan.compare import batch_case_rows
    from trajplan.io.files import write_volume_file

    _, lesioned = canal_lesion_labels
    array = lesioned.array.copy()
    array[np.isin(array, [lt.value("foramen_S4_left"), lt.value("foramen_S4_right")])] = lt.value("sacrum")
    folder = tmp_path / "case"
    folder.mkdir()
    write_volume_file(lesioned.with_array(array), folder / "labels.nii.gz")
    (folder / "case.json").write_text(json.dumps({"case_id": "c1"}))
    rows = {}
    for quality in ("ok", "uncertain: the sacrum holds dark fatty marrow"):
        (folder / "segmentation.json").write_text(json.dumps({"structures": {"lesion": {"quality": quality}}}))
        rows[quality.split(":")[0]] = batch_case_rows(str(folder), SMALL)
    assert [r["status"] for r in rows["ok"]] == ["no_safe_path"], rows["ok"]
    assert {r["status"] for r in rows["uncertain"]} == {"done"} and len(rows["uncertain"]) == 3 * 2
    assert {r["target_kind"] for r in rows["uncertain"]} == {"ala"}
    assert max(int(r["needles_placed"]) for r in rows["uncertain"]) >= 1
