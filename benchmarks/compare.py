"""Technique comparison throughput: a phantom cohort through `trajplan compare`, wall time and memory.

Usage: python benchmarks/compare.py [--cohort 30] [--spacing 1.5] [--workers 2] [--segment]

Target (issue 8): a 30-case cohort in <= 10 min on 2 cores. Prints the wall time, the time per
case, and the peak resident memory of this process and its children (the dask workers).
"""

from __future__ import annotations

import argparse
import resource
import tempfile
import time

from trajplan.compare import CompareOptions, run_compare


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cohort", type=int, default=30)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--spacing", type=float, nargs="+", default=[1.5])
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--segment", action="store_true")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as out:
        start = time.perf_counter()
        result = run_compare(out, cohort_size=args.cohort, seed=args.seed, spacings=tuple(args.spacing),
                             options=CompareOptions(segment=args.segment), workers=args.workers)
        seconds = time.perf_counter() - start
    children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"cohort {args.cohort} at {' '.join(map(str, args.spacing))} mm, {args.workers} workers, "
          f"{'segmentation' if args.segment else 'ground truth'}: {seconds:.1f} s "
          f"({seconds / 60:.1f} min, target <= 10 min), {seconds / args.cohort:.1f} s per case; "
          f"{result['rows']} rows, failed cases: {result['failed_cases'] or 'none'}; "
          f"peak memory: main {own:.0f} MB, largest worker {children:.0f} MB")


if __name__ == "__main__":
    main()
