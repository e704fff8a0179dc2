"""Whole-plan speed: `trajplan plan` on a 1 mm phantom (segmentation included), wall time and peak memory.

Usage: python benchmarks/plan.py [--spacing 1.0] [--seed 0] [--report]

The phantom is written first; the plan then runs as a fresh `python -m trajplan plan` process,
whose peak resident memory (ru_maxrss of the child) is what a real run needs. Goal: <= 30 s and
<= 4 GB on 2 cores.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from sample_ct.phantom import PhantomParams, make_phantom, write_phantom


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--spacing", type=float, default=1.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--report", action="store_true", help="also render report.html (as `plan` does by default)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="trajplan-bench-plan-") as tmp:
        case = Path(tmp) / "case"
        phantom = make_phantom(PhantomParams(seed=args.seed, spacing=(args.spacing,) * 3, fracture="bilateral",
                                             position="prone"))
        write_phantom(phantom, case)
        print(f"phantom {phantom.ct.shape} voxels at {args.spacing} mm")
        command = [sys.executable, "-m", "trajplan", "plan", str(case / "ct.nii.gz"), "-o", str(Path(tmp) / "out"),
                   "--json"] + ([] if args.report else ["--no-report"])
        start = time.perf_counter()
        proc = subprocess.run(command, capture_output=True, text=True)
        wall = time.perf_counter() - start
        peak_mb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
        if proc.returncode != 0:
            print(proc.stderr.strip())
            sys.exit(1)
        stages = json.loads(proc.stdout)["timings_s"]
        print(f"trajplan plan: {wall:.1f} s wall (goal <= 30 s), peak memory {peak_mb:.0f} MB (goal <= 4096 MB)")
        print("stages: " + ", ".join(f"{k} {v:.1f} s" for k, v in stages.items()))


if __name__ == "__main__":
    main()
