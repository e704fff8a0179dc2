"""Shared fixtures: the real CT folder and small written phantom cases."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

os.environ.setdefault("VTK_DEFAULT_OPENGL_WINDOW", "vtkEGLRenderWindow")

SHARED_CT = Path(__file__).resolve().parents[2] / "shared" / "ct"
CHROMIUM = next((p for p in map(shutil.which, ("chromium", "chromium-browser", "google-chrome")) if p), None)


@pytest.fixture(scope="session")
def shared_ct() -> Path:
    """The folder of real CT data beside the repository (skips when absent)."""
    if not (SHARED_CT / "ts_example_ct.nii.gz").is_file():
        pytest.skip(f"real CT data not found in {SHARED_CT}")
    return SHARED_CT


@pytest.fixture(scope="session")
def phantom_of():
    """``make_phantom``, each phantom made once per session and shared by the tests that ask for the
    same parameters; its CT and label arrays are read-only, so no test can change another's case."""
    from sample_ct.phantom import make_phantom

    made: dict = {}

    def get(params):
        if params not in made:
            phantom = make_phantom(params)
            for volume in (phantom.ct, phantom.labels):
                volume.array.flags.writeable = False
            made[params] = phantom
        return made[params]

    return get


@pytest.fixture(scope="session")
def plan_of(phantom_of):
    """``plan_needles`` on a phantom's ground-truth labels with its CT, each (parameters, options) planned once
    per session: ``plan_of(params, needles=3, mc_samples=100)``. Tests only read the plan."""
    from trajplan.planning import PlanOptions, plan_needles

    made: dict = {}

    def get(params, **options):
        key = (params, tuple(sorted(options.items())))
        if key not in made:
            phantom = phantom_of(params)
            made[key] = plan_needles(phantom.labels, PlanOptions(**options), ct=phantom.ct)
        return made[key]

    return get


@pytest.fixture(scope="session")
def canal_lesion_labels(phantom_of):
    """The 2.5 mm phantom (seed 0, no fracture) whose sacral bone beside the canal at S1 is labelled
    ``lesion``: a lesion on the midline that no short-axis path reaches within the technique's limits.
    Returns (phantom, labels)."""
    import numpy as np
    from scipy import ndimage

    from sample_ct.phantom import PhantomParams
    from trajplan import labels as lt

    phantom = phantom_of(PhantomParams(seed=0, spacing=(2.5,) * 3))
    labels = phantom.labels.array.copy()
    s1 = np.asarray(phantom.info["landmarks"]["foramina"]["foramen_S1_left"]["anterior_lps"])
    z = phantom.labels.index_to_world(np.c_[np.zeros((labels.shape[2], 2)), np.arange(labels.shape[2])])[:, 2]
    near_s1 = (np.abs(z - s1[2]) <= 10.0)[None, None, :]
    wrap = ndimage.binary_dilation(lt.mask(phantom.labels, "canal")) & (labels == lt.value("sacrum")) & near_s1
    labels[wrap] = lt.value("lesion")
    return phantom, phantom.labels.with_array(labels)


@pytest.fixture(scope="session")
def phantom_dir(tmp_path_factory, phantom_of) -> Path:
    """A written 2 mm phantom case with a bilateral fracture (ct.nii.gz, labels.nii.gz, ...)."""
    from sample_ct.phantom import PhantomParams, write_phantom

    out = tmp_path_factory.mktemp("phantom")
    write_phantom(phantom_of(PhantomParams(seed=0, spacing=(2.0, 2.0, 2.0), fracture="bilateral")), out)
    return out


@pytest.fixture(scope="session")
def truth_plan_dir(phantom_dir, tmp_path_factory) -> Path:
    """:func:`phantom_dir` planned on its ground-truth labels (both techniques, 2 needles, the defaults),
    without the report: the plan folder that the viewer's tests serve and the card, Slicer-file and
    ``evaluate`` tests read. No test changes it (one that saves into a plan works on a copy or a plan of
    its own)."""
    from trajplan.cli import main

    out = tmp_path_factory.mktemp("truth") / "plan"
    assert main(["-q", "plan", str(phantom_dir / "ct.nii.gz"), "-o", str(out), "--labels",
                 str(phantom_dir / "labels.nii.gz"), "--no-report"]) == 0
    return out


@pytest.fixture(scope="session")
def browser():
    """Headless Chromium (software WebGL) driven by Playwright, for the report's and the viewer's
    browser tests; skips when no Chromium is installed (``make test`` installs it where it can)."""
    if CHROMIUM is None:
        pytest.skip("no Chromium installed (apt-get install chromium)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=[
            "--no-sandbox", "--use-angle=swiftshader", "--enable-unsafe-swiftshader"])
        yield browser
        browser.close()


def recorded_page(browser, width: int, *, keep=lambda url: True):
    """A new page of ``width`` x 1000 px with its console errors (and page errors) and the URLs of the
    requests that ``keep`` keeps recorded: (page, errors, requests)."""
    page = browser.new_page(viewport={"width": width, "height": 1000})
    errors: list[str] = []
    requests: list[str] = []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.on("request", lambda r: requests.append(r.url) if keep(r.url) else None)
    return page, errors, requests
