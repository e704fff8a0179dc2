"""Validation over a phantom cohort: segmentation accuracy and planner safety; writes docs/validation.md.

Usage: python benchmarks/validate.py [--cases 20] [--seed 100] [--out docs/validation.md]
                                    [--osteoporosis LOW HIGH] [--vary-anatomy]

For each phantom (spacing, osteoporosis, fracture pattern and lesion drawn from the seed):
- segmentation figures against the ground truth (segmentation.metrics.compare);
- the planner on the ground-truth labels, every needle it calls safe re-checked against the
  ground truth by trajplan.planning.verify (dense surface samples, exact voxel-cube distances);
- the planner on the segmented labels, its safe needles re-checked against the ground truth too
  (what a user of the whole pipeline would get).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
from environment import SHARED_CT, numerical_stack  # benchmarks/environment.py, beside this script
from real_ct import measure  # benchmarks/real_ct.py, beside this script

from sample_ct.cohort import cohort
from sample_ct.phantom import make_phantom
from segmentation.metrics import compare
from segmentation.pipeline import segment
from trajplan.errors import InputError, NoSacrumError
from trajplan.io.reader import read_ct
from trajplan.planning import PlanOptions, plan_needles
from trajplan.planning.defaults import resolve_margins
from trajplan.planning.verify import recheck

SPACINGS = (0.6, 1.0, 1.25, 1.5, 2.0)
TARGETS = {"dice_sacral_bone": 0.95, "dice_ala": 0.90, "dice_canal": 0.85, "dice_foramina": 0.75,
           "cortex_msd_mm": 1.0, "cortex_hd95_mm": 2.0, "fracture_recall": 0.8}


def plan_check(labels, truth, ct, lesion_uncertain: bool = False,
               implausible: str | None = None) -> tuple[str, int, int, int, str]:
    """(status, safe needles checked, violations found, how many of those the plan called
    marginal, the structures they came too close to) of a plan on ``labels`` re-checked on ``truth``
    (``lesion_uncertain``, ``implausible``: as the segmentation's report says, as `trajplan plan` passes them)."""
    margins = resolve_margins()
    try:
        plan = plan_needles(labels, PlanOptions(needles=3, mc_samples=100), ct=ct, lesion_uncertain=lesion_uncertain,
                            implausible=implausible)
    except InputError as exc:
        return f"no plan: {str(exc)[:60]}", 0, 0, 0, ""
    safe = [n for n in plan["needles"] + plan["alternatives"] if n["safe"]]
    bad = [(n, found) for n in safe if (found := recheck(n, truth, margins))]
    sides = {(n["technique"], n["side"]) for n in plan["alternatives"] if n["safe"]}
    marginal = sum(n["verdict"] == "marginal" for n, _ in bad)
    structures = ", ".join(sorted({name for _, found in bad for name in found}))
    return f"{len(sides)} technique-sides", len(safe), len(bad), marginal, structures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--cases", type=int, default=20)
    parser.add_argument("--seed", type=int, default=100)
    parser.add_argument("--out", default="docs/validation.md")
    parser.add_argument("--osteoporosis", type=float, nargs=2, default=(0.0, 1.0), metavar=("LOW", "HIGH"),
                        help="range the phantoms' osteoporosis is drawn from (default 0 1)")
    parser.add_argument("--vary-anatomy", action="store_true", help="draw the anatomical variation per case")
    args = parser.parse_args()

    rows, start = [], time.perf_counter()
    for params in cohort(args.cases, args.seed, SPACINGS, vary_anatomy=args.vary_anatomy,
                         osteoporosis=tuple(args.osteoporosis)):
        phantom = make_phantom(params)
        t0 = time.perf_counter()
        try:
            seg = segment(phantom.ct)
            figures = compare(seg.labels, phantom.labels)
            figures["flagged"] = seg.report["partial_reason"] or "no"
            seg_labels = seg.labels
            uncertain, implausible = seg.lesion_uncertain, seg.implausible_reason
        except InputError as exc:
            figures, seg_labels, uncertain, implausible = {"error": str(exc)[:70]}, None, False, None
        seg_s = time.perf_counter() - t0
        gt = plan_check(phantom.labels, phantom.labels, phantom.ct)
        if seg_labels is not None:
            sg = plan_check(seg_labels, phantom.labels, phantom.ct, uncertain, implausible)
        else:
            sg = ("no segmentation", 0, 0, 0, "")
        rows.append((params, figures, seg_s, gt, sg))
        print(params.seed, params.spacing[0], params.osteoporosis, params.fracture, params.lesion,
              {k: round(v, 3) if isinstance(v, float) else v for k, v in figures.items()},
              gt[1], gt[2], sg[1], sg[2], flush=True)
    write_markdown(Path(args.out), rows, args, time.perf_counter() - start)
    print(f"wrote {args.out}", file=sys.stderr)


def real_ct_lines() -> list[str]:
    """The real CT section: the sacrum found on the real CT against its neighbours' reference masks."""
    lines = ["## Real CT", ""]
    if not (SHARED_CT / "ts_example_ct.nii.gz").exists():
        return lines + [f"Not measured: `{SHARED_CT}` is not beside this checkout.", ""]
    found = measure(SHARED_CT / "ts_example_ct.nii.gz", SHARED_CT / "ts_example_masks")
    report = found["seg"].report
    lines += [
        f"`../shared/ct/ts_example_ct.nii.gz` (3 mm, abdomen and pelvis), segmented in {found['seconds']:.1f} s "
        f"(`python benchmarks/real_ct.py` prints more and, with `--png FILE`, draws its mid-slices). Flagged partial: "
        f"{report['partial_reason'] or 'no'}.",
        "",
        "| sacral bone (ml) | " + " | ".join(f"inside {name} (ml)" for name in found["inside_ml"])
        + " | " + " | ".join(f"Dice {name} vs reference" for name in found["dice"]) + " |",
        "| " + " | ".join(["---"] * (1 + len(found["inside_ml"]) + len(found["dice"]))) + " |",
        f"| {found['sacral_ml']:.1f} | " + " | ".join(f"{v:.2f}" for v in found["inside_ml"].values())
        + " | " + " | ".join(f"{v:.2f}" for v in found["dice"].values()) + " |",
        "",
    ]
    options = PlanOptions()
    try:
        seg = found["seg"]
        plan = plan_needles(seg.labels, options, ct=found["ct"], lesion_uncertain=seg.lesion_uncertain,
                            implausible=seg.implausible_reason)
        safe = [n for n in plan["needles"] if n["safe"]]
        lines.append(f"Planned on that segmentation with the default options (`trajplan plan`): {len(safe)} of "
                     f"{options.needles} needles safe ("
                     + (", ".join(f"{n['technique']} {n['side']}" for n in safe) or "none") + "). Warnings: "
                     + "; ".join(plan["warnings"]) + ".")
    except InputError as exc:
        lines.append(f"Planned on that segmentation with the default options: no plan ({exc}).")
    lines.append("")
    try:
        segment(read_ct(SHARED_CT / "ts_example_dicom"))
        lines.append("`../shared/ct/ts_example_dicom/` (upper abdomen): a sacrum was reported where there is none.")
    except NoSacrumError as exc:
        lines.append(f"`../shared/ct/ts_example_dicom/` (upper abdomen) is refused: \"{exc}\".")
    return lines + [""]


def _fmt(value) -> str:
    return f"{value:.3f}" if isinstance(value, float) else str(value)


def write_markdown(path: Path, rows: list, args, seconds: float) -> None:
    keys = [*TARGETS, "fracture_false_ml", "dice_lesion"]
    low, high = args.osteoporosis
    default = (low, high) == (0.0, 1.0)         # the tables `make validate` regenerates
    command = f"--cases {args.cases} --seed {args.seed}" + ("" if default else f" --osteoporosis {low:g} {high:g}")
    command += " --vary-anatomy" if args.vary_anatomy else ""
    title = "Validation"
    if low > 0.0 or args.vary_anatomy:
        title += f": {'severe ' if low >= 0.9 else ''}osteoporosis {low:g}-{high:g}"
        title += ", anatomy varied" if args.vary_anatomy else ""
    lines = [
        f"# {title}",
        "",
        f"Generated by `python benchmarks/validate.py {command}`{' (`make validate`)' if default else ''} in "
        f"{seconds / 60:.1f} min. Phantoms: spacing {', '.join(map(str, SPACINGS))} mm, osteoporosis drawn "
        f"{low:g}-{high:g}, {'anatomy varied, ' if args.vary_anatomy else ''}fractures left/right/bilateral, "
        f"lytic lesions in the cases without a fracture, supine and prone. Libraries: {numerical_stack()}.",
        "",
        "## Segmentation against phantom ground truth",
        "",
        "| seed | spacing | osteoporosis | fracture | lesion | " + " | ".join(keys)
        + " | S1-S3 foramina found | foramina named as in truth | seconds |",
        "| " + " | ".join(["---"] * (len(keys) + 8)) + " |",
    ]
    for params, figures, seg_s, _, _ in rows:
        cells = [params.seed, params.spacing[0], params.osteoporosis, params.fracture, params.lesion]
        if "error" in figures:
            cells += [figures["error"]] + [""] * (len(keys) - 1) + ["", "", f"{seg_s:.1f}"]
        else:
            cells += [_fmt(figures.get(k, "-")) for k in keys]
            cells += [f"{figures['foramina_S1_S3_detected']}/6",
                      f"{figures['foramina_named']}/{figures['foramina_levels']}", f"{seg_s:.1f}"]
        lines.append("| " + " | ".join(str(c) for c in cells) + " |")
    ok = [f for _, f, _, _, _ in rows if "error" not in f]
    lines += ["", "| figure | target | median | cases meeting it |", "| --- | --- | --- | --- |"]
    for key, target in TARGETS.items():
        values = [f[key] for f in ok if key in f]
        if not values:
            continue
        meets = sum((v <= target) if key.endswith("_mm") else (v >= target) for v in values)
        lines.append(f"| {key} | {'<=' if key.endswith('_mm') else '>='} {target} | {np.median(values):.3f} | "
                     f"{meets}/{len(values)} |")
    clean = [figures["fracture_false_ml"] for params, figures, *_ in rows
             if "error" not in figures and params.fracture == "none"]
    if clean:
        lines.append(f"| fracture labelled in fracture-free cases (ml) | 0 | {np.median(clean):.3f} | "
                     f"{sum(v == 0 for v in clean)}/{len(clean)} |")
    lesion = [f["dice_lesion"] for f in ok if "dice_lesion" in f]
    if lesion:
        lines.append(f"| dice_lesion (no project target) | | {np.median(lesion):.3f} | {len(lesion)} cases |")
    named, levels = sum(f["foramina_named"] for f in ok), sum(f["foramina_levels"] for f in ok)
    lines.append(f"| foramen levels named as in truth | all | | {named} of {levels} |")
    lines.append(f"| segmentation refused (no sacrum) | 0 | | {len(rows) - len(ok)} of {len(rows)} |")
    lines += [
        "",
        "## Planner safety (every needle called safe, re-checked against the ground truth)",
        "",
        "`trajplan.planning.verify` samples each needle's outer surface every 0.2 mm (16 points around) and measures "
        "its exact distance to the ground-truth voxels of every critical structure as cubes. A violation is "
        "a safe needle that comes closer than its margin; after the count, how many of those the plan called "
        "marginal (a clearance within 1 mm of its margin, or a breach probability above 5 %) and the "
        "structures they came too close to.",
        "",
        "| seed | planned on ground truth: result | safe needles | violations "
        "| planned on segmentation: result | safe needles | violations | segmentation flagged partial |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]

    def count(check: tuple) -> str:
        return f"{check[2]} ({check[3]} marginal; {check[4]})" if check[2] else "0"

    for params, figures, _, gt, sg in rows:
        flag = figures.get("flagged", "(refused)")
        lines.append(f"| {params.seed} | {gt[0]} | {gt[1]} | {count(gt)} | {sg[0]} | {sg[1]} | {count(sg)} | {flag} |")
    gt_total = sum(r[3][1] for r in rows)
    gt_bad = sum(r[3][2] for r in rows)
    sg_total = sum(r[4][1] for r in rows)
    sg_bad = sum(r[4][2] for r in rows)
    sg_marginal = sum(r[4][3] for r in rows)
    lines += [
        "",
        f"On ground truth: {gt_total - gt_bad} of {gt_total} safe needles confirmed safe. "
        f"On the segmentation: {sg_total - sg_bad} of {sg_total} confirmed safe against the ground truth"
        + (f"; the plan called {sg_marginal} of the other {sg_bad} marginal" if sg_bad else "")
        + " (where the segmentation misses part of a structure, a needle it calls safe can be unsafe: check "
        "every plan on the images).",
        "",
        *real_ct_lines(),
    ]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines))


if __name__ == "__main__":
    main()
