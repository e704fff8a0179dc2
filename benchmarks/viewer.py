"""Viewer speed: start-up (server start to first picture) and re-scoring latency of an edited needle.

Usage: python benchmarks/viewer.py [--spacing 1.0] [--seed 0] [--plan-dir DIR] [--edits 30]

Makes the sample case (the `make demo` phantom) and plans it without the report, unless
``--plan-dir`` names a plan folder already written. Then, in this process:

- start-up: loading the plan folder (CT region, labels, distance maps) and starting the
  server, then headless Chromium (software WebGL, SwiftShader: slower than a desktop GPU)
  opening the page until its first picture (the CT, labels and needles drawn);
- re-scoring: ``--edits`` POST /api/evaluate requests with the tip of a planned needle moved
  by up to 5 mm (server time, what any browser waits for), and five edits typed into the
  page until the table shows the new verdict.

Goals: first picture within 10 s, re-scoring under 0.5 s.
"""

from __future__ import annotations

import argparse
import http.client
import json
import shutil
import statistics
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

from sample_ct.phantom import PhantomParams, make_phantom, write_phantom


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
    parser.add_argument("--edits", type=int, default=30)
    args = parser.parse_args()
    chromium = next((p for p in map(shutil.which, ("chromium", "chromium-browser", "google-chrome")) if p), None)
    with tempfile.TemporaryDirectory(prefix="trajplan-bench-viewer-") as tmp:
        plan_dir = args.plan_dir or plan_case(Path(tmp), args.spacing, args.seed)
        if chromium is None:
            print("browser figures skipped: no Chromium installed")
            server, start = start_server(plan_dir)
            rescoring(server, args.edits)
        else:
            from playwright.sync_api import sync_playwright

            with sync_playwright() as pw:
                browser = pw.chromium.launch(executable_path=chromium, args=[
                    "--no-sandbox", "--use-angle=swiftshader", "--enable-unsafe-swiftshader"])
                page = browser.new_page(viewport={"width": 1500, "height": 1000})
                server, start = start_server(plan_dir)
                opened = time.perf_counter()
                page.goto(server.url)
                page.wait_for_selector("body[data-ready='1']", timeout=120000)
                first = time.perf_counter()
                print(f"first picture: {first - start:.2f} s from the start (loading included), "
                      f"{first - opened:.2f} s of it in the browser (page, NiiVue, CT and labels fetched, "
                      "decoded and drawn; goal <= 3 s after the server starts)")
                rescoring(server, args.edits)
                typed_edits(page, server.session.needles()[0])
                browser.close()
        server.shutdown()
        server.server_close()


def start_server(plan_dir: Path):
    """The viewer serving ``plan_dir`` in a thread, and the time its loading began."""
    from trajplan.viewer.server import ViewerServer
    from trajplan.viewer.session import ViewerSession

    start = time.perf_counter()
    session = ViewerSession(plan_dir)
    server = ViewerServer(session)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    ct = session.ct
    print(f"case: {plan_dir}, CT region {ct.shape if ct is not None else None}, labels {session.labels.shape} "
          f"at {np.round(session.labels.spacing, 2).tolist()} mm, {len(session.needles())} needles")
    print(f"start-up: plan folder read, distance maps and KD-trees built, serving after "
          f"{time.perf_counter() - start:.2f} s")
    return server, start


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


if __name__ == "__main__":
    main()
