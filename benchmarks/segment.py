"""Segmentation speed: wall time and peak memory of ``segmentation.pipeline.segment`` on a large CT.

Usage: python benchmarks/segment.py [--spacing 0.8 0.8 1.0] [--fov 409.6 409.6 300] [--seed 0]
                                    [--osteoporosis 0.0] [--position supine] [--repeat 1]
                                    [--real CASE [--real-bone DIR]]
                                    [--tracemalloc] [--profile N] [--strict]

The default case is a 512 x 512 x 300 phantom at 0.8 x 0.8 x 1 mm. The phantom is made in this
process and handed over as a NIfTI file; ``segment`` then runs in a fresh (spawned) process that
only reads the CT and segments it, so that process's peak resident set size
(``resource.getrusage``) is the memory a real run needs, CT included. The worker is spawned before
the phantom is made because Linux carries the parent's peak RSS over into a child's ``ru_maxrss``.
``--tracemalloc`` adds one more run under tracemalloc (numpy's allocations, without SimpleITK's) and
``--profile N`` one under cProfile printing the N most expensive functions; neither of those runs
is timed. The sacral-bone Dice against the phantom's ground truth is printed as well, so a fast but
broken segmentation does not pass as fast. Goals: <= 20 s and <= 4 GB; ``--strict`` exits 1 when one is missed.

``--real 001`` times a real sacrum instead: case ``001`` of ``../shared/ct/real_bone`` (or ``--real-bone
DIR``) at its own spacing with soft tissue added (:func:`sample_ct.bone_only.real_case`), its Dice against
the case's reference sacrum; goal <= 30 s. The real data is read from there, never copied.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import multiprocessing
import os
import pstats
import resource
import shutil
import statistics
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

import numpy as np
from environment import SHARED_CT  # benchmarks/environment.py, beside this script

GOAL_SECONDS = 20.0
GOAL_REAL_SECONDS = 30.0          # a real sacrum at its own spacing (0.86-0.97 mm)
GOAL_MB = 4096.0
REAL_BONE = SHARED_CT / "real_bone"


def _peak_rss_mb() -> float:
    """Peak resident set size of this process so far, in MB (Linux reports kB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _run_segment(ct_path: str, labels_path: str, repeat: int, trace: bool, profile: int) -> dict:
    """Child process: read the CT, time ``segment`` ``repeat`` times, measure its memory."""
    from segmentation.pipeline import segment
    from trajplan.io.files import read_volume_file, write_volume_file

    ct = read_volume_file(ct_path)
    result: dict = {"baseline_mb": _peak_rss_mb(), "seconds": []}
    seg = None
    for _ in range(repeat):
        start = time.perf_counter()
        seg = segment(ct)
        result["seconds"].append(time.perf_counter() - start)
        result.setdefault("first_peak_mb", _peak_rss_mb())
    result["peak_mb"] = _peak_rss_mb()
    if trace:
        tracemalloc.start()
        segment(ct)
        result["traced_peak_mb"] = tracemalloc.get_traced_memory()[1] / 2**20
        tracemalloc.stop()
    if profile:
        profiler = cProfile.Profile()
        profiler.runcall(segment, ct)
        text = io.StringIO()
        pstats.Stats(profiler, stream=text).sort_stats("cumulative").print_stats(profile)
        result["profile"] = text.getvalue()
    result["partial"] = seg.report.get("partial")
    write_volume_file(seg.labels, labels_path, compress=False)
    return result


def _dice(a: np.ndarray, b: np.ndarray) -> float:
    total = int(a.sum()) + int(b.sum())
    return 2.0 * int((a & b).sum()) / total if total else 1.0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--spacing", type=float, nargs=3, default=[0.8, 0.8, 1.0], metavar="MM")
    parser.add_argument("--fov", type=float, nargs=3, default=[409.6, 409.6, 300.0], metavar="MM")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--osteoporosis", type=float, default=0.0)
    parser.add_argument("--position", choices=("supine", "prone"), default="supine")
    parser.add_argument("--repeat", type=int, default=1, help="timed runs of segment (default 1)")
    parser.add_argument("--real", metavar="CASE", help="time the real sacrum CASE (e.g. 001) instead of a phantom")
    parser.add_argument("--real-bone", type=Path, default=REAL_BONE, metavar="DIR",
                        help=f"folder of the real sacra (default {REAL_BONE})")
    parser.add_argument("--tracemalloc", action="store_true", help="one more run under tracemalloc")
    parser.add_argument("--profile", type=int, default=0, metavar="N",
                        help="one more run under cProfile, print the N top functions")
    parser.add_argument("--strict", action="store_true", help="exit 1 when a goal is missed")
    args = parser.parse_args()
    if args.repeat < 1:
        parser.error("--repeat must be at least 1")
    if args.real and not (args.real_bone / f"{args.real}_ct.nii.gz").is_file():
        parser.error(f"no real case {args.real!r} in {args.real_bone} (its {args.real}_ct.nii.gz is absent)")

    from sample_ct.phantom import PhantomParams, make_phantom
    from trajplan import labels as lt
    from trajplan.io.files import read_volume_file, write_volume_file

    work = Path(tempfile.mkdtemp(prefix="trajplan-bench-segment-"))
    pool = multiprocessing.get_context("spawn").Pool(1)  # while this process is still small
    try:
        start = time.perf_counter()
        if args.real:
            from sample_ct.bone_only import real_case

            ct, reference = real_case(args.real_bone, args.real)
            truth, what, goal = reference.array == 1, f"real sacrum {args.real}", GOAL_REAL_SECONDS
        else:
            phantom = make_phantom(PhantomParams(seed=args.seed, spacing=tuple(args.spacing), fov_mm=tuple(args.fov),
                                                 osteoporosis=args.osteoporosis, position=args.position))
            ct, truth, what, goal = phantom.ct, lt.sacral_bone(phantom.labels), "phantom", GOAL_SECONDS
            del phantom
        ct_path = write_volume_file(ct, work / "ct.nii", compress=False)
        shape = "x".join(str(n) for n in ct.shape)
        spacing = "x".join(f"{s:g}" for s in ct.spacing)
        print(f"{what} {shape} voxels at {spacing} mm ({ct.array.nbytes / 2**20:.0f} MB {ct.array.dtype}), "
              f"made in {time.perf_counter() - start:.1f} s")
        del ct

        res = pool.apply(_run_segment, (str(ct_path), str(work / "labels.nii"), args.repeat,
                                        args.tracemalloc, args.profile))
        found = lt.sacral_bone(read_volume_file(work / "labels.nii"))

        seconds = res["seconds"]
        timing = f"{seconds[0]:.1f} s" if len(seconds) == 1 else \
            f"median {statistics.median(seconds):.1f} s, min {min(seconds):.1f} s over {len(seconds)} runs"
        load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
        print(f"segment wall time: {timing} (load average now {load} on {os.cpu_count()} cores)")
        print(f"peak memory (process RSS, CT included): {res['peak_mb']:.0f} MB "
              f"(after imports and reading the CT {res['baseline_mb']:.0f} MB; "
              f"after the first run {res['first_peak_mb']:.0f} MB)")
        if "traced_peak_mb" in res:
            print(f"peak traced allocations during segment (tracemalloc): {res['traced_peak_mb']:.0f} MB")
        print(f"sacral bone Dice vs {'the reference' if args.real else 'ground truth'}: {_dice(found, truth):.3f}; "
              f"partial: {res['partial']}")
        if "profile" in res:
            print(res["profile"])
        met_time = statistics.median(seconds) <= goal
        met_memory = res["peak_mb"] <= GOAL_MB
        print(f"goals: time <= {goal:g} s {'met' if met_time else 'MISSED'}, "
              f"memory <= {GOAL_MB / 1024:g} GB {'met' if met_memory else 'MISSED'}")
        return 1 if args.strict and not (met_time and met_memory) else 0
    finally:
        pool.terminate()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
