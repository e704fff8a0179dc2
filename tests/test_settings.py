"""``--config FILE.toml``: planning settings files, their errors and the ``settings`` block of plan.json."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import tomllib

from trajplan import cli
from trajplan.planning import PlanOptions
from trajplan.planning.options import settings_json
from trajplan.settings import parse_settings, settings_toml

DOCS = Path(__file__).resolve().parents[1] / "docs"


def test_the_documented_example_holds_every_key_at_its_default():
    text = (DOCS / "planning.md").read_text()
    block = re.search(r"## Settings file.*?```toml\n(.*?)```", text, re.S).group(1)
    parsed = parse_settings(tomllib.loads(block))
    defaults = settings_json(PlanOptions())
    assert settings_json(PlanOptions(**parsed)) == defaults
    assert tomllib.loads(block) == tomllib.loads(settings_toml(defaults))     # every key, none more


@pytest.mark.parametrize("text, words", [
    ("[weights]\nclearence = 1\n", ["weights.clearence"]),
    ("[placement_error]\nsamples = \"many\"\n", ["placement_error.samples", "whole number"]),
    ("[placement_error]\nsamples = 2.5\n", ["placement_error.samples", "whole number"]),
    ("[placement_error]\nsamples = 5\n", ["placement_error.samples", "10 to 100000"]),
    ("[margins_mm]\ncanal = true\n", ["margins_mm.canal", "number"]),
    ("[margins_mm]\nnerve = 3\n", ["margins_mm.nerve"]),
    ("[margins_mm]\ncanal = 45\n", ["canal", "0..30"]),
    ("min_separation_mm = -1\n", ["min_separation_mm", "negative"]),
    ("needle_lengths_mm = 100\n", ["needle_lengths_mm"]),
    ("weights = 3\n", ["weights", "table"]),
    ("seed = 3\n", ["'seed'"]),
    ("x = [\n", ["not valid TOML"]),
])
def test_a_bad_settings_file_is_one_line_naming_the_key_and_exit_2(phantom_dir, tmp_path, capsys, text, words):
    config = tmp_path / "settings.toml"
    config.write_text(text)
    for command in (["plan", str(phantom_dir / "ct.nii.gz"), "-o", str(tmp_path / "out")],
                    ["evaluate", str(phantom_dir / "ct.nii.gz"), "--entry=1,2,3", "--target=4,5,6"]):
        capsys.readouterr()
        assert cli.main([*command, "--config", str(config)]) == 2
        err = capsys.readouterr().err
        assert "Traceback" not in err and len(err.strip().splitlines()) == 1, err
        assert "settings.toml" in err
        for word in words:
            assert word in err, err
    assert not (tmp_path / "out").exists()


def test_plan_json_records_the_effective_settings_and_the_card_uses_the_needle_lengths(phantom_dir, tmp_path):
    config = tmp_path / "mine.toml"
    config.write_text("min_separation_mm = 12\nneedle_lengths_mm = [150, 90]\n"
                      "[margins_mm]\ncanal = 4\nforamen_S1_left = 3.5\n[weights]\ncement = 0.3\n"
                      "[placement_error]\nsamples = 50\nentry_sigma_mm = 1.5\n")
    out = tmp_path / "plan"
    code = cli.main(["-q", "plan", str(phantom_dir / "ct.nii.gz"), "-o", str(out), "--technique", "short",
                     "--labels", str(phantom_dir / "labels.nii.gz"), "--no-report", "--config", str(config),
                     "--margins", "foramen=2.5,canal=3.5"])
    assert code == 0
    plan = json.loads((out / "plan.json").read_text())
    settings = plan["settings"]
    assert settings["min_separation_mm"] == 12.0 and settings["needle_lengths_mm"] == [150.0, 90.0]
    assert settings["margins_mm"] == {"canal": 3.5, "foramen": 2.5, "anterior_cortex": 2.0, "si_joint": 2.0,
                                      "ilium": 2.0, "L5_S1_disc": 2.0, "foramen_S1_left": 3.5}
    assert settings["weights"]["cement"] == 0.3 and settings["weights"]["clearance"] == 0.35
    assert settings["placement_error"] == {"entry_sigma_mm": 1.5, "angle_sigma_deg": 2.0, "samples": 50}
    assert plan["parameters"]["margins_mm"]["foramen_S2_left"] == 2.5
    assert plan["parameters"]["margins_mm"]["foramen_S1_left"] == 3.5
    assert plan["parameters"]["weights"] == settings["weights"]
    assert plan["parameters"]["min_separation_mm"] == 12.0
    assert plan["parameters"]["placement_error"]["samples"] == 50
    for needle in plan["needles"]:
        reach = needle["card"]["skin_to_tip_mm"]
        assert needle["card"]["needle_length_mm"] == (90.0 if reach <= 90 else 150.0 if reach <= 150 else None)
    # saved as TOML, the settings plan the same way
    again = parse_settings(tomllib.loads(settings_toml(settings)))
    assert settings_json(PlanOptions(**again)) == settings
