"""The phantom: deterministic, anatomically consistent ground truth, same anatomy prone or supine."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pydicom
import pytest
import SimpleITK as sitk
from scipy import ndimage

from sample_ct.phantom import PhantomParams, make_phantom, write_phantom
from trajplan import labels as lt
from trajplan.errors import InputError

SPACING = (2.0, 2.0, 2.0)


@pytest.fixture(scope="module")
def bilateral():
    return make_phantom(PhantomParams(seed=3, spacing=SPACING, fracture="bilateral", lesion="left"))


def test_same_seed_same_phantom_other_seed_other_anatomy():
    a = make_phantom(PhantomParams(seed=5, spacing=(2.5,) * 3))
    b = make_phantom(PhantomParams(seed=5, spacing=(2.5,) * 3))
    c = make_phantom(PhantomParams(seed=6, spacing=(2.5,) * 3))
    assert np.array_equal(a.ct.array, b.ct.array) and np.array_equal(a.labels.array, b.labels.array)
    assert a.info == b.info
    assert not np.array_equal(a.labels.array, c.labels.array)


def test_every_structure_is_present(bilateral):
    present = set(lt.present(bilateral.labels))
    expected = {"sacrum", "ala_left", "ala_right", "anterior_cortex", "canal", *lt.FORAMINA,
                "si_joint_left", "si_joint_right", "ilium_left", "ilium_right", "L5", "L5_S1_disc",
                "coccyx", "fracture", "lesion", "presacral_vessels"}
    assert expected <= present, expected - present
    plain = make_phantom(PhantomParams(seed=3, spacing=SPACING))
    assert not {"fracture", "lesion"} & set(lt.present(plain.labels))


def test_lumens_lie_within_the_sacral_bone(bilateral):
    bone = lt.sacral_bone(bilateral.labels)
    lo, hi = np.argwhere(bone).min(axis=0), np.argwhere(bone).max(axis=0)
    for name in ("canal", *lt.FORAMINA):
        idx = np.argwhere(lt.mask(bilateral.labels, name))
        assert np.all(idx.min(axis=0) >= lo) and np.all(idx.max(axis=0) <= hi), name


def test_each_foramen_connects_the_canal_to_the_pelvic_surface(bilateral):
    lab = bilateral.labels.array
    canal = lab == lt.value("canal")
    canal_y = bilateral.labels.index_to_world(np.argwhere(canal)).mean(axis=0)[1]
    for name in lt.FORAMINA:
        foramen = lab == lt.value(name)
        touching = ndimage.binary_dilation(foramen) & ~foramen
        assert (touching & canal).any(), f"{name} does not reach the canal"
        outside = touching & (lab == 0)
        assert outside.any(), f"{name} does not open onto soft tissue"
        opening_y = bilateral.labels.index_to_world(np.argwhere(outside))[:, 1]
        assert opening_y.min() < canal_y - 10.0, f"{name} does not open anteriorly (LPS y)"


def test_canal_is_continuous_from_s1_to_s4(bilateral):
    canal = lt.mask(bilateral.labels, "canal")
    components, count = ndimage.label(canal)
    assert count == 1
    z_canal = bilateral.labels.index_to_world(np.argwhere(canal))[:, 2]
    for level in ("S1", "S4"):
        z = bilateral.labels.index_to_world(
            np.argwhere(lt.mask(bilateral.labels, f"foramen_{level}_left")))[:, 2].mean()
        assert z_canal.min() < z < z_canal.max(), level


def test_fracture_lies_in_the_ala_of_its_side():
    ph = make_phantom(PhantomParams(seed=4, spacing=SPACING, fracture="right"))
    fracture = lt.mask(ph.labels, "fracture")
    x = ph.labels.index_to_world(np.argwhere(fracture))[:, 0]
    assert np.all(x < 0)  # LPS: patient right is -x
    around = ndimage.binary_dilation(fracture, iterations=2) & ~fracture
    neighbours = ph.labels.array[around]
    bone_neighbours = neighbours[np.isin(neighbours, [lt.value(n) for n in lt.SACRAL_BONE])]
    share = np.mean(np.isin(bone_neighbours, [lt.value("ala_right"), lt.value("anterior_cortex")]))
    assert share > 0.9
    line = ph.info["fracture_lines"][0]
    assert line["side"] == "right" and len(line["points_lps"]) >= 2


def test_hounsfield_units_follow_tissue_and_osteoporosis():
    def trabecular_and_cortex(osteoporosis):
        ph = make_phantom(PhantomParams(seed=2, spacing=SPACING, osteoporosis=osteoporosis, noise_hu=0))
        bone = lt.sacral_bone(ph.labels)
        inner = ndimage.binary_erosion(bone, iterations=3)
        shell = bone & ~ndimage.binary_erosion(bone)
        soft = ph.labels.array == 0
        return (np.median(ph.ct.array[inner]), np.percentile(ph.ct.array[shell], 75),
                np.median(ph.ct.array[soft & (ph.ct.array > -500)]))

    trab0, cortex0, soft0 = trabecular_and_cortex(0.0)
    trab1, _, _ = trabecular_and_cortex(1.0)
    assert cortex0 > trab0 > soft0
    assert 150 < trab0 < 350 and trab1 < trab0 - 120


def test_adult_sizes_of_the_mean_sacrum():
    ph = make_phantom(PhantomParams(seed=0, spacing=SPACING, variation=0.0, noise_hu=0))
    sacral = lt.mask(ph.labels, *lt.SACRAL_BONE, "canal", *lt.FORAMINA)
    world = ph.labels.index_to_world(np.argwhere(sacral))
    levels = ph.info["landmarks"]["levels"]

    def width_at(level):
        row = world[np.abs(world[:, 2] - levels[level][2]) <= SPACING[2] / 2]
        return row[:, 0].max() - row[:, 0].min()

    assert 95.0 <= width_at("S1") <= 115.0
    assert 20.0 <= width_at("S5") <= 40.0
    assert width_at("S1") > width_at("S2") > width_at("S3") > width_at("S4") > width_at("S5")
    # Tilted and curved: S1 lies anterior to S3, and the tip curves forward again.
    assert levels["S1"][1] < levels["S3"][1] - 5.0 and levels["S5"][1] < levels["S3"][1] - 2.0
    volumes = [lt.mask(ph.labels, f"foramen_S{i}_left").sum() for i in range(1, 5)]
    assert volumes == sorted(volumes, reverse=True)


def test_every_bone_is_enclosed_by_its_cortex(bilateral):
    # The cortical shell is brighter than the trabecular bone everywhere on the surface, so
    # filling the holes of the bright shell recovers each whole bone.
    solid = ndimage.binary_fill_holes(bilateral.ct.array > 450)
    for name in ("sacrum", "ilium_left", "ilium_right", "L5"):
        assert solid[lt.mask(bilateral.labels, name)].mean() > 0.99, name


def test_hip_bones_are_whole_and_apart(bilateral):
    left, right = lt.mask(bilateral.labels, "ilium_left"), lt.mask(bilateral.labels, "ilium_right")
    for name, hip in (("left", left), ("right", right)):
        assert ndimage.label(hip)[1] == 1, name
        x = bilateral.labels.index_to_world(np.argwhere(hip))[:, 0]
        assert 120.0 < np.abs(x).max() < 160.0, name           # iliac wing
    assert not (ndimage.binary_dilation(left, iterations=2) & right).any()   # symphysis gap


def test_skin_to_bone_depth_is_measurable(bilateral):
    # Going forward from the back of the field of view along a line through the left ala at S2:
    # air, skin, fat, muscle, then the dorsal surface of the sacrum.
    point = np.array(bilateral.info["landmarks"]["levels"]["S2"]) + np.array([25.0, 0.0, 0.0])
    i, _, k = np.round(bilateral.ct.world_to_index(point)).astype(int)
    ys = bilateral.ct.index_to_world(np.array([[i, j, k] for j in range(bilateral.ct.shape[1])]))[:, 1]
    hu = bilateral.ct.array[i, :, k][np.argsort(-ys)]
    lab = bilateral.labels.array[i, :, k][np.argsort(-ys)]
    ys = np.sort(ys)[::-1]                                  # posterior first
    assert hu[0] < -900
    skin = np.argmax(hu > -500)
    bone = np.argmax(np.isin(lab, [lt.value(n) for n in lt.SACRAL_BONE]))
    assert 30.0 <= ys[skin] - ys[bone] <= 100.0
    tissue = hu[skin + 3:bone - 2]
    assert (tissue < -50).any() and (np.abs(tissue - 45) < 60).any()   # fat and muscle


def test_prone_and_supine_hold_the_same_anatomy_in_world_coordinates():
    sup = make_phantom(PhantomParams(seed=7, spacing=SPACING, position="supine"))
    pro = make_phantom(PhantomParams(seed=7, spacing=SPACING, position="prone"))
    assert np.allclose(pro.ct.direction, np.diag([-1.0, -1.0, 1.0]))
    for name in ("canal", "ala_left", "foramen_S2_right", "ilium_left"):
        a = sup.labels.index_to_world(np.argwhere(lt.mask(sup.labels, name))).mean(axis=0)
        b = pro.labels.index_to_world(np.argwhere(lt.mask(pro.labels, name))).mean(axis=0)
        assert np.allclose(a, b, atol=1e-3), name
    canonical, _ = pro.ct.to_canonical()
    assert np.array_equal(canonical.array, sup.ct.array)


def test_written_files_read_back_with_geometry(tmp_path):
    ph = make_phantom(PhantomParams(seed=1, spacing=(2.5,) * 3, position="prone", fracture="left"))
    written = write_phantom(ph, tmp_path)
    ct = sitk.ReadImage(str(written["ct"]))
    assert ct.GetSize() == ph.ct.shape
    assert np.allclose(ct.GetOrigin(), ph.ct.origin) and np.allclose(ct.GetDirection(), ph.ct.direction.ravel())
    assert np.array_equal(sitk.GetArrayFromImage(ct).transpose(2, 1, 0), ph.ct.array)
    assert json.loads((tmp_path / "labels.json").read_text()) == lt.table_json()
    info = json.loads((tmp_path / "phantom.json").read_text())
    assert info["parameters"]["seed"] == 1 and info["fracture_lines"][0]["side"] == "left"


@pytest.mark.parametrize("kwargs, word", [
    ({"fracture": "diagonal"}, "fracture"), ({"osteoporosis": 1.5}, "osteoporosis"),
    ({"spacing": (0.1, 0.1, 0.1)}, "spacing"), ({"position": "standing"}, "position"),
    ({"variation": 3.0}, "variation"), ({"lesion": "everywhere"}, "lesion"),
])
def test_bad_parameters_are_refused(kwargs, word):
    with pytest.raises(InputError, match=word):
        PhantomParams(**kwargs)


def test_dicom_series_reads_back_to_the_same_voxels(tmp_path):
    from trajplan.io.dicom import read_dicom_series

    ph = make_phantom(PhantomParams(seed=2, spacing=(3.0, 3.0, 3.0), fov_mm=(240.0, 200.0, 180.0), position="prone"))
    written = write_phantom(ph, tmp_path, dicom=True)
    back = read_dicom_series(written["dicom"])
    assert back.same_geometry(ph.ct)
    assert np.array_equal(back.array, ph.ct.array)
    first = sorted(Path(written["dicom"]).iterdir())[0]
    assert pydicom.dcmread(first).PatientPosition == "HFP"


def test_cohort_draws_osteoporosis_in_the_range_asked_and_keeps_the_default_cohort():
    from sample_ct.cohort import cohort

    default = [p.osteoporosis for p in cohort(6, 100, vary_anatomy=False)]
    assert default == [0.83, 0.6, 0.29, 0.04, 0.97, 0.6]          # the validation's cohort, unchanged
    severe = [p.osteoporosis for p in cohort(20, 500, osteoporosis=(0.9, 1.0))]
    assert min(severe) >= 0.9 and max(severe) <= 1.0 and len(set(severe)) > 5
    with pytest.raises(InputError, match="osteoporosis range"):
        cohort(4, 1, osteoporosis=(0.8, 1.2))
