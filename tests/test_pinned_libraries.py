"""constraints.txt pins the numerical libraries whose versions the validations' figures depend on."""

from __future__ import annotations

import importlib.util
from importlib.metadata import requires
from pathlib import Path

from packaging.requirements import Requirement

ROOT = Path(__file__).resolve().parents[1]


def _environment():
    spec = importlib.util.spec_from_file_location("environment", ROOT / "benchmarks" / "environment.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_every_library_the_validations_name_is_pinned_within_the_projects_ranges():
    environment = _environment()
    pins = environment.pinned(environment.CONSTRAINTS)
    ranges = {Requirement(text).name.lower(): Requirement(text).specifier
              for text in requires("trajplan") if "extra ==" not in text}
    for name in environment.NUMERICAL:
        assert name.lower() in pins, f"{name} is not pinned in constraints.txt"
        assert pins[name.lower()] in ranges[name.lower()], f"{name}=={pins[name.lower()]} is outside pyproject's range"


def test_the_stack_named_in_a_validation_says_which_versions_differ_from_the_pins(tmp_path, monkeypatch):
    environment = _environment()
    other = tmp_path / "constraints.txt"
    other.write_text("# a comment\nnumpy==0.0.1  # not what is installed\nscipy==1.0\n")
    monkeypatch.setattr(environment, "CONSTRAINTS", other)
    text = environment.numerical_stack()
    assert text.startswith("numpy ")
    assert "(not as pinned in constraints.txt: numpy 0.0.1, scipy 1.0)" in text
