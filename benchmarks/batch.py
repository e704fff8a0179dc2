"""Batch throughput: N phantom cases, cases per minute with 1 and 2 workers, peak memory per worker.

Usage: python benchmarks/batch.py [--cases 20] [--spacing 1.0] [--workers 1 2] [--report]

Each worker count runs on its own dask LocalCluster of single-threaded processes, so the peak
resident memory of every worker can be read back (``resource.getrusage`` in the worker).
"""

from __future__ import annotations

import argparse
import resource
import shutil
import tempfile
import time
from pathlib import Path

from dask.distributed import Client, LocalCluster

from sample_ct.phantom import PhantomParams, make_phantom, write_phantom
from trajplan.batch import BatchOptions, run_batch
from trajplan.planning import PlanOptions

FRACTURES = ("left", "right", "bilateral", "none")


def make_archive(root: Path, cases: int, spacing: float) -> None:
    for i in range(cases):
        params = PhantomParams(seed=100 + i, spacing=(spacing,) * 3, fracture=FRACTURES[i % 4],
                               lesion="left" if FRACTURES[i % 4] == "none" else "none",
                               osteoporosis=(i % 5) / 4)
        case = root / f"case{i:03d}"
        write_phantom(make_phantom(params), case)
        (case / "labels.nii.gz").unlink()  # the archive holds CTs only


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--cases", type=int, default=20)
    parser.add_argument("--spacing", type=float, default=1.0)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--report", action="store_true", help="also render report.html per case")
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="trajplan-bench-batch-"))
    try:
        start = time.perf_counter()
        make_archive(work / "archive", args.cases, args.spacing)
        print(f"made {args.cases} phantom cases at {args.spacing} mm in {time.perf_counter() - start:.1f} s")
        for workers in args.workers:
            with LocalCluster(n_workers=workers, threads_per_worker=1, processes=True,
                              dashboard_address=None) as cluster, Client(cluster) as client:
                start = time.perf_counter()
                result = run_batch(BatchOptions(
                    input=work / "archive", output=work / f"out{workers}", plan=PlanOptions(),
                    scheduler=cluster.scheduler_address, report=args.report))
                elapsed = time.perf_counter() - start
                peaks = client.run(peak_rss_mb)
            print(f"workers={workers}: {result['done']} done, {result['failed']} failed, "
                  f"{elapsed:.1f} s, {60 * result['ran'] / elapsed:.2f} cases/min, "
                  f"peak memory per worker {max(peaks.values()):.0f} MB")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
