"""Viewer speed: start-up (the viewer's start to its first picture) and re-scoring latency of an edited needle.

Usage: python benchmarks/viewer.py [--spacing 1.0] [--seed 0] [--plan-dir DIR] [--runs 5] [--edits 30]
                                   [--screenshot PNG]

Makes the sample case (the `make demo` phantom) and plans it without the report, unless
``--plan-dir`` names a plan folder already written. Then, in this process:

- start-up, ``--runs`` times (medians printed): the viewer loads the plan folder and serves it
  (``ViewerSession`` and ``ViewerServer``, as ``trajplan view`` does after its imports), then
  headless Chromium (software WebGL, SwiftShader: much slower than a desktop GPU; launched
  before the clock starts) opens the page. The page records when each step of its start-up
  ends (``body[data-timings]``); times are printed from the start of loading. The **first
  picture** is the CT's slices and the needles drawn in the 2D views: the page reads the axial
  view's pixels back from the canvas (``readPixels``, which waits until the GPU has drawn
  them) and the run counts only when most of them are lit (the CT is there). The labels over
  the CT, the 3D view's surfaces and the server's scoring context (distance maps, KD-trees)
  follow, and are printed too;
- the command itself: ``trajplan view PLAN_DIR --no-browser`` run ``--runs`` times until it prints
  its address (Python's start and imports included, which the figures above leave out);
- redrawing: the labels box and a window button clicked, each until the GPU has drawn the views
  again (the label overlay refreshed alone; the CT alone);
- re-scoring: ``--edits`` POST /api/evaluate requests with the tip of a planned needle moved
  by up to 5 mm (server time, what any browser waits for), and five edits typed into the
  page until the table shows the new verdict.

Goals (the issue): first picture within 3 s of the start, re-scoring within 0.3 s.
"""

from __future__ import annotations

import argparse
import http.client
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

from sample_ct.phantom import PhantomParams, make_phantom, write_phantom

LIT_SHARE = 0.2     # the share of the axial view's pixels lit when the CT is drawn (the body fills most of it)


def plan_case(folder: Path, spacing: float, seed: int) -> Path:
    """The sample case planned without the report, in ``folder``."""
    from trajplan.pipeline import run_plan
    from trajplan.planning import PlanOptions

    write_phantom(make_phantom(PhantomParams(seed=seed, spacing=(spacing,) * 3, fracture="bilateral",
                                             position="prone")), folder / "case")
    run_plan(folder / "case" / "ct.nii.gz", folder / "plan", PlanOptions(), report=False)
    return folder / "plan"


def post_evaluate(port: int, token: str, body: dict) -> dict:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    conn.request("POST", "/api/evaluate", body=json.dumps(body),
                 headers={"Host": f"127.0.0.1:{port}", "X-Trajplan-Token": token})
    answer = json.loads(conn.getresponse().read())
    conn.close()
    return answer


def summary(seconds: list[float]) -> str:
    ms = sorted(1000 * s for s in seconds)
    return (f"median {statistics.median(ms):.0f} ms, 95th percentile {ms[int(0.95 * (len(ms) - 1))]:.0f} ms, "
            f"max {ms[-1]:.0f} ms over {len(ms)}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--spacing", type=float, default=1.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--plan-dir", type=Path, help="an existing plan folder (not changed)")
    parser.add_argument("--runs", type=int, default=5, help="start-ups measured (medians printed)")
    parser.add_argument("--edits", type=int, default=30)
    parser.add_argument("--screenshot", type=Path, help="a PNG of the page once ready, after the last start-up")
    args = parser.parse_args()
    chromium = next((p for p in map(shutil.which, ("chromium", "chromium-browser", "google-chrome")) if p), None)
    with tempfile.TemporaryDirectory(prefix="trajplan-bench-viewer-") as tmp:
        plan_dir = args.plan_dir or plan_case(Path(tmp), args.spacing, args.seed)
        if chromium is None:
            print("browser figures skipped: no Chromium installed")
            server, _, _ = start_server(plan_dir)
            describe(server.session)
            rescoring(server, args.edits)
            stop(server)
            return
        from playwright.sync_api import sync_playwright

        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=chromium, args=[
                "--no-sandbox", "--use-angle=swiftshader", "--enable-unsafe-swiftshader"])
            runs = []
            for run in range(args.runs):
                page = browser.new_page(viewport={"width": 1500, "height": 1000})
                server, steps, scoring = start_server(plan_dir)
                page.goto(server.url)
                steps.update(page_steps(page, steps.pop("_start")))
                scoring.join()
                runs.append(steps)
                if run < args.runs - 1:
                    page.close()
                    stop(server)
            describe(server.session)
            print_startup(runs)
            command_start(plan_dir, args.runs)
            if args.screenshot:
                page.screenshot(path=str(args.screenshot))
            redraws(page)
            rescoring(server, args.edits)
            typed_edits(page, server.session.needles()[0])
            browser.close()
        stop(server)


def start_server(plan_dir: Path):
    """The viewer serving ``plan_dir`` in a thread; the times (s) of its start: ``_start`` (the clock,
    ``time.time``) and the serving step; and a thread that adds the time when scoring is ready and ends."""
    from trajplan.viewer.server import ViewerServer
    from trajplan.viewer.session import ViewerSession

    start = time.time()
    session = ViewerSession(plan_dir)
    server = ViewerServer(session)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    steps = {"_start": start, "serving (plan.json and labels read)": time.time() - start}
    scoring = threading.Thread(target=lambda: (session.wait_until_prepared(), steps.__setitem__(
        "scoring ready (server: distance maps, KD-trees, targets)", time.time() - start)), daemon=True)
    scoring.start()
    return server, steps, scoring


def describe(session) -> None:
    """One line on the case served."""
    region, labels = session.region, session.labels
    print(f"case: {session.plan_dir}, CT region {region.shape if region is not None else None}, "
          f"labels {labels.shape} at {np.round(labels.spacing, 2).tolist()} mm, {len(session.needles())} needles")


def page_steps(page, start: float) -> dict[str, float]:
    """The page's start-up steps (s from ``start``), once it is ready; refused unless the CT was drawn."""
    page.wait_for_selector("body[data-ready='1']", timeout=120000)
    origin = page.evaluate("performance.timeOrigin") / 1000
    timings = json.loads(page.evaluate("document.body.dataset.timings"))
    lit = float(page.evaluate("document.body.dataset.picture"))
    if lit < LIT_SHARE:
        raise SystemExit(f"the first picture is not the CT: {lit:.0%} of the axial view lit")
    steps = {"page: navigation began": origin - start}
    steps.update({f"page: {step}": origin + ms / 1000 - start for step, ms in timings.items()})
    return steps


def print_startup(runs: list[dict[str, float]]) -> None:
    print(f"start-up, seconds from the start of loading the plan folder, median of {len(runs)} run(s) [min-max]:")
    for step in sorted(runs[0], key=lambda s: statistics.median(r[s] for r in runs)):
        values = [r[step] for r in runs]
        print(f"  {step:60s} {statistics.median(values):6.2f}  [{min(values):.2f}-{max(values):.2f}]")
    first = [r["page: first picture"] for r in runs]
    after = [r["page: first picture"] - r["serving (plan.json and labels read)"] for r in runs]
    print(f"first picture (CT slices and needles on the canvas): median {statistics.median(first):.2f} s from the "
          f"start, {statistics.median(after):.2f} s after serving began (goal <= 3 s)")


def command_start(plan_dir: Path, runs: int) -> None:
    """Seconds from starting ``trajplan view`` until it prints its address, median of ``runs``."""
    seconds = []
    for _ in range(runs):
        start = time.time()
        process = subprocess.Popen([sys.executable, "-m", "trajplan", "view", str(plan_dir), "--no-browser"],
                                   stdout=subprocess.PIPE, text=True)
        line = process.stdout.readline()
        seconds.append(time.time() - start)
        process.terminate()
        process.wait()
        if "serving" not in line:
            raise SystemExit(f"trajplan view did not start: {line!r}")
    print(f"trajplan view prints its address (imports included): median {statistics.median(seconds):.2f} s "
          f"[{min(seconds):.2f}-{max(seconds):.2f}] over {runs}")


def redraws(page) -> None:
    """Seconds from a click on the labels box or a window button until the views are drawn again."""
    seconds = {}
    for name, selector in (("labels box (the overlay alone)", "#show-labels"),
                           ("soft-tissue window (the CT alone)", "[data-window='soft']")):
        seconds[name] = page.evaluate("""(selector) => {
            const start = performance.now(), gl = nv.gl;
            document.querySelector(selector).click();
            gl.readPixels(0, 0, 1, 1, gl.RGBA, gl.UNSIGNED_BYTE, new Uint8Array(4));   // waits for the GPU
            return (performance.now() - start) / 1000;
        }""", selector)
    print("redrawn after a click, until drawn: " + ", ".join(f"{k} {v:.2f} s" for k, v in seconds.items()))


def rescoring(server, edits: int) -> None:
    """Server time of re-scoring: tips of the planned needles moved by up to 5 mm."""
    rng = np.random.default_rng(0)
    needles = server.session.needles()
    times = []
    for k in range(edits):
        needle = needles[k % len(needles)]
        tip = (np.asarray(needle["tip_lps"]) + rng.uniform(-5, 5, 3)).round(1).tolist()
        mark = time.perf_counter()
        post_evaluate(server.port, server.token, {**needle, "tip_lps": tip})
        times.append(time.perf_counter() - mark)
    print(f"re-scoring over HTTP (tip moved up to 5 mm): {summary(times)} (goal <= 300 ms)")


def typed_edits(page, needle: dict) -> None:
    """Five tip heights typed into the page, each until the table shows the new verdict."""
    times = []
    box = page.locator("tr[data-needle='0'] td.tip input[data-axis='2']")
    for k in range(5):
        box.fill(f"{needle['tip_lps'][2] + (k % 2 + 1):g}")
        mark = time.perf_counter()
        box.press("Enter")
        page.wait_for_selector("#needles tr.scoring", state="detached", timeout=30000)
        times.append(time.perf_counter() - mark)
    print(f"edit typed in the page until the table shows the new verdict: {summary(times)}")


def stop(server) -> None:
    server.shutdown()
    server.server_close()


if __name__ == "__main__":
    main()
