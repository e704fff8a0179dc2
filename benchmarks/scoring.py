"""Screening speed: paths/s of ``trajplan.planning.scoring.fast_slack`` against the memory-bandwidth limit.

Usage: python benchmarks/scoring.py [--paths 1000000] [--spacing 1.5] [--chunks 65536 8192]
                                    [--repeats 3] [--copy-mb 256]

The candidates are the planner's own (every technique and side of a 1.5 mm bilateral-fracture
phantom, after the technique limits), repeated up to ``--paths``. Each figure is the best of
``--repeats`` runs, in this process and in two forked worker processes that each screen half.

Memory bandwidth is that of a large ``np.copyto`` (read + write counted, as in STREAM "copy"),
measured in one process and in two at once (the sum of the two). Two limits follow from it:

- compulsory traffic: the path endpoints read (2 x 3 float64) and the two results written
  (float32 + int32), 56 B/path; the distance and bone maps of the crop stay in the cache;
- streamed traffic: the bytes that ``fast_slack``'s numpy passes write and read back per path
  (:func:`streamed_bytes_per_path`, an estimate from its code); when a chunk's temporaries
  outgrow the cache they go through memory, and this is the limit that binds.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import time

import numpy as np

from sample_ct.phantom import PhantomParams, make_phantom
from trajplan.labels import Side
from trajplan.needle import Technique, radius_mm
from trajplan.planning.candidates import candidate_pairs, find_landmarks, find_targets
from trajplan.planning.defaults import resolve_margins
from trajplan.planning.distance import build_distance_maps
from trajplan.planning.scoring import FAST_SAMPLES, fast_slack, path_angles, technique_ok

TARGET_PATHS_PER_S = 1_000_000   # the planner's goal, on 2 cores
COMPULSORY_BYTES = 2 * 3 * 8 + 4 + 4

# Filled in the parent before the workers fork, so they share it copy-on-write.
_STATE: dict = {}


def streamed_bytes_per_path(samples: int = FAST_SAMPLES) -> int:
    """Bytes of numpy temporaries written and read back per path by ``fast_slack``.

    Per path: two ``world_to_index`` calls (float64 subtract, 3x3 product, divide), the float32
    copies, clips and half-voxel shifts (about 230 B). Per axis sample and axis: the float32
    coordinate written, shifted in place and converted (4 + 8 + 8 B), its int32 product with
    the stride (8 B) added to the flat index (12 B); then the slack gather (index 4 in, 4 out,
    4 read by the minimum) and the outside gather (4 in, 1 out, 1 read by the sum).
    """
    setup = 2 * (3 * 24 + 36) + 3 * 12
    per_sample = 3 * (4 + 8 + 8 + 8 + 12) + 12
    return setup + samples * per_sample + (samples - 1) * 6


def planner_paths(spacing: float) -> tuple[np.ndarray, np.ndarray, int]:
    """Distance maps and the planner's candidates (after technique limits) on a phantom.

    Returns
    -------
    entries, tips : (n, 3) LPS mm
    map_bytes : bytes of the slack and bone maps that every gather reads
    """
    phantom = make_phantom(PhantomParams(seed=0, spacing=(spacing,) * 3, fracture="bilateral"))
    maps = build_distance_maps(phantom.labels, resolve_margins())
    marks = find_landmarks(maps)
    radius = radius_mm(11)
    entries, tips = [], []
    for side in Side:
        targets = find_targets(maps, marks, side)
        for technique in Technique:
            e, t, n = candidate_pairs(maps, marks, targets, technique, side, radius_mm=radius)
            vec = t - e
            length = np.linalg.norm(vec, axis=1)
            angles = path_angles(vec / np.maximum(length, 1e-9)[:, None], n, side.sign, marks.axis)
            ok = technique_ok(technique, angles, length)
            entries.append(e[ok])
            tips.append(t[ok])
    _STATE["maps"] = maps
    return np.concatenate(entries), np.concatenate(tips), maps.slack.nbytes + maps.bone.nbytes


def _screen(lo: int, hi: int, chunk: int) -> float:
    """CPU seconds of this process to screen paths ``lo:hi`` of the shared candidates."""
    start = time.process_time()
    fast_slack(_STATE["maps"], _STATE["entries"][lo:hi], _STATE["tips"][lo:hi], chunk=chunk)
    return time.process_time() - start


def _timed(run) -> tuple[float, float]:
    """(wall seconds, CPU seconds summed over processes) of ``run()``, which returns CPU seconds."""
    start = time.perf_counter()
    cpu = run()
    return time.perf_counter() - start, float(np.sum(cpu))


def _copy_bandwidth(nbytes: int, repeats: int) -> float:
    """Bytes/s of the fastest of ``repeats`` large copies (read + write counted)."""
    src = np.ones(nbytes // 8)
    dst = np.empty_like(src)
    np.copyto(dst, src)                 # untimed: maps the destination's pages
    best = np.inf
    for _ in range(repeats):
        start = time.perf_counter()
        np.copyto(dst, src)
        best = min(best, time.perf_counter() - start)
    return 2 * src.nbytes / best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--paths", type=int, default=1_000_000)
    parser.add_argument("--spacing", type=float, default=1.5)
    parser.add_argument("--chunks", type=int, nargs="+", default=[65536, 8192],
                        help="fast_slack chunk sizes to time (8192 is the planner's)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--copy-mb", type=int, default=256, help="size of each array of the copy test")
    args = parser.parse_args()

    entries, tips, map_bytes = planner_paths(args.spacing)
    reps = -(-args.paths // len(entries))
    _STATE["entries"] = np.tile(entries, (reps, 1))[:args.paths]
    _STATE["tips"] = np.tile(tips, (reps, 1))[:args.paths]
    n = args.paths
    print(f"load average before the run: {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores "
          "(other processes make the wall-clock figures lower)")
    print(f"{len(entries)} distinct planner candidates on a {args.spacing:g} mm phantom, repeated to {n} paths;"
          f" {FAST_SAMPLES} axis samples per path; slack + bone maps {map_bytes / 1e6:.1f} MB")

    copy_bytes = args.copy_mb * 2**20
    bandwidth = {1: _copy_bandwidth(copy_bytes, max(args.repeats, 5))}
    ctx = multiprocessing.get_context("fork")
    with ctx.Pool(2) as pool:
        pool.starmap(_screen, [(0, 1000, 1000)] * 2)            # warm both workers up
        bandwidth[2] = sum(pool.starmap(_copy_bandwidth, [(copy_bytes, max(args.repeats, 5))] * 2))
        half = n // 2
        timings = {}
        for chunk in args.chunks:
            _screen(0, min(n, 1000), chunk)
            timings[(1, chunk)] = min(_timed(lambda: _screen(0, n, chunk)) for _ in range(args.repeats))
            calls = [(0, half, chunk), (half, n, chunk)]
            timings[(2, chunk)] = min(_timed(lambda: pool.starmap(_screen, calls)) for _ in range(args.repeats))
    for procs in (1, 2):
        print(f"memory bandwidth, {procs} process{'es' if procs > 1 else ''}: {bandwidth[procs] / 1e9:.1f} GB/s "
              f"(np.copyto of {args.copy_mb} MB, read + write)")

    streamed = streamed_bytes_per_path()
    print(f"traffic per path: compulsory {COMPULSORY_BYTES} B, streamed by fast_slack's numpy passes "
          f"~{streamed} B (estimate)")
    print(f"{'processes':>9} {'chunk':>7} {'paths/s':>11} {'paths/CPU-s':>12} {'compulsory limit':>17} "
          f"{'% of it':>8} {'streamed limit':>15} {'% of it':>8}")
    for (procs, chunk), (wall, cpu) in sorted(timings.items()):
        rate = n / wall
        compulsory = bandwidth[procs] / COMPULSORY_BYTES
        streamed_limit = bandwidth[procs] / streamed
        print(f"{procs:>9} {chunk:>7} {rate:>11,.0f} {n / cpu:>12,.0f} {compulsory:>17,.0f} "
              f"{100 * rate / compulsory:>7.1f}% {streamed_limit:>15,.0f} {100 * rate / streamed_limit:>7.0f}%")
    best = max(n / wall for (procs, _), (wall, _) in timings.items() if procs == 2)
    per_cpu = max(n / cpu for (procs, _), (_, cpu) in timings.items() if procs == 2)
    for chunk in sorted(args.chunks):
        share = max(n / timings[(procs, chunk)][0] * streamed / bandwidth[procs] for procs in (1, 2))
        bound = "memory traffic" if share >= 0.5 else "numpy's per-element work (index arithmetic, gathers)"
        print(f"with chunks of {chunk} paths (temporaries {chunk * FAST_SAMPLES * 16 / 2**20:.1f} MB) fast_slack "
              f"moves {100 * share:.0f}% of the bytes memory could stream: it is bound by {bound}")
    verdict = "met" if best >= TARGET_PATHS_PER_S else "NOT met"
    print(f"goal {TARGET_PATHS_PER_S:,} paths/s on 2 cores: {verdict} (best {best:,.0f} paths/s wall; "
          f"2 idle cores would give at most ~{2 * per_cpu:,.0f} paths/s from the CPU time)")


if __name__ == "__main__":
    main()
