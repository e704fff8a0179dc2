"""CT slices along the needles and simulated fluoroscopy: geometry, needle pixels and colours."""

from __future__ import annotations

import numpy as np
import pytest
from matplotlib import image as mpimg

from trajplan import labels as lt
from trajplan.needle import Verdict
from trajplan.views import fluoro, slices
from trajplan.volume import Volume


@pytest.fixture(scope="module")
def case():
    from sample_ct.phantom import PhantomParams, make_phantom

    phantom = make_phantom(PhantomParams(seed=4, spacing=(2.0,) * 3, fracture="bilateral"))
    labels = phantom.labels
    needles = []
    for rank, (side, verdict, slope) in enumerate((("left", "safe", 0.3), ("right", "unsafe", -0.6)), start=1):
        centre = labels.index_to_world(np.argwhere(lt.mask(labels, f"ala_{side}")).mean(axis=0)[None])[0]
        needles.append({"rank": rank, "technique": "short_axis", "side": side, "gauge": 11, "diameter_mm": 3.05,
                        "verdict": verdict, "entry_lps": (centre + [0, 15, 15 * slope]).tolist(),
                        "tip_lps": (centre - [0, 10, 10 * slope]).tolist(), "skin_entry_lps": None})
    return phantom.ct, labels, {"needles": needles}


def _colour(png: np.ndarray, row: float, col: float) -> np.ndarray:
    r, c = int(round(row)), int(round(col))
    return np.round(png[r, c, :3] * 255)


def _verdict_rgb(verdict: str) -> np.ndarray:
    return np.round(np.asarray(Verdict(verdict).view_rgb) * 255)


def test_needle_plane_holds_the_whole_needle_and_its_tilt(case):
    _, _, plan = case
    needle = plan["needles"][1]
    plane = slices.needle_plane(needle)
    normal = np.cross(plane.col_dir, plane.row_dir)
    for key in ("entry_lps", "tip_lps"):
        point = np.asarray(needle[key])
        assert abs((point - plane.centre) @ normal) < 1e-9
        row, col = plane.to_pixel(point)[0]
        assert 0 <= row < plane.shape[0] and 0 <= col < plane.shape[1]
    axis = np.asarray(needle["tip_lps"]) - np.asarray(needle["entry_lps"])
    expected_tilt = np.degrees(np.arctan(abs(axis[2]) / abs(axis[1])))       # axis has no x component
    assert plane.tilt_from_axial_deg == pytest.approx(expected_tilt, abs=0.01)
    assert plane.col_dir[0] == 1.0           # columns run to the patient's left: right on the image left


def test_slices_show_each_needle_in_its_verdict_colour_at_its_pixels(case, tmp_path):
    ct, labels, plan = case
    written = slices.render_needle_slices(ct, labels, plan, tmp_path)
    assert len(written) == 8
    for needle in plan["needles"]:
        planes = slices.needle_slices(needle)
        png = mpimg.imread(tmp_path / "slices" / f"needle{needle['rank']}_plane.png")
        plane = planes[f"needle{needle['rank']}_plane"][0]
        assert png.shape[0] == plane.shape[0] and png.shape[1] > plane.shape[1]   # the legend panel at the right
        assert np.all(png[:, plane.shape[1] + 2:-2, :3].mean(axis=(0, 1)) > 0.8)  # a mostly white panel
        entry, tip = np.asarray(needle["entry_lps"]), np.asarray(needle["tip_lps"])
        for t in (0.25, 0.5, 0.75):
            assert np.array_equal(_colour(png, *plane.to_pixel(entry + t * (tip - entry))[0]),
                                  _verdict_rgb(needle["verdict"]))
        tip_png = mpimg.imread(tmp_path / "slices" / f"needle{needle['rank']}_axial_tip.png")
        tip_plane = planes[f"needle{needle['rank']}_axial_tip"][0]
        assert np.array_equal(_colour(tip_png, *tip_plane.to_pixel(tip)[0]), _verdict_rgb(needle["verdict"]))
        # the cross-section is about the needle's size: an ellipse, not the whole needle
        area_mm2 = slices.needle_mask(tip_plane, needle).sum() * tip_plane.pixel_mm ** 2
        assert 0.2 * np.pi * 1.525 ** 2 < area_mm2 < 4 * np.pi * 1.525 ** 2


def test_slices_outline_the_canal_where_it_is(case):
    ct, labels, plan = case
    canal = np.argwhere(lt.mask(labels, "canal"))
    point = labels.index_to_world(canal.mean(axis=0)[None])[0]
    plane = slices.axial_plane(point)
    rgb, legend = slices.slice_picture(ct, labels, plane, [], window="bone")
    assert "canal" in [name for name, _ in legend]
    outline_px = np.argwhere(np.all(rgb == lt.color("canal"), axis=2))
    assert len(outline_px) > 20
    world = plane.points()[outline_px[:, 0], outline_px[:, 1]]
    lo, hi = labels.world_to_index(world).min(axis=0), labels.world_to_index(world).max(axis=0)
    box = canal[canal[:, 2] == round(labels.world_to_index(point[None])[0, 2])]
    assert np.all(lo >= box.min(axis=0) - 1.5) and np.all(hi[:2] <= box.max(axis=0)[:2] + 1.5)


def test_soft_tissue_window_shows_muscle_grey_where_the_bone_window_shows_it_dark(case):
    ct, labels, _ = case
    hu = ct.array
    soft = np.argwhere((hu > 20) & (hu < 60))
    point = ct.index_to_world(soft[len(soft) // 2][None])[0]
    plane = slices.axial_plane(point)
    centre = np.array(plane.shape) // 2
    bone = slices.slice_picture(ct, labels, plane, [], window="bone")[0][tuple(centre)]
    soft_grey = slices.slice_picture(ct, labels, plane, [], window="soft")[0][tuple(centre)]
    assert 100 < soft_grey[0] < 160 and bone[0] < 100


def test_drr_line_integral_is_attenuation_times_path_length():
    water = np.full((60, 60, 60), -1000.0, np.float32)
    water[10:50, 10:50, 10:50] = 0.0                       # a 40 mm cube of water at 1 mm
    ct = Volume(water, (1.0, 1.0, 1.0), origin=(-30.0, -30.0, -30.0))
    for projection, path_mm in (("ap", 40.0), ("lateral", 40.0), ("inlet", 40.0 / np.cos(np.deg2rad(40)))):
        line, detector = fluoro.drr(fluoro.attenuation(ct), projection)
        row, col = detector.to_pixel(np.zeros((1, 3)))[0]
        centre = line[int(round(row)), int(round(col))]
        assert centre == pytest.approx(fluoro.MU_WATER_PER_MM * path_mm, rel=0.04), projection
        assert line[0, 0] == pytest.approx(0.0, abs=1e-6)   # air


def test_fluoroscopy_projects_needles_in_their_colours_on_the_correct_side(case, tmp_path):
    ct, labels, plan = case
    written = fluoro.render_fluoro(ct, plan, tmp_path)
    assert sorted(p.name for p in written.values()) == ["ap.png", "inlet.png", "lateral.png", "outlet.png"]
    for projection in ("ap", "outlet"):
        png = mpimg.imread(tmp_path / "fluoro" / f"{projection}.png")
        line, detector = fluoro.drr(fluoro.attenuation(ct), projection)
        assert png.shape[:2] == line.shape
        mids = {}
        for needle in plan["needles"]:
            mid = (np.asarray(needle["entry_lps"]) + np.asarray(needle["tip_lps"])) / 2
            mids[needle["side"]] = detector.to_pixel(mid[None])[0]
            assert np.array_equal(_colour(png, *mids[needle["side"]]), _verdict_rgb(needle["verdict"]))
        assert mids["left"][1] > mids["right"][1]           # patient's left on the image right, as on a C-arm AP
    # bone is darker than soft tissue beside it (transmission display)
    png = mpimg.imread(tmp_path / "fluoro" / "lateral.png")[..., 0]
    line, detector = fluoro.drr(fluoro.attenuation(ct), "lateral")
    beside = (line > 0.5 * line.max()) & (line < np.percentile(line, 60))
    assert png[line > np.percentile(line, 99)].mean() < png[beside].mean()


def test_view_down_a_fluoroscopy_needle_shows_it_end_on_at_its_card_angles(case, tmp_path):
    from trajplan.card import c_arm_angles

    ct, labels, _ = case
    centre = labels.index_to_world(np.argwhere(lt.mask(labels, "ala_left")).mean(axis=0)[None])[0]
    entry, tip = centre + [5.0, 20.0, -45.0], centre + [-3.0, -5.0, 25.0]      # from low and behind, cephalad
    direction = (tip - entry) / np.linalg.norm(tip - entry)
    needle = {"rank": 1, "technique": "long_axis", "side": "left", "gauge": 11, "diameter_mm": 3.05,
              "verdict": "safe", "entry_lps": entry.tolist(), "tip_lps": tip.tolist(), "skin_entry_lps": None,
              "card": {"guidance": "fluoroscopy", "c_arm": c_arm_angles(direction)}}
    written = fluoro.render_fluoro(ct, {"needles": [needle]}, tmp_path)
    caption = next(c for c in written if "down needle 1" in c)
    assert written[caption].name == "needle1_down.png"
    arm = needle["card"]["c_arm"]
    assert f"{arm['cranial_caudal_deg']:+.1f} deg cranial" in caption and arm["cranial_caudal_deg"] < -60
    line, detector = fluoro.drr(fluoro.attenuation(ct), fluoro.down_the_needle(needle))
    ends = detector.to_pixel(np.array([entry, tip]))
    assert np.linalg.norm(ends[0] - ends[1]) * detector.pixel_mm < 0.01      # the needle is a dot, 75 mm long
    png = mpimg.imread(written[caption])
    assert np.array_equal(_colour(png, *ends[0]), _verdict_rgb("safe"))
    ap_ends = fluoro.drr(fluoro.attenuation(ct), "ap")[1].to_pixel(np.array([entry, tip]))
    assert np.linalg.norm(ap_ends[0] - ap_ends[1]) * detector.pixel_mm > 60   # and a long line in the AP view


def test_axial_slices_of_a_needle_in_one_axial_plane_differ():
    flat = {"rank": 1, "technique": "short_axis", "side": "left", "gauge": 11, "diameter_mm": 3.05,
            "verdict": "safe", "entry_lps": [40.0, 30.0, 10.0], "tip_lps": [30.0, -5.0, 11.0]}
    planes = slices.needle_slices(flat)
    z = {where: planes[f"needle1_axial_{where}"][0].centre[2] for where in ("entry", "mid", "tip")}
    assert z["mid"] == pytest.approx(10.5, abs=0.01)
    assert z["entry"] == pytest.approx(5.5, abs=0.01) and z["tip"] == pytest.approx(15.5, abs=0.01)
    assert "axial at the entry side, 5 mm below the needle's middle" in planes["needle1_axial_entry"][1]
    steep = dict(flat, tip_lps=[30.0, -5.0, 40.0])
    planes = slices.needle_slices(steep)
    assert planes["needle1_axial_tip"][0].centre[2] == pytest.approx(40.0, abs=0.01)
