"""3D views and the interactive scene: needles drawn where they are, in their verdict colour."""

from __future__ import annotations

import numpy as np
import pytest
from matplotlib import image as mpimg

from trajplan import labels as lt
from trajplan.needle import Verdict
from trajplan.views.scene3d import build_scene, render_scene_png, world_to_pixel


@pytest.fixture(scope="module")
def case():
    from sample_ct.phantom import PhantomParams, make_phantom

    phantom = make_phantom(PhantomParams(seed=4, spacing=(2.5,) * 3, fracture="bilateral"))
    labels = phantom.labels
    needles = []
    for rank, (side, verdict) in enumerate((("left", "safe"), ("right", "unsafe")), start=1):
        centre = labels.index_to_world(np.argwhere(lt.mask(labels, f"ala_{side}")).mean(axis=0)[None])[0]
        needles.append({"rank": rank, "technique": "short_axis", "side": side, "gauge": 11, "diameter_mm": 3.05,
                        "verdict": verdict, "entry_lps": (centre + [0, 15, 0]).tolist(),
                        "tip_lps": (centre - [0, 10, 0]).tolist(), "skin_entry_lps": None})
    return labels, {"needles": needles}


def _dominant(rgb: np.ndarray, channel: int) -> bool:
    """The pixel's hue is that channel's (shading may darken it, not change it)."""
    others = np.delete(rgb, channel)
    return bool(rgb[channel] > 0.15 and rgb[channel] > 1.8 * others.max())


def _pixel(png: np.ndarray, rc: np.ndarray) -> np.ndarray:
    r, c = np.round(rc).astype(int)
    return png[r - 1:r + 2, c - 1:c + 2, :3].reshape(-1, 3).mean(axis=0)


@pytest.mark.parametrize("view", ["inlet", "outlet"])
def test_needles_appear_at_their_pixels_in_their_verdict_colour(case, tmp_path, view):
    labels, plan = case
    plotter = build_scene(labels, plan, view=view, size=(640, 480), surfaces={})
    mids = [(np.asarray(n["entry_lps"]) + np.asarray(n["tip_lps"])) / 2 for n in plan["needles"]]
    pixels = world_to_pixel(plotter, np.asarray(mids))
    path = tmp_path / "v.png"
    plotter.screenshot(str(path))
    plotter.close()
    png = mpimg.imread(path)
    assert png.shape[:2] == (480, 640)
    safe, unsafe = _pixel(png, pixels[0]), _pixel(png, pixels[1])
    assert _dominant(safe, 1), safe        # green
    assert _dominant(unsafe, 0), unsafe    # red
    background = _pixel(png, np.array([470, 630]))
    assert np.all(background > 0.95)


def test_posterior_view_puts_the_patients_left_needle_on_the_image_left(case, tmp_path):
    labels, plan = case
    path = render_scene_png(labels, plan, tmp_path / "posterior.png", size=(640, 480))
    png = mpimg.imread(path)[..., :3]
    assert png.shape[0] == 480 and png.shape[1] > 640         # the legend panel right of the picture
    png = png[:, :640]
    red = (png[..., 0] > 0.6) & (png[..., 1] < 0.3) & (png[..., 2] < 0.3)
    green = (png[..., 1] > png[..., 0] + 0.2) & (png[..., 1] > png[..., 2] + 0.2)
    assert red.sum() > 20 and green.sum() > 20
    # seen from behind, the patient's left is on the viewer's left
    assert np.argwhere(green)[:, 1].mean() < np.argwhere(red)[:, 1].mean()


def test_view_down_a_needle_is_centred_on_it(case, tmp_path):
    labels, plan = case
    plotter = build_scene(labels, plan, view="needle2", size=(400, 400), surfaces={})
    tip = world_to_pixel(plotter, np.asarray([plan["needles"][1]["tip_lps"]]))[0]
    plotter.close()
    assert np.allclose(tip, [200, 200], atol=3)
    with pytest.raises(ValueError, match="unknown view"):
        build_scene(labels, plan, view="needle9", surfaces={})


def test_interactive_scene_is_one_offline_file(case, tmp_path):
    from trajplan.views.scene_html import write_scene_html

    labels, plan = case
    path = write_scene_html(labels, plan, tmp_path / "scene.html")
    text = path.read_text()
    assert "<script src=" not in text           # plotly.js is embedded, nothing is fetched
    assert "needle 2: short axis right 11 G, unsafe" in text
    assert "foramina" in text and "canal" in text
    assert 'rgb(217,13,13)' in text             # the unsafe needle in the unsafe colour
    assert tuple(round(c, 2) for c in Verdict.UNSAFE.view_rgb) == (0.85, 0.05, 0.05)


def test_each_view_says_which_patient_side_is_on_the_image_left_and_right(case):
    from trajplan.views.scene3d import image_sides

    labels, plan = case
    expected = {"posterior": ("patient's left", "patient's right"), "inlet": ("patient's right", "patient's left"),
                "outlet": ("patient's right", "patient's left"), "lateral": ("anterior", "posterior")}
    for view, (left, right) in expected.items():
        plotter = build_scene(labels, plan, view=view, size=(320, 240), surfaces={})
        assert image_sides(plotter) == f"image left: {left}; image right: {right}", view
        plotter.close()


def test_the_legend_lists_surfaces_and_verdicts_beside_the_picture(case, tmp_path):
    from trajplan.views.scene3d import scene_legend
    from trajplan.views.surfaces import label_surfaces

    labels, plan = case
    surfaces = label_surfaces(labels)
    legend = dict(scene_legend(surfaces, plan["needles"]))
    assert {"sacral bone", "sacral canal", "foramina", "needle: safe", "needle: unsafe"} <= set(legend)
    assert "needle: marginal" not in legend
    png = mpimg.imread(render_scene_png(labels, plan, tmp_path / "inlet.png", view="inlet", size=(640, 480),
                                        surfaces=surfaces))[..., :3]
    panel = png[:, 640:]
    red = (panel[..., 0] > 0.75) & (panel[..., 1] < 0.2) & (panel[..., 2] < 0.2)
    assert red.any()                                          # the unsafe swatch is in the panel
