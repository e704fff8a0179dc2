"""Validation on real anatomy: the real sacra of ../shared/ct/real_bone and their degraded scans.

Usage: python benchmarks/validate_real.py [--out docs/validation_real.md] [--cases 001 003]
                                         [--variants own 2mm 3mm osteo] [--no-plan]

Each real bone-only CT is made a whole CT (sample_ct.bone_only.with_soft_tissue: soft tissue of
35 HU, sd 12, in a body ellipse, air outside) and scanned again as the planner must also read it:
- ``own``: at its own spacing (0.86 or 0.97 x 1 mm);
- ``2mm``, ``3mm``: block averaged to that isotropic spacing, noise of sd 15 HU added;
- ``osteo``: trabecular bone (deeper than 2 mm) darkened to a median of 90 HU (severe osteoporosis),
  at its own spacing, noise of sd 10 HU added.
- ``fatty``: trabecular bone turned to fatty marrow (a median of 0 HU, below the soft tissue, with 30 %
  of its texture), as the elderly sacra of the real whole CTs show it, at its own spacing, noise of
  sd 10 HU added.
- ``noisy``: at its own spacing with noise of sd 25 HU added (a real pelvic CT at 1 mm: the Visible
  Human pelvis's soft tissue reads about 30 HU of noise, the source CTs' 12 HU). Not among the issue's
  targets.
- ``tilt_a``, ``tilt_b``: the patient lying tilted (``tilt_a``: turned 10 degrees about the left-right
  axis and 5 about the head-foot axis; ``tilt_b``: -10 about the left-right axis, 5 about the front-back
  one; :func:`sample_ct.bone_only.turned`), then scanned as ``2mm``. Not among the issue's targets:
  how far the figures hold for a pose other than the source's.
For each: the sacral bone (sacrum + alae + anterior cortex + fracture + lesion) against the
reference sacrum (Dice, volume), how much of it lies in a reference ilium, the flags, the time,
and the plan's needles called safe checked on the reference at its own sub-millimetre grid (whatever
the scan's spacing): a needle whose axis leaves the
reference sacrum between where it enters the bone and its tip crossed a lumen, a joint or the cortex
(:func:`trajplan.planning.verify.axis_outside_bone`). The real data is read from ../shared and never written anywhere.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
from environment import SHARED_CT, numerical_stack  # benchmarks/environment.py, beside this script

from sample_ct.bone_only import SCANS, real_case, scanned_reference
from segmentation.metrics import dice, enclosed_canal
from segmentation.pipeline import segment
from trajplan import labels as lt
from trajplan.errors import InputError, NoSacrumError
from trajplan.io.atomic import atomic_path
from trajplan.planning import PlanOptions, plan_needles
from trajplan.planning.verify import axis_outside_bone, entry_offset_mm

REAL_BONE = SHARED_CT / "real_bone"
TARGET_DICE = {"own": 0.93, "2mm": 0.88, "3mm": 0.88, "osteo": 0.88, "fatty": 0.88, "noisy": 0.93, "thick": 0.88,
               "tilt_a": 0.88, "tilt_b": 0.88}
ISSUE_SCANS = ("own", "2mm", "3mm", "osteo", "fatty")   # the scans the issue sets targets on; the others are extra
MAX_IN_ILIUM = 0.01
END_TOLERANCE_MM = 1.5       # the needle's first and last this much may graze the reference surface


def measure(case: str, variant: str, *, plan: bool = True, draw: int = 0) -> dict:
    """Segment (and plan on) one real case: the row of the table."""
    ct, ref = real_case(REAL_BONE, case, variant, draw=draw)
    truth = ref.array == 1
    ml = ct.voxel_volume_ml
    row = {"case": case, "variant": variant, "spacing": " x ".join(f"{s:.2g}" for s in ct.spacing),
           "reference_ml": float(truth.sum() * ml), "dice": 0.0, "dice_with_coccyx": 0.0, "volume_ml": 0.0,
           "in_ilium": 0.0, "alae_ml": [0.0, 0.0], "canal": None, "lesion_ml": 0.0, "lesion_uncertain": False,
           "safe": 0, "leaving": 0, "crossing_ilium": 0, "entry_offsets": [], "plan": "not planned"}
    start = time.perf_counter()
    try:
        seg = segment(ct)
    except NoSacrumError as exc:                  # refused: a row of its own, the message as its flag
        return {**row, "seconds": time.perf_counter() - start, "partial": f"refused: {exc}",
                "plan": "no segmentation"}
    row["seconds"] = time.perf_counter() - start
    sacral = lt.sacral_bone(seg.labels.array)
    row.update({
        "dice": dice(sacral, truth), "dice_with_coccyx": dice(sacral | lt.mask(seg.labels, "coccyx"), truth),
        "volume_ml": float(sacral.sum() * ml),
        "in_ilium": float((sacral & np.isin(ref.array, (2, 3))).sum() / max(int(sacral.sum()), 1)),
        "alae_ml": [float(lt.mask(seg.labels, f"ala_{side}").sum() * ml) for side in lt.SIDES],
        "canal": _canal_shares(seg.labels, truth, ct.spacing),
        "partial": seg.report["partial_reason"] or "",
        "lesion_ml": float(lt.mask(seg.labels, "lesion").sum() * ml),
        "lesion_uncertain": seg.lesion_uncertain,
        "implausible": seg.implausible_reason,
    })
    if plan:
        try:
            result = plan_needles(seg.labels, PlanOptions(needles=3, mc_samples=100), ct=ct,
                                  lesion_uncertain=row["lesion_uncertain"], implausible=row["implausible"])
        except InputError as exc:
            row["plan"] = f"no plan: {str(exc)[:80]}"
            return row
        safe = [n for n in result["needles"] + result["alternatives"] if n["safe"]]
        # The needles are judged on the reference at its own, finest grid: resampled to 2-3 mm with
        # the scan, its voxels half covered by bone open holes in solid cortex (001 at 2 mm: one
        # voxel on a needle's axis whose own reference and CT, 400-900 HU, are solid bone there).
        native = scanned_reference(REAL_BONE, case, variant)
        checks = [axis_outside_bone(n, native, forbidden=(2, 3), end_tolerance_mm=END_TOLERANCE_MM,
                                    from_reference_entry=True) for n in safe]
        offsets = [entry_offset_mm(n, native) for n in safe]
        row.update(safe=len(safe), leaving=sum(mm > 0 for mm, _ in checks),
                   crossing_ilium=sum(ilium for _, ilium in checks), plan=result["outcome"],
                   entry_offsets=[mm for mm in offsets if mm is not None])
    return row


def _canal_shares(labels, truth: np.ndarray, spacing: np.ndarray) -> tuple[float, float]:
    """The shares of the reference canal (where its ring is closed: :func:`segmentation.metrics.enclosed_canal`)
    labelled ``canal`` and labelled sacral bone."""
    canal = enclosed_canal(truth, spacing)
    total = max(int(canal.sum()), 1)
    return (float((canal & lt.mask(labels, "canal")).sum() / total),
            float((canal & lt.sacral_bone(labels.array)).sum() / total))


def _offsets(mm: list[float]) -> str:
    """Median (range) of the bone entries' offsets from the reference, or a dash."""
    if not mm:
        return "-"
    return f"{np.median(mm):+.1f} ({min(mm):+.1f} to {max(mm):+.1f})"


def table(rows: list[dict]) -> str:
    """The markdown table of the rows."""
    lines = ["| case | scan | voxels mm | Dice sacral bone (target) | with the coccyx "
             "| sacral bone ml (reference) | alae ml L / R | in a reference ilium "
             "| reference canal labelled canal / bone | safe needles "
             "| leave the reference sacrum | cross an ilium | bone entry to the reference's, mm "
             "| lesion ml (none there) "
             "| seconds | flagged partial |",
             "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for r in rows:
        met = "met" if r["dice"] >= TARGET_DICE[r["variant"]] else "not met"
        needles = (f"{r['safe']}{' (no safe path)' if r['plan'] == 'no_safe_path' else ''} | {r['leaving']} "
                   f"| {r['crossing_ilium']} | {_offsets(r['entry_offsets'])}"
                   if r["plan"] in ("planned", "no_safe_path") else f"{r['plan']} | - | - | -")
        target = TARGET_DICE[r["variant"]]
        canal = "-" if r["canal"] is None else f"{r['canal'][0]:.2f} / {r['canal'][1]:.2f}"
        lines.append(f"| {r['case']} | {r['variant']} | {r['spacing']} | {r['dice']:.3f} (>= {target:.2f}, {met}) "
                     f"| {r['dice_with_coccyx']:.3f} | {r['volume_ml']:.0f} ({r['reference_ml']:.0f}) "
                     f"| {r['alae_ml'][0]:.0f} / {r['alae_ml'][1]:.0f} | {r['in_ilium']:.1%} | {canal} | {needles} "
                     f"| {r['lesion_ml']:.1f}{' (uncertain)' if r['lesion_uncertain'] else ''} "
                     f"| {r['seconds']:.0f} | {r['partial'] or 'no'} |")
    return "\n".join(lines)


def summary(rows: list[dict]) -> str:
    """One paragraph: the targets met, the needles that the reference contradicts, the unflagged failures."""
    issue = [r for r in rows if r["variant"] in ISSUE_SCANS]
    met = sum(r["dice"] >= TARGET_DICE[r["variant"]] for r in issue)
    extra = [r for r in rows if r["variant"] not in ISSUE_SCANS]
    extra_met = sum(r["dice"] >= TARGET_DICE[r["variant"]] for r in extra)
    refused = [f"{r['case']} {r['variant']}" for r in rows if r["plan"] == "no segmentation"]
    segmented = [r for r in rows if r["plan"] != "no segmentation"]
    leak = sum(r["in_ilium"] <= MAX_IN_ILIUM for r in segmented)
    safe = sum(r["safe"] for r in rows)
    bad = sum(max(r["leaving"], r["crossing_ilium"]) for r in rows)
    silent = [f"{r['case']} {r['variant']}" for r in rows
              if (r["dice"] < 0.5 or r["in_ilium"] > 0.2) and not r["partial"]]
    lesions = [r for r in rows if r["lesion_ml"] > 0]
    unmarked = [f"{r['case']} {r['variant']}" for r in lesions if not r["lesion_uncertain"]]
    return (f"Dice target met in {met} of {len(issue)} scans"
            + (f" (noisier or tilted, not among the issue's targets: {extra_met} of {len(extra)})" if extra else "")
            + (f"; refused (no sacrum told apart): {', '.join(refused)}" if refused else "")
            + f"; at most {MAX_IN_ILIUM:.0%} of the sacral bone in a reference ilium in {leak} of the "
            f"{len(segmented)} segmented. Of {safe} needles called safe, {bad} leave the reference "
            f"sacrum or cross an ilium. Results known to be wrong (Dice below 0.5 or over 20 % in an ilium) "
            f"passed on without a flag: {', '.join(silent) or 'none'}. Neither sacrum has a lytic lesion: one was "
            f"labelled in {len(lesions)} of {len(rows)} scans (dark fatty marrow), marked uncertain in "
            f"{len(lesions) - len(unmarked)} of them" + (f" (not in {', '.join(unmarked)})" if unmarked else "")
            + ". Seconds are wall time on 2 cores shared with other jobs.")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", default="docs/validation_real.md")
    parser.add_argument("--cases", nargs="+", default=["001", "003"])
    parser.add_argument("--variants", nargs="+", default=list(SCANS), choices=list(SCANS))
    parser.add_argument("--no-plan", action="store_true", help="segmentation figures only")
    parser.add_argument("--draw", type=int, default=0, help="another draw of the noise (0: the validation's)")
    args = parser.parse_args()
    if not REAL_BONE.is_dir():
        sys.exit(f"no real data at {REAL_BONE}: nothing to validate")
    rows = []
    for case in args.cases:
        for variant in args.variants:
            row = measure(case, variant, plan=not args.no_plan, draw=args.draw)
            print(f"{case} {variant}: Dice {row['dice']:.3f}, {row['volume_ml']:.0f} ml of {row['reference_ml']:.0f}, "
                  f"in ilium {row['in_ilium']:.1%}, {row['seconds']:.0f} s, safe {row['safe']}, "
                  f"leaving {row['leaving']}, crossing ilium {row['crossing_ilium']}, {row['plan']}; "
                  f"partial: {row['partial'] or 'no'}", flush=True)
            rows.append(row)
    drawn = f"\nNoise draw {args.draw} (`--draw {args.draw}`), not the validation's.\n" if args.draw else ""
    text = HEADER + drawn + f"\nLibraries: {numerical_stack()}.\n\n" + table(rows) + "\n\n" + summary(rows) + "\n"
    with atomic_path(args.out) as tmp:
        Path(tmp).write_text(text)
    print("wrote", args.out)


HEADER = """# Validation on real sacra

Data: two real pelvic CTs at sub-millimetre spacing with reference masks (FracSegNet test data, see
`../shared/ct/real_bone/README.md`), bone only in the source, made whole CTs by
`sample_ct.bone_only.with_soft_tissue` and scanned again by `sample_ct.bone_only.degraded`: `own` at
their own spacing, `2mm` and `3mm` block averaged with noise of sd 15 HU, `osteo` with the trabecular
bone darkened to a median of 90 HU (severe osteoporosis) and noise of sd 10 HU, `fatty` with the
trabecular bone turned to fatty marrow (a median of 0 HU, below the soft tissue's 35 HU, 30 % of its
texture kept: the alae and lower sacrum of elderly patients, as the real 3 mm whole CT and the Visible
Human pelvis show them, read -50 to +30 HU) and noise of sd 10 HU; `noisy` at its own spacing with noise
of sd 25 HU (a real pelvic CT at 1 mm: the Visible Human pelvis's soft tissue reads about 30 HU of
noise); `thick` with its slices 3 mm thick and its own pixels kept (block averaged along the head-to-foot
axis, noise of sd 15 HU: a CT as it is often archived); `tilt_a` and `tilt_b` with the patient lying
tilted, then scanned as `2mm` (`sample_ct.bone_only.turned` turns the whole CT about the sacrum's
centre on its own grid and the body is made again around the turned bones: `tilt_a` 10 degrees about
the left-right axis and 5 about the head-foot axis, `tilt_b` -10 about the left-right axis and 5 about
the front-back one). The source CTs lie as their patients lay; a sacrum tilted otherwise must be found
as well. The noisy, thick and tilted rows show how far the figures hold (they are not among the
issue's targets; the noisy one is held to the target at the scan's own spacing, 0.93, the thick one to
that at 3 mm, 0.88).
Sacral bone is `sacrum` + `ala_*` + `anterior_cortex` + `fracture` + `lesion`, against the reference
sacrum (solid bone: the canal, foramina and joint gaps are holes in it). The reference sacrum holds
the coccyx where the source drew it (case 003), which the segmentation labels `coccyx`: the column
"with the coccyx" counts that label as sacral bone too (the targets are judged without it). The
reference has no canal label: "reference canal" is where its canal's ring is closed, the holes of its
axial sections within 15 mm of its centre left to right (`segmentation.metrics.enclosed_canal`), and
the column gives the share of it labelled `canal` and the share labelled sacral bone (a canal the
planner takes for bone). A needle
called safe (chosen or alternative) "leaves the reference sacrum" when its axis runs outside it between
where it enters the bone and the tip for more than the first and last 1.5 mm: the bone entry is the
planned one or, where the axis from the skin meets the reference sacrum before it (bone the labels
left out), that point (a hole crossed in bone that the labels left out counts too; since 2026-12-07,
before which the planned entry was used); "crosses an ilium" when its axis
from the skin to the tip meets a reference ilium. Needles are judged on the reference at its own
sub-millimetre grid for every scan, turned with the patient for the tilted ones (the Dice at the
scan's grid): resampled to 2 or 3 mm, voxels that bone half covers open holes in solid cortex. "Bone
entry to the reference's" is, over those needles, the median (and range) of where the axis enters
the reference sacrum, measured from the planned bone entry (`entry_lps`) along the axis: positive
where the reference bone begins deeper than planned (a labelled surface proud of the bone), negative
where it begins before (bone the labels missed at the surface: the needle meets bone earlier than
`skin_to_bone_mm` says). Neither sacrum has a lytic lesion: the `lesion` column is the volume
labelled `lesion` anyway (dark fatty marrow), "(uncertain)" where `segmentation.json` marks it so
(`structures.lesion.quality`).

Each scan's noise is one draw, seeded by the case's name (the scan's noise apart from the soft
tissue's); `--draw N` makes another, and the figures move with it, which needles are called safe and
whether they stay in the bone included: see the known limits in [segmentation](segmentation.md),
which give a second draw's figures.

Regenerate: `python benchmarks/validate_real.py` (part of `make validate`).
"""


if __name__ == "__main__":
    main()
