"""``comparison.md`` and its figures, from the rows of ``comparison.csv``.

Every number and figure is computed from the rows alone (no timing, no clock), so
the same rows give the same page.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np

from trajplan.io.atomic import atomic_path, write_text
from trajplan.needle import Technique
from trajplan.planning.defaults import DEFAULT_MARGINS_MM, STUDY_MEAN_CEMENT_ML

REFERENCE_NEEDLES = 2        # the per-technique tables use plans of this many needles (study mean 2.5)
TECHNIQUE_COLOURS = {"short_axis": "#1f77b4", "long_axis": "#d62728", "mixed": "#7f7f7f"}
GROUP_WORDS = {**{technique.value: technique.words for technique in Technique}, "mixed": "mixed"}

LIMITS = """\
## What a phantom can and cannot say

The phantom (`sample_ct/`) models the bony sacrum S1-S5 with its alae, canal, foramen
channels S1-S4, a partial-volume cortex, the hip bones with sacroiliac gaps, L5 and the
L5-S1 disc, fracture lines and lytic lesions, osteoporotic bone density, soft tissue and
CT noise, with anatomical variation drawn per case. It does **not** model:

- soft-tissue path planning beyond the skin-to-bone depth: bowel, vessels and nerves
  outside the bone are not obstacles (only the presacral vessels' position behind the
  anterior cortex is implied by its margin);
- cement flow physics: "cement volume" is the trabecular bone within 8 mm of the distal
  needle segment filled to 40 %, and "coverage" is target within that reach, not a
  simulated leak-free fill; leakage into veins, foramina or the canal is not simulated;
- pain relief, fracture healing or any clinical outcome; a technique that covers more
  fracture line on a phantom is not thereby shown to help patients more;
- real anatomical variants (transitional vertebrae, dysmorphic sacra, previous surgery)
  beyond the phantom's smooth parameter range, or image artefacts other than noise and blur.

Clearances are measured from the needle's surface to the labelled structures. On the
ground-truth labels they are exact for the phantom; with `--segment` they also carry
the segmentation's errors.
"""


def _done(rows: list[dict]) -> list[dict]:
    return [r for r in rows if r.get("status") == "done"]


def _values(rows: list[dict], key: str) -> list[float]:
    return [float(r[key]) for r in rows if r.get(key) not in (None, "")]


def _median(values: list[float], digits: int = 2) -> str:
    return f"{np.median(values):.{digits}f}" if values else "-"


def _select(rows: list[dict], **where) -> list[dict]:
    return [r for r in rows if all(r.get(k) == v for k, v in where.items())]


def needles_for_full_coverage(rows: list[dict], threshold: float) -> dict[tuple[str, int], list[int | None]]:
    """Per (technique, gauge): for every case, the fewest needles whose plan reaches ``threshold``.

    ``target_length_coverage`` is the criterion; None where no tried count reaches it.
    """
    out: dict[tuple[str, int], list[int | None]] = {}
    cases = sorted({r["case_id"] for r in rows})
    for technique in TECHNIQUE_COLOURS:
        for gauge in sorted({r["gauge"] for r in rows}):
            needed = []
            for case in cases:
                case_rows = sorted(_select(rows, case_id=case, technique=technique, gauge=gauge),
                                   key=lambda r: r["needles_requested"])
                if not case_rows or case_rows[0].get("target_length_coverage") in (None, ""):
                    continue
                reach = [r["needles_placed"] for r in case_rows
                         if float(r["target_length_coverage"]) >= threshold]
                needed.append(min(reach) if reach else None)
            if needed:
                out[(technique, gauge)] = needed
    return out


def _figure(path: Path, draw: Callable, size: tuple[float, float] = (8.0, 4.5)) -> Path:
    from matplotlib.figure import Figure  # no pyplot: no global backend or figure state

    fig = Figure(figsize=size, dpi=100)
    draw(fig)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")
    return path


def _boxes(ax, groups: list[tuple[str, list[float], str]], ylabel: str) -> None:
    data = [g[1] if g[1] else [np.nan] for g in groups]
    parts = ax.boxplot(data, patch_artist=True, widths=0.6)
    for patch, (_, _, colour) in zip(parts["boxes"], groups):
        patch.set_facecolor(colour)
        patch.set_alpha(0.6)
    ax.set_xticks(range(1, len(groups) + 1), [g[0] for g in groups], rotation=30, ha="right", fontsize=8)
    ax.set_ylabel(ylabel)
    ax.grid(axis="y", alpha=0.3)


def write_figures(out: Path, rows: list[dict], threshold: float) -> dict[str, Path]:
    """The five comparison figures under ``out/figures/``; returns {caption: path}."""
    done = _done(rows)
    gauges = sorted({r["gauge"] for r in done})
    ref = _select(done, needles_requested=REFERENCE_NEEDLES)
    pure = tuple(technique.value for technique in Technique)
    figures: dict[str, Path] = {}

    def clearance(fig) -> None:
        ax = fig.add_subplot(1, 1, 1)
        groups = []
        for cls in DEFAULT_MARGINS_MM:
            for technique in pure:
                for gauge in gauges:
                    groups.append((f"{cls} {technique.split('_')[0]} {gauge}G",
                                   _values(_select(ref, technique=technique, gauge=gauge), f"min_clearance_{cls}_mm"),
                                   TECHNIQUE_COLOURS[technique]))
        _boxes(ax, groups, "smallest clearance in the plan (mm)")
        ax.set_title(f"Clearance per structure, {REFERENCE_NEEDLES}-needle plans (blue short axis, red long axis)")

    def breach(fig) -> None:
        ax = fig.add_subplot(1, 1, 1)
        groups = [(f"{GROUP_WORDS[t]} {g}G", _values(_select(ref, technique=t, gauge=g), "max_breach_probability"),
                   TECHNIQUE_COLOURS[t]) for t in TECHNIQUE_COLOURS for g in gauges]
        _boxes(ax, groups, "largest breach probability of a needle")
        ax.set_title(f"Breach probability under placement error, {REFERENCE_NEEDLES}-needle plans")

    def by_count(key: str, ylabel: str, title: str, line: float | None = None) -> Callable:
        def draw(fig) -> None:
            ax = fig.add_subplot(1, 1, 1)
            for technique, colour in TECHNIQUE_COLOURS.items():
                for gauge, style in zip(gauges, ("-", "--")):
                    counts, mid, lo, hi = [], [], [], []
                    for n in sorted({r["needles_requested"] for r in done}):
                        values = _values(_select(done, technique=technique, gauge=gauge, needles_requested=n), key)
                        if values:
                            counts.append(n)
                            mid.append(np.median(values))
                            lo.append(np.percentile(values, 25))
                            hi.append(np.percentile(values, 75))
                    if counts:
                        ax.plot(counts, mid, style, color=colour, marker="o",
                                label=f"{GROUP_WORDS[technique]} {gauge}G")
                        ax.fill_between(counts, lo, hi, color=colour, alpha=0.08)
            if line is not None:
                ax.axhline(line, color="black", lw=0.8, ls=":", label=f"{line:g} ml (study mean)")
            ax.set_xticks(sorted({r["needles_requested"] for r in done}))
            ax.set_xlabel("needles requested")
            ax.set_ylabel(ylabel)
            ax.set_title(title)
            ax.grid(alpha=0.3)
            ax.legend(fontsize=7)
        return draw

    def needed(fig) -> None:
        ax = fig.add_subplot(1, 1, 1)
        table = needles_for_full_coverage(done, threshold)
        labels = ["1", "2", "3", "4", "5", "not reached"]
        width = 0.8 / max(len(table), 1)
        for k, ((technique, gauge), values) in enumerate(sorted(table.items())):
            counts = [sum(v == n for v in values) for n in (1, 2, 3, 4, 5)] + [sum(v is None for v in values)]
            ax.bar(np.arange(6) + k * width, counts, width, color=TECHNIQUE_COLOURS[technique],
                   alpha=1.0 if gauge == 11 else 0.5, label=f"{GROUP_WORDS[technique]} {gauge}G")
        ax.set_xticks(np.arange(6) + 0.4 - width / 2, labels)
        ax.set_xlabel(f"needles for {threshold:.0%} of the target length")
        ax.set_ylabel("cases")
        ax.legend(fontsize=7)
        ax.set_title("Needles needed for full coverage")

    figures["Minimum clearance per structure per technique"] = _figure(out / "figures" / "clearance.png", clearance,
                                                                       (11.0, 5.0))
    figures["Breach probability under placement error"] = _figure(out / "figures" / "breach_probability.png", breach)
    figures["Target coverage vs needle count"] = _figure(
        out / "figures" / "coverage.png",
        by_count("target_length_coverage", "fraction of target length reached",
                 "Fracture line / lesion length coverage (median, IQR shaded)"))
    figures["Estimated cement volume vs needle count"] = _figure(
        out / "figures" / "cement.png",
        by_count("cement_volume_ml", "estimated cement volume (ml)", "Cement volume reachable (median, IQR shaded)",
                 STUDY_MEAN_CEMENT_ML))
    figures["Needles needed for full coverage"] = _figure(out / "figures" / "needles_needed.png", needed)
    return figures


def _table(head: list[str], body: list[list[object]]) -> list[str]:
    return (["| " + " | ".join(head) + " |", "|" + " --- |" * len(head)]
            + ["| " + " | ".join(str(c) for c in row) + " |" for row in body])


def write_comparison_markdown(out: Path, rows: list[dict], *, source: dict, options, threshold: float = 0.9) -> Path:
    """Write ``out/comparison.md`` (tables, figures, limits) and its figures."""
    done = _done(rows)
    cases = sorted({r["case_id"] for r in rows}, key=lambda c: [r["case_id"] for r in rows].index(c))
    gauges = sorted({r["gauge"] for r in done})
    if source["kind"] == "phantom":
        origin = (f"a cohort of {source['cases']} phantoms (`trajplan compare --cohort {source['cases']} "
                  f"--seed {source['seed']} --spacing {' '.join(f'{s:g}' for s in source['spacings_mm'])}"
                  f"{' --segment' if options.segment else ''}`), planned on "
                  f"{'trajplan segmentation' if options.segment else 'the ground-truth labels'}")
    else:
        origin = (f"{source['cases']} finished cases of the batch output `{source['path_name']}` "
                  "(`trajplan compare --from-batch`), planned on each case's labels.nii.gz")
    lines = ["# Technique comparison", "",
             f"Source: {origin}. Gauges {', '.join(map(str, options.gauges))}; plans of "
             f"{', '.join(map(str, options.needle_counts))} needles from one pool of measured candidates per case "
             f"and gauge; placement error Monte Carlo {options.mc_samples} samples (seed {options.seed}); needles at "
             f"least {options.min_separation_mm:g} mm apart. One row per case x gauge x technique x needle count is "
             "in `comparison.csv`. Same arguments, same numbers.", ""]

    lines += ["## Cases", ""]
    first = {c: next(r for r in rows if r["case_id"] == c) for c in cases}
    failed = {c: next((r["error"] for r in rows if r["case_id"] == c and r["status"] != "done"), "")
              for c in cases}
    lines += _table(["case", "fracture", "lesion", "osteoporosis", "variation", "position", "spacing mm", "problem"],
                    [[c, first[c].get("fracture", "-"), first[c].get("lesion", "-"), first[c].get("osteoporosis", "-"),
                      first[c].get("variation", "-"), first[c].get("position", "-"), first[c].get("spacing_mm", "-"),
                      failed[c] or "-"] for c in cases])

    ref = _select(done, needles_requested=REFERENCE_NEEDLES)
    lines += ["", f"## Techniques at {REFERENCE_NEEDLES} needles (medians over cases)", ""]
    head = ["technique", "gauge", "cases with a safe needle", "needles placed", "length coverage", "voxel coverage",
            "cement ml", "max P(breach)", *[f"{c} mm" for c in DEFAULT_MARGINS_MM]]
    body = []
    for technique in TECHNIQUE_COLOURS:
        for gauge in gauges:
            sel = _select(ref, technique=technique, gauge=gauge)
            placed = [r for r in sel if r["needles_placed"]]
            body.append([technique, gauge, f"{len(placed)}/{len(sel)}", _median(_values(sel, "needles_placed"), 1),
                         _median(_values(placed, "target_length_coverage")),
                         _median(_values(placed, "target_coverage")),
                         _median(_values(placed, "cement_volume_ml")),
                         _median(_values(placed, "max_breach_probability"), 3),
                         *[_median(_values(placed, f"min_clearance_{c}_mm"), 1) for c in DEFAULT_MARGINS_MM]])
    lines += _table(head, body)

    lines += ["", "## Coverage and cement by needle count (medians over cases)", ""]
    body = []
    for technique in TECHNIQUE_COLOURS:
        for gauge in gauges:
            for n in options.needle_counts:
                sel = _select(done, technique=technique, gauge=gauge, needles_requested=n)
                body.append([technique, gauge, n, _median(_values(sel, "needles_placed"), 1),
                             _median(_values(sel, "target_length_coverage")), _median(_values(sel, "target_coverage")),
                             _median(_values(sel, "cement_volume_ml"))])
    lines += _table(["technique", "gauge", "needles requested", "placed", "length coverage", "voxel coverage",
                     "cement ml"], body)

    lines += ["", f"## Needles needed for full coverage ({threshold:.0%} of the target length)", ""]
    body = []
    for (technique, gauge), values in sorted(needles_for_full_coverage(done, threshold).items()):
        reached = [v for v in values if v is not None]
        body.append([technique, gauge, f"{len(reached)}/{len(values)}",
                     _median([float(v) for v in reached], 1) if reached else "-"])
    lines += _table(["technique", "gauge", "cases reaching it with <= 5 needles", "median needles when reached"], body)

    lines += ["", "## Figures", ""]
    for caption, path in write_figures(out, rows, threshold).items():
        lines += [f"![{caption}]({path.relative_to(out).as_posix()})", "", f"*{caption}.*", ""]
    lines += ["## Definitions", "",
              "- *length coverage*: fraction of the target's cranio-caudal length (5 mm bins per side) with a "
              "target voxel within 8 mm of a needle's distal (cement) segment; *voxel coverage*: fraction of "
              "target voxels within that reach. The target is the fracture line, else the lesion.",
              "- *cement ml*: estimated cement volume reachable around the needles' tip segments, summed.",
              "- *P(breach)*: probability that placement error (entry sigma 2 mm, angle sigma 2 deg) brings a "
              "needle within a structure's margin; the plan's largest.",
              "- *structure mm*: the smallest clearance from any needle's surface to that structure class.",
              "", LIMITS]
    path = out / "comparison.md"
    write_text(path, "\n".join(lines))
    return path
