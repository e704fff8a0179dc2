"""DICOM export speed: ``trajplan export`` of a plan made from a real DICOM series, as a fresh process.

Usage: python benchmarks/export.py [--ct ../shared/ct/vhf_pelvis_dicom] [--plan-dir DIR]

Plans ``--ct`` (a DICOM series folder; by default the Visible Human pelvis of ``../shared``) with
the report into a temporary folder, unless ``--plan-dir`` names a plan folder already made from
it; then runs ``trajplan --json export`` on it and prints the wall time, the stage timings, the
number of segments, frames and pictures and the size of ``segmentation.dcm``. Everything is
written under a temporary folder and deleted (the export carries the series' identifiers).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pydicom
from environment import SHARED_CT  # benchmarks/environment.py, beside this script

SHARED_DICOM = SHARED_CT / "vhf_pelvis_dicom"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ct", type=Path, default=SHARED_DICOM)
    parser.add_argument("--plan-dir", type=Path)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        plan = args.plan_dir or Path(tmp) / "plan"
        if args.plan_dir is None:
            started = time.perf_counter()
            done = subprocess.run([sys.executable, "-m", "trajplan", "-q", "plan", str(args.ct), "-o", str(plan)])
            if done.returncode not in (0, 3):
                sys.exit(f"planning failed (exit {done.returncode})")
            print(f"plan: {time.perf_counter() - started:.1f} s")
        out = Path(tmp) / "pacs"
        started = time.perf_counter()
        done = subprocess.run([sys.executable, "-m", "trajplan", "--json", "export", str(plan), "--ct", str(args.ct),
                               "--dicom", str(out)], capture_output=True, text=True)
        wall = time.perf_counter() - started
        if done.returncode != 0:
            sys.exit(f"export failed (exit {done.returncode}): {done.stderr.strip()}")
        result = json.loads(done.stdout)
        seg = pydicom.dcmread(out / "segmentation.dcm", stop_before_pixels=True)
        print(f"export: {wall:.1f} s wall; stages {result['timings_s']}")
        print(f"  {result['segments']} segments, {seg.NumberOfFrames} frames, "
              f"{(out / 'segmentation.dcm').stat().st_size / 1e6:.0f} MB segmentation.dcm, "
              f"{len(result['files']) - 1} pictures")


if __name__ == "__main__":
    main()
