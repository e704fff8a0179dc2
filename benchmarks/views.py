"""Report rendering speed: every view and ``report.html`` for the sample case.

Usage: python benchmarks/views.py [--spacing 1.0] [--seed 0]

Makes the sample case (the `make demo` phantom), plans it without the report, then
times `trajplan render` stage by stage in this process: 3D surfaces and views,
interactive scene, CT slices along each needle, simulated fluoroscopy, the HTML page.
Goal: the whole report in <= 15 s on 2 cores.
"""

from __future__ import annotations

import argparse
import json
import resource
import tempfile
import time
from pathlib import Path

from sample_ct.phantom import PhantomParams, make_phantom, write_phantom


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--spacing", type=float, default=1.0)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    from trajplan.io.files import read_volume_file
    from trajplan.io.plan_folder import CT_ROI
    from trajplan.pipeline import run_plan
    from trajplan.planning import PlanOptions
    from trajplan.report import render_views, report_html
    from trajplan.views import fluoro, slices
    from trajplan.views.scene3d import render_scene_png
    from trajplan.views.scene_html import write_scene_html
    from trajplan.views.surfaces import label_surfaces

    with tempfile.TemporaryDirectory(prefix="trajplan-bench-views-") as tmp:
        case, out = Path(tmp) / "case", Path(tmp) / "plan"
        write_phantom(make_phantom(PhantomParams(seed=args.seed, spacing=(args.spacing,) * 3,
                                                 fracture="bilateral", position="prone")), case)
        run_plan(case / "ct.nii.gz", out, PlanOptions(), report=False)
        plan = json.loads((out / "plan.json").read_text())
        labels, ct = read_volume_file(out / "labels.nii.gz"), read_volume_file(out / CT_ROI)
        print(f"sample case: labels {labels.shape}, CT region {ct.shape} at {args.spacing} mm, "
              f"{len(plan['needles'])} needles")

        stages: dict[str, float] = {}
        start = time.perf_counter()
        surfaces = label_surfaces(labels)
        stages["surfaces"] = time.perf_counter() - start
        mark = time.perf_counter()
        for view in ["posterior", "lateral", "inlet", "outlet"] + [f"needle{n['rank']}" for n in plan["needles"]]:
            render_scene_png(labels, plan, Path(tmp) / "v" / f"{view}.png", view=view, surfaces=surfaces,
                             size=(800, 600))
        stages["3D views"] = time.perf_counter() - mark
        mark = time.perf_counter()
        write_scene_html(labels, plan, Path(tmp) / "v" / "scene.html", surfaces=surfaces)
        stages["scene.html"] = time.perf_counter() - mark
        mark = time.perf_counter()
        slices.render_needle_slices(ct, labels, plan, Path(tmp) / "v")
        stages["CT slices"] = time.perf_counter() - mark
        mark = time.perf_counter()
        fluoro.render_fluoro(ct, plan, Path(tmp) / "v")
        stages["fluoroscopy"] = time.perf_counter() - mark
        print("stages: " + ", ".join(f"{k} {v:.1f} s" for k, v in stages.items()))

        start = time.perf_counter()
        sections = render_views(out, labels=labels, plan=plan, ct=ct)
        (out / "report.html").write_text(report_html(plan, sections))
        wall = time.perf_counter() - start
        size_mb = (out / "report.html").stat().st_size / 1e6
        peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print(f"report: {wall:.1f} s wall for every view and report.html (goal <= 15 s), "
              f"report.html {size_mb:.1f} MB, {sum(len(v) for v in sections.values())} images, "
              f"peak memory {peak_mb:.0f} MB")


if __name__ == "__main__":
    main()
