"""``load_plan.py`` in a plan folder: it compiles, imports only Slicer's API, names only files of its folder,
and (run against a stand-in ``slicer`` module, as there is no Slicer here) loads them."""

from __future__ import annotations

import ast
import shutil
import sys
import types
from pathlib import Path

from trajplan.io.slicer_script import LOAD_PLAN

SLICER_MODULES = {"os", "slicer", "DICOMLib"}


def test_every_plan_folder_carries_a_script_that_compiles(truth_plan_dir):
    path = truth_plan_dir / LOAD_PLAN
    compile(path.read_text(encoding="utf-8"), str(path), "exec")


def test_the_script_imports_only_slicer_and_names_only_files_of_its_folder(truth_plan_dir):
    tree = ast.parse((truth_plan_dir / LOAD_PLAN).read_text(encoding="utf-8"))
    imported = {alias.name for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names}
    imported |= {node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)}
    assert imported <= SLICER_MODULES, imported
    strings = [node.value for node in ast.walk(tree) if isinstance(node, ast.Constant) and isinstance(node.value, str)]
    names = [s for s in strings if "." in s and " " not in s]     # file names: not the docstrings, not "CT"
    assert sorted(names) == ["ct_roi.nii.gz", "labels.seg.nrrd", "plan.mrk.json"]
    for name in names:
        assert (truth_plan_dir / name).is_file(), name


class FakeSlicer(types.ModuleType):
    """The few ``slicer`` calls the script makes, recorded."""

    def __init__(self) -> None:
        super().__init__("slicer")
        self.calls: list[tuple[str, str]] = []
        record = self.calls

        class Segmentation:
            def CreateClosedSurfaceRepresentation(self) -> None:
                record.append(("CreateClosedSurfaceRepresentation", ""))

        def loader(kind, result=None):
            def load(path):
                record.append((kind, path))
                return result
            return load

        self.util = types.SimpleNamespace(
            loadVolume=loader("loadVolume", "ct node"), loadSegmentation=loader("loadSegmentation", Segmentation()),
            loadMarkups=loader("loadMarkups"),
            setSliceViewerLayers=lambda background, fit: record.append(("setSliceViewerLayers", background)))


def run_script(folder: Path, monkeypatch, **given) -> list[tuple[str, str]]:
    fake = FakeSlicer()
    monkeypatch.setitem(sys.modules, "slicer", fake)
    path = folder / LOAD_PLAN
    exec(compile(path.read_text(encoding="utf-8"), str(path), "exec"), {"__file__": str(path), **given})
    return fake.calls


def test_run_from_a_moved_folder_it_loads_that_folders_files(truth_plan_dir, tmp_path, monkeypatch):
    moved = tmp_path / "moved"
    moved.mkdir()
    for name in (LOAD_PLAN, "ct_roi.nii.gz", "labels.seg.nrrd", "plan.mrk.json"):
        shutil.copy(truth_plan_dir / name, moved / name)
    assert run_script(moved, monkeypatch) == [
        ("loadVolume", str(moved / "ct_roi.nii.gz")), ("loadSegmentation", str(moved / "labels.seg.nrrd")),
        ("CreateClosedSurfaceRepresentation", ""), ("loadMarkups", str(moved / "plan.mrk.json")),
        ("setSliceViewerLayers", "ct node")]


def test_a_given_ct_file_is_loaded_instead_of_the_region(truth_plan_dir, monkeypatch):
    calls = run_script(truth_plan_dir, monkeypatch, CT="/data/ct.nii.gz")
    assert calls[0] == ("loadVolume", "/data/ct.nii.gz")
    assert not any(path.endswith("ct_roi.nii.gz") for _, path in calls)
