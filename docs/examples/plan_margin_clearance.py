"""Plan the demo case with trajplan's Python API, widen a margin, re-score one needle, plot its clearances.

Run from the repository (``.venv`` as ``make demo`` sets it up)::

    .venv/bin/python docs/examples/plan_margin_clearance.py --out figures
    .venv/bin/python docs/examples/plan_margin_clearance.py --out figures --spacing 2   # coarser, faster

It makes the demo case in memory (the seeded phantom of ``make demo``: a prone patient with
bilateral sacral ala fractures; ``--ct`` plans a CT of your own instead), segments and plans it,
re-scores the best needle with the canal and foramen margins widened to ``--margin`` mm, and
writes ``clearance.png`` (each structure's clearance against both margins) into ``--out``
(default: the ``TRAJPLAN_EXAMPLE_OUT`` environment variable, else the current folder).
See ``docs/api.md``.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import matplotlib

matplotlib.use("Agg")                # no display needed
import matplotlib.pyplot as plt  # noqa: E402

import trajplan  # noqa: E402


def demo_ct(spacing_mm: float) -> trajplan.Volume:
    """The CT of the demo case (``trajplan phantom --seed 0 --fracture bilateral --position prone``)."""
    from sample_ct.phantom import PhantomParams, make_phantom

    params = PhantomParams(seed=0, fracture="bilateral", position="prone", spacing=(spacing_mm,) * 3)
    return make_phantom(params).ct


def clearance_figure(needle: trajplan.Needle, default_margins: dict[str, float], wider: dict[str, float],
                     path: Path) -> Path:
    """Bars of the needle's clearance per structure, with the default and the wider margins marked."""
    names = sorted(needle.clearance_mm, key=needle.clearance_mm.get)
    fig, ax = plt.subplots(figsize=(8, 0.35 * len(names) + 1.5))
    colour = [f"C{0 if needle.clearance_mm[n] >= wider[n] else 3}" for n in names]
    ax.barh(names, [needle.clearance_mm[n] for n in names], color=colour)
    ax.scatter([default_margins[n] for n in names], names, marker="|", s=200, color="k", label="default margin")
    ax.scatter([wider[n] for n in names], names, marker="|", s=200, color="C3", label="wider margin")
    ax.set_xlabel("clearance from the needle's surface (mm)")
    ax.set_title(f"{needle.technique.words}, {needle.side.words}, {needle.path.gauge} G")
    ax.legend(loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=os.environ.get("TRAJPLAN_EXAMPLE_OUT", "."), help="folder for clearance.png")
    parser.add_argument("--ct", help="a CT file or DICOM folder to plan instead of the demo case")
    parser.add_argument("--spacing", type=float, default=1.0, help="voxel size (mm) of the demo case")
    parser.add_argument("--margin", type=float, default=5.0, help="the wider canal and foramen margin (mm)")
    args = parser.parse_args(argv)

    ct = trajplan.read_ct(args.ct) if args.ct else demo_ct(args.spacing)
    options = trajplan.PlanOptions(needles=2)
    plan = trajplan.plan(ct, options=options, source=args.ct)
    print(plan)
    if not plan.needles:
        print("no safe needle:", *plan.warnings, sep="\n  ")
        return 1
    best = plan.needles[0].needle
    print(f"best needle: {best.technique.words}, {best.side}, verdict {best.verdict}, score {best.score}")

    wider_options = trajplan.PlanOptions(needles=2, margins_mm={"canal": args.margin, "foramen": args.margin})
    rescored = trajplan.evaluate_path(ct, plan.segmentation, best.path.entry_lps, best.path.tip_lps,
                                      technique=best.technique.value, options=wider_options)
    print(f"with {args.margin:g} mm canal and foramen margins: verdict {rescored.verdict}, "
          f"reasons {', '.join(rescored.reasons) or 'none'}")

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    figure = clearance_figure(rescored.needle, plan.margins_mm, rescored.margins_mm, out / "clearance.png")
    print(f"figure: {figure}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
