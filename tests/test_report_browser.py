"""The report and the interactive scene open in a real browser (headless Chromium via Playwright).

Skipped, with the reason, only where no Chromium is installed (`make test` installs the Debian
package when it runs as root).
"""

from __future__ import annotations

import shutil

import pytest
from conftest import recorded_page

from trajplan.cli import main

CHROMIUM = next((p for p in map(shutil.which, ("chromium", "chromium-browser", "google-chrome")) if p), None)
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="no Chromium installed (apt-get install chromium)")


@pytest.fixture(scope="module")
def plan_dir(phantom_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("report")
    assert main(["-q", "plan", str(phantom_dir / "ct.nii.gz"), "-o", str(out), "--labels",
                 str(phantom_dir / "labels.nii.gz"), "--needles", "2"]) == 0
    return out


def _open(browser, path):
    page, errors, requests = recorded_page(browser, 1400,
                                           keep=lambda url: not url.startswith(("file:", "data:", "blob:")))
    page.goto(path.as_uri(), wait_until="load")
    return page, errors, requests


def test_report_loads_without_errors_and_shows_every_image(browser, plan_dir):
    page, errors, requests = _open(browser, plan_dir / "report.html")
    images = page.evaluate("Array.from(document.images).map(i => [i.alt, i.complete, i.naturalWidth, "
                           "i.getBoundingClientRect().width])")
    assert errors == [] and requests == []
    captions = [alt for alt, *_ in images]
    assert {"posterior view", "lateral view", "inlet view", "outlet view", "down needle 1"} <= set(captions)
    assert {f"fluoroscopy {p} (simulated)" for p in ("AP", "lateral", "inlet", "outlet")} <= set(captions)
    for rank in (1, 2):
        for part in ("plane of the needle", "axial at the entry", "axial at the mid", "axial at the tip"):
            assert any(c.startswith(f"needle {rank} (") and part in c for c in captions), (rank, part)
    for alt, complete, natural, shown in images:
        assert complete and natural >= 200 and shown > 100, alt
    table = page.evaluate("document.querySelectorAll('tr.safe, tr.marginal, tr.unsafe').length")
    assert table >= 2
    page.close()


def test_interactive_scene_draws_a_webgl_canvas(browser, plan_dir):
    page, errors, requests = _open(browser, plan_dir / "scene.html")
    page.wait_for_selector("canvas", timeout=20000)
    legend = page.evaluate("Array.from(document.querySelectorAll('.legendtext')).map(e => e.textContent)")
    assert errors == [] and requests == []
    assert "sacrum" in legend and any(t.startswith("needle 1:") for t in legend)
    page.close()


def test_card_page_of_five_long_axis_needles_prints_on_one_a4_page(browser, plan_dir, tmp_path):
    # The fullest card there is: a long-axis needle with its three notes, five times.
    import copy
    import json
    import re

    from trajplan.card_html import card_page

    plan = json.loads((plan_dir / "plan.json").read_text())
    fullest = max(plan["needles"] + plan["alternatives"],
                  key=lambda n: (len(n["card"]["notes"]), n["technique"] == "long_axis"))
    fullest["card"]["notes"] = [
        "the needle line leaves the CT before the body: the skin entry is its last point in the CT and the "
        "depths are minimums", "skin to tip is at least 161 mm: longer than any standard bone needle (10, 12.5, 15 cm)",
        "the view down the needle is 82 deg from posterior-anterior (over 45 deg): the C-arm may not reach it; "
        "the lateral view shows the needle along its length"]
    plan["needles"] = [dict(copy.deepcopy(fullest), rank=k) for k in range(1, 6)]
    path = tmp_path / "card.html"
    path.write_text(card_page(plan))
    page, errors, requests = _open(browser, path)
    assert errors == [] and requests == []
    assert page.evaluate("document.querySelectorAll('.card').length") == 5
    pdf = page.pdf(prefer_css_page_size=True)
    assert len(re.findall(rb"/Type\s*/Page[^s]", pdf)) == 1
    page.close()
