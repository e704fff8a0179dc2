"""The ``trajplan`` command line: argument parsing only; every command calls a library function.

Exit codes: 0 done, 2 bad input or arguments (one clear line on stderr, no
traceback), 1 internal error (traceback only with ``-v``), 3 plan written but no
needle path is safe (``trajplan plan``; the warnings say what blocks each side), 4 an
output could not be written (full disk, read-only or forbidden folder, a file in the
way, a vanished folder: one line naming the path and the cause).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import traceback
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

import numpy as np

from trajplan import __version__
from trajplan.errors import InputError, OutputError

if TYPE_CHECKING:
    from trajplan.planning import PlanOptions

log = logging.getLogger("trajplan")

EXIT_OK, EXIT_INTERNAL, EXIT_INPUT, EXIT_NO_SAFE_PATH, EXIT_OUTPUT = 0, 1, 2, 3, 4


class _Parser(argparse.ArgumentParser):
    """ArgumentParser whose errors are one clear line and exit code 2."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(EXIT_INPUT, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def _point(text: str) -> np.ndarray:
    """Parse ``X,Y,Z`` (LPS mm) into a float array."""
    try:
        values = [float(v) for v in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected X,Y,Z in mm, got {text!r}") from None
    if len(values) != 3 or not np.all(np.isfinite(values)):
        raise argparse.ArgumentTypeError(f"expected three finite numbers X,Y,Z in mm, got {text!r}")
    return np.asarray(values)


def _spacing(text: str) -> tuple[float, float, float]:
    """Parse ``S`` or ``SX,SY,SZ`` (mm)."""
    try:
        values = [float(v) for v in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a spacing in mm such as 1 or 0.8,0.8,1, got {text!r}") from None
    if len(values) == 1:
        values *= 3
    if len(values) != 3:
        raise argparse.ArgumentTypeError(f"expected one or three spacings, got {text!r}")
    return (values[0], values[1], values[2])


def _port(text: str) -> int:
    """Parse a TCP port, 0 (any free port) to 65535."""
    try:
        port = int(text)
    except ValueError:
        port = -1
    if not 0 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"expected a port 0-65535, got {text!r}")
    return port


def _margins(text: str) -> dict[str, float]:
    """Parse ``NAME=MM[,NAME=MM...]`` safety margins."""
    out: dict[str, float] = {}
    for item in text.split(","):
        name, sep, value = item.partition("=")
        try:
            out[name.strip()] = float(value)
        except ValueError:
            sep = ""
        if not sep or not name.strip():
            raise argparse.ArgumentTypeError(
                f"expected margins as NAME=MM[,NAME=MM...] (e.g. canal=3,foramen=3), got {text!r}"
            )
    return out


def _add_input_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("ct", metavar="CT", help="CT: a DICOM series folder or a NIfTI/NRRD/MHA file")
    p.add_argument("--series", metavar="UID", help="pick one series when a DICOM folder holds several")


def _add_mask_options(p: argparse.ArgumentParser, *, label_map: bool) -> None:
    p.add_argument("--sacrum-mask", metavar="FILE",
                   help="external sacrum mask (e.g. TotalSegmentator sacrum.nii.gz) replacing the bone/sacrum step")
    if label_map:
        p.add_argument("--labels", metavar="PATH",
                       help="a trajplan label map file (labels.nii.gz on the CT grid), or a plan or segment "
                            "output folder holding one, used instead of segmenting; or a TotalSegmentator "
                            "output folder")
    else:
        p.add_argument("--labels", metavar="PATH",
                       help="TotalSegmentator output: a folder with sacrum.nii.gz, hip_left.nii.gz, ... "
                            "or its multilabel file")


def _add_plan_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--technique", choices=("short", "long", "both"), default="both")
    p.add_argument("--gauge", type=int, choices=(11, 13), default=11, help="needle gauge (default 11)")
    p.add_argument("--needles", type=int, choices=range(1, 6), default=2, metavar="N",
                   help="needles in the plan, 1-5 (default 2)")
    p.add_argument("--side", choices=("left", "right", "both"), default="both")
    p.add_argument("--margins", type=_margins, metavar="NAME=MM,...",
                   help="safety margins in mm, e.g. canal=3,foramen=3,anterior_cortex=2,si_joint=2")
    p.add_argument("--seed", type=int, default=0, help="seed of the placement-error Monte Carlo")
    _add_config_option(p)


def _add_config_option(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", metavar="FILE.toml",
                   help="planning settings file: margins, score weights, Monte Carlo samples and placement "
                        "errors, needle separation, needle lengths (see docs/planning.md); --margins wins over it")


def _settings(args: argparse.Namespace) -> dict:
    """PlanOptions keyword arguments of ``--config`` (none without it), with ``--margins`` over its margins."""
    from trajplan.settings import merge_margins, read_settings

    settings = read_settings(args.config) if getattr(args, "config", None) else {}
    return merge_margins(settings, args.margins)


def _plan_options(args: argparse.Namespace) -> PlanOptions:
    from trajplan.planning import PlanOptions

    return PlanOptions(
        technique=args.technique, gauge=args.gauge, needles=args.needles, side=args.side,
        seed=args.seed, **{"margins_mm": args.margins, **_settings(args)},
    )


def _split_labels(path: str | None) -> tuple[str | None, str | None]:
    """``--labels`` of plan/evaluate: (trajplan label map, TotalSegmentator folder).

    A folder holding a trajplan ``labels.nii.gz`` (a plan or segmentation folder) gives that file;
    any other folder is TotalSegmentator output.
    """
    from pathlib import Path

    if path is None:
        return None, None
    if not Path(path).exists():
        raise InputError(f"{path}: no such file or folder")
    if Path(path).is_dir():
        own = Path(path) / "labels.nii.gz"
        return (str(own), None) if own.is_file() else (None, path)
    return path, None


def _ras_to_lps(point: np.ndarray) -> np.ndarray:
    """LPS of a RAS point (x and y negated; the same map both ways)."""
    return np.asarray(point, dtype=float) * np.array([-1.0, -1.0, 1.0])


# ------------------------------------------------------------------ commands
def cmd_phantom(args: argparse.Namespace) -> dict:
    from sample_ct.phantom import PhantomParams, make_phantom, write_phantom

    given = {
        "seed": args.seed, "spacing": args.spacing, "fracture": args.fracture, "lesion": args.lesion,
        "lesion_radius_mm": args.lesion_radius, "osteoporosis": args.osteoporosis,
        "noise_hu": args.noise, "position": args.position,
    }
    params = PhantomParams(**{k: v for k, v in given.items() if v is not None})
    written = write_phantom(make_phantom(params), args.output, dicom=args.dicom)
    return {"output": args.output, "files": {k: str(v) for k, v in written.items()}}


def cmd_segment(args: argparse.Namespace) -> dict:
    from trajplan.pipeline import run_segment

    return run_segment(args.ct, args.output, series_uid=args.series,
                       sacrum_mask_path=args.sacrum_mask, ts_labels_path=args.labels)


def cmd_plan(args: argparse.Namespace) -> dict:
    from trajplan.pipeline import run_plan

    labels_file, ts_folder = _split_labels(args.labels)
    return run_plan(args.ct, args.output, _plan_options(args), series_uid=args.series,
                    labels_path=labels_file, ts_labels_path=ts_folder,
                    sacrum_mask_path=args.sacrum_mask, report=not args.no_report,
                    case_name=args.case_name, position=args.position)


def cmd_evaluate(args: argparse.Namespace) -> dict:
    from trajplan.pipeline import run_evaluate
    from trajplan.settings import read_settings

    coordinates = args.coords or "lps"
    if args.markup:
        from trajplan.plan_io import markup_coordinate_system, read_line_markup

        if args.coords:
            raise InputError("--coords is for --entry/--target; a --markup file declares its own "
                             "coordinateSystem (LPS or RAS)")

        entry, target = read_line_markup(args.markup)     # LPS: the file says how it was saved
        coordinates = markup_coordinate_system(args.markup)
    elif args.entry is not None and args.target is not None:
        entry, target = args.entry, args.target
        if coordinates == "ras":
            entry, target = _ras_to_lps(entry), _ras_to_lps(target)
    else:
        raise InputError("give --entry X,Y,Z and --target X,Y,Z (LPS mm, or RAS with --coords ras), "
                         "or --markup FILE")
    labels_file, ts_folder = _split_labels(args.labels)
    return run_evaluate(args.ct, entry, target, gauge=args.gauge, margins_mm=args.margins,
                        series_uid=args.series, labels_path=labels_file, ts_labels_path=ts_folder,
                        sacrum_mask_path=args.sacrum_mask, coordinates=coordinates, out_dir=args.output,
                        case_name=args.case_name, position=args.position,
                        settings=read_settings(args.config) if args.config else None)


def cmd_render(args: argparse.Namespace) -> dict:
    from trajplan.render import render_plan_dir

    written = render_plan_dir(args.plan_dir, window=args.window)
    return {"output": args.plan_dir, "files": {k: str(v) for k, v in written.items()}}


def cmd_view(args: argparse.Namespace) -> dict:
    from trajplan.viewer.server import run

    return run(args.plan_dir, port=args.port, open_browser=not args.no_browser, ct_path=args.ct,
               series_uid=args.series)


def cmd_export(args: argparse.Namespace) -> dict:
    from trajplan.export import run_export

    return run_export(args.plan_dir, args.ct, args.dicom, series_uid=args.series)


def cmd_batch(args: argparse.Namespace) -> dict:
    from trajplan.batch import BatchOptions, run_batch

    return run_batch(BatchOptions(
        input=args.input, output=args.output, workers=args.workers, scheduler=args.scheduler,
        retry_failed=args.retry_failed, keep_names=args.keep_names, report=not args.no_report,
        plan=_plan_options(args),
    ))


def cmd_compare(args: argparse.Namespace) -> dict:
    from trajplan.compare import CompareOptions, run_compare

    if args.workers < 1:
        raise InputError(f"--workers must be at least 1, got {args.workers}")
    options = CompareOptions(gauges=tuple(args.gauges), needle_counts=tuple(range(1, args.max_needles + 1)),
                             segment=args.segment, mc_samples=args.mc_samples)
    return run_compare(args.output, cohort_size=args.cohort, seed=args.seed, spacings=tuple(args.spacing),
                       from_batch=args.from_batch, options=options, workers=args.workers, scheduler=args.scheduler)


def _add_common_options(p: argparse.ArgumentParser, *, default: bool) -> None:
    """-v/-q/--json, accepted before or after the command (sub-parsers do not reset them)."""
    kw = {} if default else {"default": argparse.SUPPRESS}
    p.add_argument("-v", "--verbose", action="count", help="more log output (tracebacks)",
                   **({"default": 0} if default else kw))
    p.add_argument("-q", "--quiet", action="store_true", help="errors only", **kw)
    p.add_argument("--json", action="store_true", help="print a machine-readable result on stdout", **kw)


def build_parser() -> argparse.ArgumentParser:
    """The full ``trajplan`` argument parser."""
    fmt = argparse.RawDescriptionHelpFormatter
    parser = _Parser(
        prog="trajplan",
        description="CT-guided needle trajectory planning for sacroplasty.",
        epilog="example:\n  trajplan phantom -o case --seed 1 --fracture left\n"
               "  trajplan plan case/ct.nii.gz -o case_plan",
        formatter_class=fmt,
    )
    parser.add_argument("--version", action="version", version=f"trajplan {__version__}")
    _add_common_options(parser, default=True)
    common = argparse.ArgumentParser(add_help=False)
    _add_common_options(common, default=False)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)

    def command(name: str, func: Callable, help_: str, example: str) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help_, description=help_, epilog=f"example:\n  {example}",
                           formatter_class=fmt, parents=[common])
        p.set_defaults(func=func)
        return p

    p = command("phantom", cmd_phantom, "make a synthetic sacrum CT with ground-truth labels",
                "trajplan phantom -o case --seed 3 --spacing 1 --fracture bilateral --osteoporosis 0.7")
    p.add_argument("-o", "--output", required=True, metavar="DIR")
    p.add_argument("--seed", type=int, help="random seed (default 0)")
    p.add_argument("--spacing", type=_spacing, metavar="MM", help="voxel size in mm: S or SX,SY,SZ (0.5-3)")
    p.add_argument("--fracture", choices=("none", "left", "right", "bilateral"))
    p.add_argument("--lesion", choices=("none", "left", "right", "body"))
    p.add_argument("--lesion-radius", type=float, metavar="MM")
    p.add_argument("--osteoporosis", type=float, metavar="0..1", help="0 normal bone .. 1 severe")
    p.add_argument("--noise", type=float, metavar="HU", help="image noise sigma")
    p.add_argument("--position", choices=("supine", "prone"))
    p.add_argument("--dicom", action="store_true", help="also write a DICOM series to DIR/dicom/")

    p = command("segment", cmd_segment, "segment the sacrum and its critical parts",
                "trajplan segment case/ct.nii.gz -o case_seg")
    _add_input_options(p)
    p.add_argument("-o", "--output", required=True, metavar="DIR")
    _add_mask_options(p, label_map=False)

    p = command("plan", cmd_plan, "plan ranked needle paths and write the plan folder",
                "trajplan plan case/ct.nii.gz -o case_plan --technique both --needles 2 --gauge 11")
    _add_input_options(p)
    p.add_argument("-o", "--output", required=True, metavar="DIR")
    _add_mask_options(p, label_map=True)
    _add_plan_options(p)
    p.add_argument("--no-report", action="store_true", help="skip report.html and its views")
    p.add_argument("--case-name", metavar="TEXT",
                   help="name of the case in plan.json, the report and card.html (default: its anonymous id)")
    p.add_argument("--position", choices=("prone", "supine"),
                   help="how the patient lies on the table, for the gantry tilt's direction "
                        "(default: the DICOM PatientPosition, else prone)")

    p = command("evaluate", cmd_evaluate, "metrics, verdict and procedure card of one hand-drawn needle path",
                "trajplan evaluate case/ct.nii.gz --entry 35,60,10 --target 30,20,20 --gauge 11\n"
                "  trajplan evaluate case/ct.nii.gz --labels case_plan --markup line.mrk.json -o check")
    _add_input_options(p)
    p.add_argument("--entry", type=_point, metavar="X,Y,Z",
                   help="entry point in mm (LPS, or RAS with --coords ras): on the bone, or on the skin "
                        "(the line is then scored from where it enters the sacral bone)")
    p.add_argument("--target", type=_point, metavar="X,Y,Z", help="tip point in mm (LPS, or RAS with --coords ras)")
    p.add_argument("--coords", choices=("lps", "ras"),
                   help="coordinate system of --entry/--target (default lps; ras: as 3D Slicer shows points). "
                        "A --markup file says its own")
    p.add_argument("--markup", metavar="FILE",
                   help="a 3D Slicer line markup (.mrk.json, LPS or RAS as it declares) instead")
    p.add_argument("--gauge", type=int, choices=(11, 13), default=11)
    p.add_argument("--margins", type=_margins, metavar="NAME=MM,...")
    _add_mask_options(p, label_map=True)
    p.add_argument("-o", "--output", metavar="DIR",
                   help="also write evaluation.json, card.html, evaluation.mrk.json and the CT slices "
                        "along the needle (slices/) into DIR")
    p.add_argument("--case-name", metavar="TEXT", help="name of the case in evaluation.json and card.html")
    _add_config_option(p)
    p.add_argument("--position", choices=("prone", "supine"),
                   help="how the patient lies, for the gantry tilt's direction on the card "
                        "(default: the DICOM PatientPosition, else prone)")

    p = command("render", cmd_render, "re-render the views and report of a plan folder",
                "trajplan render case_plan --window soft")
    p.add_argument("plan_dir", metavar="PLAN_DIR")
    p.add_argument("--window", choices=("bone", "soft"), default="bone",
                   help="CT slices in the bone (W 2000 / L 400) or soft-tissue (W 400 / L 40) window")

    p = command("view", cmd_view, "open a plan folder in a local interactive viewer: edit needles, re-score, save",
                "trajplan view case_plan --port 8765 --no-browser --ct case/ct.nii.gz")
    p.add_argument("plan_dir", metavar="PLAN_DIR")
    p.add_argument("--port", type=_port, default=0, metavar="N",
                   help="port on 127.0.0.1 (default: any free port)")
    p.add_argument("--no-browser", action="store_true", help="print the address only, do not open a browser")
    p.add_argument("--ct", metavar="CT", help="the plan's whole CT (file or DICOM folder, checked against plan.json): "
                                              "edits are scored on it, skin entry included, as by evaluate")
    p.add_argument("--series", metavar="UID", help="the series of --ct when its folder holds several")

    p = command("export", cmd_export, "write a plan as DICOM for PACS; the one output with patient identifiers",
                "trajplan export case_plan --ct case/dicom --dicom case_pacs")
    p.description = ("write a plan as DICOM for PACS and the CT console: a Segmentation of the labels on the source "
                     "series and a Secondary Capture series of the plan's pictures. This is the one output that "
                     "carries the patient's and the study's identifiers (copied from the source series, as it goes "
                     "back into that patient's record); every other output stays free of them")
    p.add_argument("plan_dir", metavar="PLAN_DIR", help="a plan folder made from a DICOM series")
    p.add_argument("--ct", required=True, metavar="DICOM_FOLDER",
                   help="the DICOM series folder the plan was made from (checked against plan.json's checksum)")
    p.add_argument("--series", metavar="UID", help="the series of --ct when its folder holds several")
    p.add_argument("--dicom", required=True, metavar="OUT",
                   help="folder to write: segmentation.dcm, pictures/*.dcm, export.json (complete or absent); "
                        "its DICOM files carry patient and study identifiers")

    p = command("batch", cmd_batch, "plan many archived scans, resumably, locally or on Dask",
                "trajplan batch archive/ -o scores --workers 2")
    p.add_argument("input", metavar="INPUT", help="a folder of cases or a CSV manifest")
    p.add_argument("-o", "--output", required=True, metavar="DIR")
    p.add_argument("--workers", type=int, default=1, metavar="N")
    p.add_argument("--scheduler", metavar="ADDRESS", help="dask.distributed scheduler, tcp://HOST:PORT")
    p.add_argument("--retry-failed", action="store_true", help="redo cases that failed before")
    p.add_argument("--keep-names", action="store_true", help="name case folders after the inputs")
    p.add_argument("--no-report", action="store_true")
    _add_plan_options(p)

    p = command("compare", cmd_compare, "compare short vs long axis, 11 vs 13 G, 1-5 needles on a phantom cohort",
                "trajplan compare -o cmp --cohort 30 --seed 0 --spacing 1.5 --workers 2\n"
                "  trajplan compare -o cmp_real --from-batch scores")
    p.add_argument("-o", "--output", required=True, metavar="DIR")
    p.add_argument("--cohort", type=int, default=30, metavar="N", help="phantoms in the cohort (default 30)")
    p.add_argument("--seed", type=int, default=0, help="cohort seed (default 0)")
    p.add_argument("--spacing", type=float, nargs="+", default=[1.5], metavar="MM",
                   help="isotropic phantom voxel size(s) in mm, cycled over the cases (default 1.5)")
    p.add_argument("--segment", action="store_true",
                   help="plan on trajplan's segmentation of each phantom instead of its ground truth")
    p.add_argument("--from-batch", metavar="BATCH_OUT", help="compare on the finished cases of a trajplan batch output")
    p.add_argument("--gauges", type=int, nargs="+", choices=(11, 13), default=[11, 13], metavar="G")
    p.add_argument("--max-needles", type=int, choices=range(1, 6), default=5, metavar="N",
                   help="plans of 1..N needles (default 5)")
    p.add_argument("--mc-samples", type=int, default=200, metavar="N", help="placement-error samples per needle")
    p.add_argument("--workers", type=int, default=1, metavar="N")
    p.add_argument("--scheduler", metavar="ADDRESS", help="dask.distributed scheduler, tcp://HOST:PORT")

    return parser


def _configure_logging(verbose: int, quiet: bool) -> None:
    level = logging.ERROR if quiet else (logging.DEBUG if verbose > 1 else
                                         logging.INFO if verbose else logging.WARNING)
    logging.basicConfig(level=level, format="%(levelname)s: %(message)s", stream=sys.stderr)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "command", None):
        parser.print_help(sys.stderr)
        return EXIT_INPUT
    _configure_logging(args.verbose, args.quiet)
    try:
        result = args.func(args)
    except InputError as exc:
        print(f"trajplan {args.command}: error: {exc}", file=sys.stderr)
        return EXIT_INPUT
    except OutputError as exc:
        if args.verbose:
            traceback.print_exc()
        print(f"trajplan {args.command}: error: {exc}", file=sys.stderr)
        return EXIT_OUTPUT
    except KeyboardInterrupt:
        print(f"trajplan {args.command}: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # noqa: BLE001 - the one place that turns bugs into exit code 1
        if args.verbose:
            traceback.print_exc()
        print(f"trajplan {args.command}: internal error: {type(exc).__name__}: {exc} "
              "(run with -v for the traceback)", file=sys.stderr)
        return EXIT_INTERNAL
    if args.json:
        print(json.dumps(result, indent=2, default=str))
    elif not args.quiet:
        _print_result(args.command, result)
    if result.get("outcome") == "no_safe_path":
        print(f"trajplan {args.command}: no safe needle path; plan written with the closest candidates "
              f"and the reasons in {result.get('output')}", file=sys.stderr)
        return EXIT_NO_SAFE_PATH
    return EXIT_OK


def _print_result(command: str, result: dict) -> None:
    """Short human summary of a command's result on stdout."""
    if command == "evaluate":
        verdict = result.get("verdict", "?")
        reasons = ", ".join(result.get("reasons", [])) or "none"
        print(f"verdict: {verdict} (reasons: {reasons})")
        note = (result.get("drawn_line") or {}).get("note")
        if note:
            print(f"  {note}")
        for name, mm in sorted(result.get("clearance_mm", {}).items()):
            print(f"  clearance {name}: {mm} mm")
        if "output" in result:
            print(f"evaluate: outputs in {result['output']}")
        return
    if "output" in result:
        print(f"{command}: outputs in {result['output']}")
    if command == "export":
        print(f"  {result['segments']} segments in segmentation.dcm, {len(result['files']) - 1} pictures; "
              "these files carry the patient's and the study's identifiers")
    if command == "compare":
        print(f"  {result['cases']} cases, {result['rows']} rows in comparison.csv, comparison.md "
              f"({result['seconds']} s); failed: {', '.join(result['failed_cases']) or 'none'}")
    if command == "plan":
        print(f"  {result.get('safe_needles')} safe of {result.get('needles')} needles; "
              f"best: {result.get('best_technique')} (score {result.get('best_score')})")
        for warning in result.get("warnings", []):
            print(f"  warning: {warning}")
