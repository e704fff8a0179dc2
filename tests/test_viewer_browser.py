"""``trajplan view`` in a real browser (headless Chromium via Playwright): the page loads the plan,
edits typed or dragged into the page are re-scored, a needle is placed by two clicks, the readout,
legend, opacity, scale bars, oblique plane and 3D view show what they should (read back from the
screen's pixels where it matters), saving writes a plan that ``trajplan render`` reads back.

Skipped, with the reason, only where no Chromium is installed (`make test` installs the Debian
package when it runs as root). Screenshots go to docs/viewer/ (shown in docs/viewer.md).
"""

from __future__ import annotations

import http.client
import json
import os
import shutil
import tempfile
import threading
from pathlib import Path

import numpy as np
import pytest
from conftest import recorded_page

from trajplan import labels as lt
from trajplan.cli import main
from trajplan.io.files import read_volume_file
from trajplan.viewer.server import ViewerServer
from trajplan.viewer.session import NeedleSpec, ViewerSession

CHROMIUM = next((p for p in map(shutil.which, ("chromium", "chromium-browser", "google-chrome")) if p), None)
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="no Chromium installed (apt-get install chromium)")
# The screenshots of docs/viewer.md, refreshed by `TRAJPLAN_DOC_SCREENSHOTS=1 make test`; an ordinary
# run keeps its screenshots out of the checkout.
SCREENSHOTS = (Path(__file__).resolve().parents[1] / "docs" / "viewer" if os.environ.get("TRAJPLAN_DOC_SCREENSHOTS")
               else Path(tempfile.gettempdir()) / "trajplan_viewer_screenshots")


@pytest.fixture(scope="module")
def plan_dir(truth_plan_dir):
    """The served plan folder (conftest's ``truth_plan_dir``)."""
    return truth_plan_dir


def serve(plan_dir: Path) -> ViewerServer:
    server = ViewerServer(ViewerSession(plan_dir))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


@pytest.fixture(scope="module")
def server(plan_dir):
    server = serve(plan_dir)
    yield server
    server.shutdown()
    server.server_close()


def open_viewer(browser, server):
    """The page loaded up to its first picture; console errors and requests recorded."""
    page, errors, requests = recorded_page(browser, 1500)
    page.goto(server.url)
    page.wait_for_selector("body[data-ready='1']", timeout=60000)
    return page, errors, requests


def canal_point(labels) -> list[float]:
    """A canal voxel centre near the middle of the canal (LPS mm)."""
    world = labels.index_to_world(np.argwhere(lt.mask(labels, "canal")))
    return world[np.argmin(np.linalg.norm(world - np.median(world, axis=0), axis=1))].tolist()


def type_point(page, row: int, field: str, point) -> None:
    """Type an LPS point into a needle's entry or tip fields, waiting for each re-scoring."""
    for axis, value in enumerate(point):
        box = page.locator(f"tr[data-needle='{row}'] td.{field} input[data-axis='{axis}']")
        box.fill(f"{value:g}")
        box.press("Enter")
        page.wait_for_selector("#needles tr.scoring", state="detached", timeout=30000)


def row_of(page, row: int) -> dict:
    locator = page.locator(f"tr[data-needle='{row}']")
    return {"class": locator.get_attribute("class"), "verdict": locator.locator("td.verdict").inner_text(),
            "reasons": locator.locator("td.reasons").inner_text(), "source": locator.locator("td.source").inner_text()}


def test_the_page_shows_the_plan_without_errors_or_outside_requests(browser, server, plan_dir):
    page, errors, requests = open_viewer(browser, server)
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / "viewer.png"))
    assert errors == []
    assert requests and all(url.startswith(f"http://127.0.0.1:{server.port}/") for url in requests)
    assert page.evaluate("document.getElementById('gl').width") > 300
    plan = json.loads((plan_dir / "plan.json").read_text())
    assert page.locator("#needles tbody tr").count() == len(plan["needles"]) >= 2
    for k, needle in enumerate(plan["needles"]):
        row = row_of(page, k)
        assert row["verdict"] == needle["verdict"] and row["source"] == "planned"
        for field in ("entry", "tip"):
            shown = [float(page.locator(f"tr[data-needle='{k}'] td.{field} input[data-axis='{a}']").input_value())
                     for a in range(3)]
            assert shown == needle[f"{field}_lps"]
        breach = page.locator(f"tr[data-needle='{k}'] td.breach").inner_text()
        assert float(breach) == pytest.approx(needle["breach_probability"]["any"], abs=5e-4)
    assert page.evaluate("[nv.volumes[0].cal_min, nv.volumes[0].cal_max]") == [-600, 1400]
    page.click("[data-window='soft']")
    assert page.evaluate("[nv.volumes[0].cal_min, nv.volumes[0].cal_max]") == [-160, 240]
    assert errors == []
    page.close()


def test_a_tip_moved_into_the_canal_is_unsafe_and_safe_again_when_moved_back(browser, server):
    page, errors, _ = open_viewer(browser, server)
    planned = server.session.needles()[0]
    type_point(page, 0, "tip", canal_point(server.session.labels))
    row = row_of(page, 0)
    assert "unsafe" in row["class"] and row["verdict"] == "unsafe" and row["source"] == "edited"
    assert "canal" in row["reasons"].split(", ")
    assert page.locator("tr[data-needle='0'] span.below[data-structure='canal']").count() == 1
    page.screenshot(path=str(SCREENSHOTS / "tip_in_canal.png"))
    type_point(page, 0, "tip", planned["tip_lps"])
    row = row_of(page, 0)
    assert row["verdict"] in ("safe", "marginal") and row["reasons"] == ""
    assert errors == []
    page.close()


def test_a_needle_end_dragged_in_a_view_follows_the_mouse_in_that_plane_and_is_rescored(browser, server):
    page, errors, _ = open_viewer(browser, server)
    tip = server.session.needles()[0]["tip_lps"]
    x, y = page.evaluate("""(tip) => {
        const hit = nv.frac2canvasPosWithTile(nv.mm2frac([-tip[0], -tip[1], tip[2]]), 1);  // coronal view
        const canvas = document.getElementById('gl'), box = canvas.getBoundingClientRect();
        const scale = box.width / canvas.width;
        return [box.left + hit.pos[0] * scale, box.top + hit.pos[1] * scale];
    }""", tip)
    page.mouse.move(x, y)
    page.mouse.down()
    for step in range(1, 9):
        page.mouse.move(x + 4 * step, y + 2 * step)
    page.mouse.up()
    page.wait_for_selector("#needles tr.scoring", state="detached", timeout=30000)
    moved = [float(page.locator(f"tr[data-needle='0'] td.tip input[data-axis='{a}']").input_value()) for a in range(3)]
    assert moved[1] == tip[1]                      # the coronal view's depth (y) is kept
    assert moved[0] > tip[0] + 5 and moved[2] < tip[2] - 2   # right on the screen = patient left (+x); down = -z
    row = row_of(page, 0)
    assert row["source"] == "edited"
    expected = server.session.evaluate(NeedleSpec.from_json({**server.session.needles()[0], "tip_lps": moved}))
    assert row["verdict"] == expected["verdict"] and row["reasons"] == ", ".join(expected["reasons"])
    page.screenshot(path=str(SCREENSHOTS / "dragged_tip.png"))
    page.click("#undo")
    assert [float(page.locator(f"tr[data-needle='0'] td.tip input[data-axis='{a}']").input_value())
            for a in range(3)] == tip
    assert errors == []
    page.close()


def canvas_point(page, lps, tile: int) -> tuple[float, float]:
    """Where an LPS point is drawn in a tile (0 axial, 1 coronal, 2 sagittal), in page pixels."""
    return tuple(page.evaluate("""([p, tile]) => {
        const hit = nv.frac2canvasPosWithTile(nv.mm2frac([-p[0], -p[1], p[2]]), tile);
        const canvas = document.getElementById('gl'), box = canvas.getBoundingClientRect();
        const scale = box.width / canvas.width;
        return [box.left + hit.pos[0] * scale, box.top + hit.pos[1] * scale];
    }""", [list(lps), tile]))


def test_the_readout_shows_lps_hu_and_structure_and_each_2d_view_a_scale_bar(browser, server, plan_dir):
    page, errors, _ = open_viewer(browser, server)
    canal = canal_point(server.session.labels)
    page.evaluate("(p) => centreOn(p)", canal)
    readout = page.locator("#cursor")
    assert readout.get_attribute("data-source") == "crosshair" and readout.get_attribute("data-label") == "canal"
    assert json.loads(readout.get_attribute("data-lps")) == pytest.approx(canal, abs=0.051)
    ct = read_volume_file(plan_dir / "ct_roi.nii.gz")
    voxel = tuple(np.rint(ct.world_to_index(np.array([canal]))[0]).astype(int))
    assert int(readout.get_attribute("data-hu")) == round(float(ct.array[voxel]))
    assert f"{round(float(ct.array[voxel]))} HU" in readout.inner_text() and "canal" in readout.inner_text()
    tip = server.session.needles()[0]["tip_lps"]
    page.evaluate("(p) => centreOn(p)", tip)
    page.mouse.move(*canvas_point(page, [tip[0] + 6, tip[1], tip[2]], 0))      # hovering over the axial view
    assert readout.get_attribute("data-source") == "mouse"
    shown = json.loads(readout.get_attribute("data-lps"))
    assert shown[0] == pytest.approx(tip[0] + 6, abs=2.5) and shown[1] == pytest.approx(tip[1], abs=2.5)
    labels = server.session.labels
    value = int(labels.array[tuple(np.rint(labels.world_to_index(np.array([shown]))[0]).astype(int))])
    assert readout.get_attribute("data-label") == (lt.name(value) if value else "background")
    # a scale bar in each 2D view, orientation letters on all four sides
    assert page.evaluate("[nv.opts.showAllOrientationMarkers, nv.opts.isOrientationTextVisible]") == [True, True]
    bars = json.loads(page.locator("#scale-bars").get_attribute("data-bars"))
    assert sorted(b["axCorSag"] for b in bars) == [0, 1, 2]
    scale = page.evaluate("() => { const c = document.getElementById('gl'); "
                          "return c.width / c.getBoundingClientRect().width; }")
    box = page.locator("#gl").bounding_box()
    for bar, shift in zip(sorted(bars, key=lambda b: b["axCorSag"]), ([50, 0, 0], [50, 0, 0], [0, 50, 0])):
        ends = [canvas_point(page, np.add(tip, sign * np.array(shift)).tolist(), bar["axCorSag"]) for sign in (-1, 1)]
        mm_per_px = 100 / (abs(ends[1][0] - ends[0][0]) * scale)             # 100 mm apart across the view
        assert bar["px"] * mm_per_px == pytest.approx(bar["mm"], rel=0.02)
        where = (box["x"] + (bar["x"] + bar["px"] / 2) / scale, box["y"] + (bar["y"] + 1) / scale)
        assert pixel(page, where).min() >= 200                              # the white bar itself
    page.screenshot(path=str(SCREENSHOTS / "scale_bars.png"))
    assert errors == []
    page.close()


def pixel(page, xy) -> np.ndarray:
    """The screen's RGB at a page point (a screenshot of the 1 x 1 pixel there)."""
    import io

    from PIL import Image

    png = page.screenshot(clip={"x": round(xy[0]), "y": round(xy[1]), "width": 1, "height": 1})
    return np.asarray(Image.open(io.BytesIO(png)).convert("RGB"), dtype=int)[0, 0]


@pytest.mark.slow   # 3D surfaces in software WebGL
def test_the_legend_hides_structures_the_slider_fades_them_and_the_3d_view_shows_surfaces_and_needles(browser, server):
    page, errors, _ = open_viewer(browser, server)
    present = [lt.name(v) for v in np.unique(server.session.labels.array) if v]
    entries = page.locator("#legend input[data-label]")
    assert [entries.nth(k).get_attribute("data-label") for k in range(entries.count())] == present
    swatch = page.locator("#legend label:has(input[data-label='canal']) .swatch").evaluate(
        "(s) => getComputedStyle(s).backgroundColor")
    assert swatch == "rgb(%d, %d, %d)" % lt.color("canal")
    canal = canal_point(server.session.labels)
    page.evaluate("(p) => centreOn(p)", canal)
    where = np.add(canvas_point(page, canal, 0), 2)          # beside the crosshair lines
    page.mouse.move(5, 5)
    page.locator("#label-opacity").fill("1")
    page.wait_for_timeout(150)
    assert np.abs(pixel(page, where) - lt.color("canal")).max() <= 12          # opaque: the canal's own colour
    page.locator("#legend input[data-label='canal']").uncheck()
    page.wait_for_timeout(150)
    shown = pixel(page, where)
    assert np.ptp(shown) <= 6                                                 # hidden: the grey CT only
    page.locator("#legend input[data-label='canal']").check()
    page.locator("#label-opacity").fill("0")
    page.wait_for_timeout(150)
    assert np.abs(pixel(page, where) - shown).max() <= 6                      # transparent: the CT again
    page.locator("#label-opacity").fill("0.35")
    # the 3D view: label surfaces and needles, turned with the mouse
    from trajplan.views.surfaces import SURFACE_GROUPS

    groups = [name for name, members, _, _ in SURFACE_GROUPS if lt.mask(server.session.labels, *members).any()]
    needles = [f"needles {v}" for v in ("safe", "marginal", "unsafe")]
    assert page.evaluate("nv.meshes.map((m) => m.name)") == needles + groups
    box = tile_box(page, 4)                                                  # the render tile
    assert box["width"] > 200
    page.mouse.move(5, 5)
    shown = lit_pixels(page, box)
    page.locator("#surfaces-3d").uncheck()
    needles_only = lit_pixels(page, box)
    assert 0 < needles_only < shown / 2                                       # the needles stay, the surfaces go
    page.locator("#surfaces-3d").check()
    azimuth = page.evaluate("nv.scene.renderAzimuth")
    page.mouse.move(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
    page.mouse.down()
    for step in range(1, 6):
        page.mouse.move(box["x"] + box["width"] / 2 + 12 * step, box["y"] + box["height"] / 2)
    page.mouse.up()
    assert page.evaluate("nv.scene.renderAzimuth") != azimuth
    page.click("tr[data-needle='1'] td.verdict")                              # a row selects its needle in 3D too
    sizes = page.evaluate("nv.meshes.slice(0, 3).flatMap((m) => m.nodes).map((n) => [n.name, n.sizeValue])")
    assert {name for name, size in sizes if size == 1.0} == {"2 entry", "2 tip"}
    page.screenshot(path=str(SCREENSHOTS / "view_3d.png"))
    assert errors == []
    page.close()


def oblique_point(page, px) -> tuple[float, float]:
    """Where a pixel of the oblique plane's image is drawn, in page pixels."""
    return tuple(page.evaluate("""(px) => {
        const c = document.getElementById('oblique-canvas'), box = c.getBoundingClientRect(), d = c.dataset;
        const k = box.width / c.width;
        return [box.left + (Number(d.left) + (px[0] + 0.5) * Number(d.scale)) * k,
                box.top + (Number(d.top) + (px[1] + 0.5) * Number(d.scale)) * k];
    }""", list(px)))


def test_the_selected_needle_oblique_plane_follows_its_technique_and_its_edits(browser, server):
    page, errors, _ = open_viewer(browser, server)
    figure = page.locator("#oblique")
    page.click("tr[data-needle='1'] td.verdict")
    page.wait_for_selector("#oblique[data-needle='1']", timeout=30000)
    needle = server.session.needles()[1]
    assert figure.get_attribute("data-technique") == needle["technique"] == "long_axis"
    assert json.loads(figure.get_attribute("data-letters"))["top"] == "S"
    assert "long axis" in page.locator("#oblique-caption").inner_text()
    bar = page.locator("#oblique-canvas")
    answer = page.evaluate("state.oblique")
    mm_per_px = answer["pixel_mm"] / float(bar.get_attribute("data-scale"))
    assert float(bar.get_attribute("data-bar-px")) * mm_per_px == pytest.approx(float(bar.get_attribute("data-bar-mm")),
                                                                               rel=0.01)
    middle = np.mean([answer["entry_px"], answer["tip_px"]], axis=0)
    assert np.abs(pixel(page, oblique_point(page, middle)) - (51, 191, 77)).max() <= 12   # the safe needle, green
    version = int(figure.get_attribute("data-version"))
    page.locator("tr[data-needle='1'] td select").first.select_option("short_axis")
    page.wait_for_selector("#needles tr.scoring", state="detached", timeout=30000)
    page.wait_for_selector("#oblique[data-technique='short_axis']", timeout=30000)
    assert int(figure.get_attribute("data-version")) > version
    assert figure.get_attribute("data-technique") == "short_axis"
    assert json.loads(figure.get_attribute("data-letters"))["left"] == "R"
    assert "tilted" in page.locator("#oblique-caption").inner_text()
    page.screenshot(path=str(SCREENSHOTS / "oblique.png"))
    assert errors == []
    page.close()


def tile_box(page, ax_cor_sag: int) -> dict:
    """A NiiVue tile's box in page pixels."""
    return page.evaluate("""(kind) => {
        const tile = nv.screenSlices.find((s) => s.axCorSag === kind), [l, t, w, h] = tile.leftTopWidthHeight;
        const canvas = document.getElementById('gl'), box = canvas.getBoundingClientRect();
        const k = box.width / canvas.width;
        return { x: box.left + l * k, y: box.top + t * k, width: w * k, height: h * k };
    }""", ax_cor_sag)


def lit_pixels(page, box) -> int:
    import io

    from PIL import Image

    png = page.screenshot(clip=box)
    return int((np.asarray(Image.open(io.BytesIO(png)).convert("RGB"), dtype=int).max(axis=2) > 40).sum())


def test_the_ct_shows_first_then_the_labels_and_the_3d_surfaces_and_the_boxes_hide_and_add_layers(browser, server):
    page, errors, _ = open_viewer(browser, server)
    steps = json.loads(page.locator("body").get_attribute("data-timings"))
    order = ["plan", "NiiVue ready", "CT read", "first picture", "labels", "3D surfaces", "ready"]
    assert [steps[s] for s in order] == sorted(steps[s] for s in order)
    assert float(page.locator("body").get_attribute("data-picture")) > 0.2       # the CT lit the axial view
    canal = canal_point(server.session.labels)
    page.evaluate("(p) => centreOn(p)", canal)
    where = np.add(canvas_point(page, canal, 0), 2)
    page.mouse.move(5, 5)
    page.locator("#label-opacity").fill("1")
    page.wait_for_timeout(150)
    assert np.abs(pixel(page, where) - lt.color("canal")).max() <= 12
    page.locator("#show-labels").uncheck()                                    # the labels box: the CT alone
    page.wait_for_timeout(150)
    assert np.ptp(pixel(page, where)) <= 6
    page.locator("#show-labels").check()
    page.wait_for_timeout(150)
    assert np.abs(pixel(page, where) - lt.color("canal")).max() <= 12
    axial = tile_box(page, 0)
    bone_window = lit_pixels(page, axial)
    page.click("[data-window='soft']")                                       # the CT alone is refreshed
    page.wait_for_timeout(150)
    assert abs(lit_pixels(page, axial) - bone_window) > 0.05 * bone_window     # fat dark, muscle lighter
    assert np.abs(pixel(page, where) - lt.color("canal")).max() <= 12           # the labels still over it
    page.click("[data-window='bone']")
    box = tile_box(page, 4)
    surfaces = lit_pixels(page, box)
    page.locator("#ct-3d").check()                                            # the CT's volume rendering added
    page.wait_for_timeout(150)
    assert lit_pixels(page, box) > 1.2 * surfaces
    assert page.evaluate("[nv.volumes[0].cal_min, nv.volumes[0].cal_max]") == [-600, 1400]
    assert errors == []
    page.close()


def test_a_needle_is_placed_by_clicking_its_entry_then_its_tip_with_the_chosen_technique_and_gauge(browser, server):
    page, errors, _ = open_viewer(browser, server)
    tip = server.session.needles()[0]["tip_lps"]
    page.evaluate("(p) => centreOn(p)", tip)
    page.select_option("#new-technique", "short_axis")
    page.select_option("#new-gauge", "13")
    page.click("#place")
    entry_at = canvas_point(page, [tip[0], tip[1] + 40, tip[2]], 0)          # 40 mm posterior, axial view
    tip_at = canvas_point(page, tip, 0)
    page.mouse.click(*entry_at)
    assert "click the tip" in page.locator("#status").inner_text()
    page.mouse.click(*tip_at)
    page.wait_for_selector("tr[data-needle='2']", timeout=30000)
    def read(field):
        return [float(page.locator(f"tr[data-needle='2'] td.{field} input[data-axis='{a}']").input_value())
                for a in range(3)]
    entry, placed_tip = read("entry"), read("tip")
    assert entry == pytest.approx([tip[0], tip[1] + 40, tip[2]], abs=2.1)
    assert placed_tip == pytest.approx(tip, abs=2.1)
    assert page.locator("tr[data-needle='2'] td select").nth(0).input_value() == "short_axis"
    assert page.locator("tr[data-needle='2'] td select").nth(1).input_value() == "13"
    expected = server.session.evaluate(NeedleSpec.from_json(
        {"entry_lps": entry, "tip_lps": placed_tip, "technique": "short_axis", "gauge": 13}))
    row = row_of(page, 2)
    assert row["verdict"] == expected["verdict"] and row["source"] == "edited"
    assert page.locator("tr[data-needle='2']").get_attribute("class").split()[-1] == "selected"
    page.click("#undo")
    assert page.locator("#needles tbody tr").count() == 2
    assert errors == []
    page.close()


@pytest.mark.slow   # renders the report of the saved plan
def test_saving_writes_a_plan_that_render_reads_back(browser, plan_dir, tmp_path):
    work = tmp_path / "plan"
    shutil.copytree(plan_dir, work)
    server = serve(work)
    try:
        page, errors, _ = open_viewer(browser, server)
        moved_tip = canal_point(server.session.labels)
        type_point(page, 1, "tip", moved_tip)
        page.click("#save")
        page.wait_for_selector("body[data-saved='1']", timeout=30000)
        status = page.locator("#status").inner_text()
        assert status.startswith("saved") and all(name in status for name in ("plan.csv", "plan.json", "plan.mrk.json"))
        assert errors == []
        page.close()
    finally:
        server.shutdown()
        server.server_close()
    plan = json.loads((work / "plan.json").read_text())
    assert [n["source"] for n in plan["needles"]] == ["planned", "edited"]
    assert plan["needles"][1]["verdict"] == "unsafe" and "canal" in plan["needles"][1]["reasons"]
    assert (work / "plan.orig.json").read_text() == (plan_dir / "plan.json").read_text()
    markups = [m for m in json.loads((work / "plan.mrk.json").read_text())["markups"] if m["type"] == "Line"]
    assert [m["controlPoints"][1]["position"] for m in markups] == [n["tip_lps"] for n in plan["needles"]]
    assert main(["-q", "render", str(work)]) == 0
    assert (work / "report.html").is_file()


def test_requests_without_the_token_or_out_of_the_folder_are_refused(browser, server):
    context = browser.new_context()         # no cookie: the token is not known here
    assert context.request.get(f"http://127.0.0.1:{server.port}/api/plan").status == 403
    assert context.request.get(f"http://127.0.0.1:{server.port}/").status == 403
    context.close()
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
    conn.request("GET", "/files/../../etc/passwd",
                 headers={"Host": f"127.0.0.1:{server.port}", "X-Trajplan-Token": server.token})
    response = conn.getresponse()
    assert response.status in (403, 404) and b"root:" not in response.read()
    conn.close()
