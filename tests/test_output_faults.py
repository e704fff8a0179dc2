"""Faults on the way out, made for real: a full disk, a read-only or forbidden folder, a file in the
way, a folder that vanishes, SIGKILL of a plan, two batches on one folder, a lock left by a killed run.

A plan folder is complete or absent; a fault gives one line naming the path and the cause and
exit code 4; a batch marks such a case failed, goes on, and plans it when resumed.
"""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

PLAN_FILES = {"plan.json", "plan.csv", "plan.mrk.json", "card.html", "load_plan.py", "labels.nii.gz",
              "labels.seg.nrrd", "labels.json", "sacrum.nii.gz", "segmentation.json", "ct_roi.nii.gz",
              "scene.png"}   # with --no-report
EXIT_OUTPUT = 4


def trajplan(*args: str) -> list[str]:
    return [sys.executable, "-m", "trajplan", *args]


def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(trajplan(*args), capture_output=True, text=True, timeout=600)


def one_line(proc: subprocess.CompletedProcess, code: int, *words: str) -> str:
    """The one stderr line of a failed command, checked for its exit code, no traceback and ``words``."""
    assert proc.returncode == code, (proc.returncode, proc.stderr)
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "Traceback" not in proc.stderr, proc.stderr
    for word in words:
        assert word.lower() in lines[0].lower(), lines[0]
    return lines[0]


def assert_whole(folder: Path) -> dict:
    """``folder`` is a complete plan folder (every file, a readable plan.json); returns the plan."""
    assert {p.name for p in folder.iterdir()} == PLAN_FILES
    return json.loads((folder / "plan.json").read_text())


def leftovers(parent: Path) -> list[str]:
    return sorted(p.name for p in parent.iterdir() if ".partial-" in p.name or ".old-" in p.name)


def read_summary(out: Path) -> list[dict]:
    with open(out / "summary.csv", newline="") as handle:
        return list(csv.DictReader(handle))


@pytest.fixture(scope="module")
def ct(tmp_path_factory) -> Path:
    """A 2.5 mm phantom CT."""
    from sample_ct.phantom import PhantomParams, make_phantom, write_phantom

    out = tmp_path_factory.mktemp("ct")
    write_phantom(make_phantom(PhantomParams(seed=0, spacing=(2.5, 2.5, 2.5))), out)
    return out / "ct.nii.gz"


@pytest.fixture(scope="module")
def archive(tmp_path_factory) -> Path:
    """A batch input folder of two 2.5 mm phantom CTs."""
    from sample_ct.phantom import PhantomParams, make_phantom, write_phantom

    root = tmp_path_factory.mktemp("archive")
    for seed in (1, 2):
        write_phantom(make_phantom(PhantomParams(seed=seed, spacing=(2.5, 2.5, 2.5))), root / f"p{seed}")
        (root / f"p{seed}" / "labels.nii.gz").unlink()   # ground truth is not a case
    return root


def mount_tmpfs(folder: Path, size: str = "3m") -> None:
    if os.geteuid() != 0:
        pytest.skip("mounting a small tmpfs needs root")
    folder.mkdir(parents=True, exist_ok=True)
    proc = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(folder)],
                          capture_output=True, text=True)
    if proc.returncode:
        pytest.skip(f"cannot mount a tmpfs: {proc.stderr.strip()}")


@pytest.fixture
def small_disk(tmp_path) -> Path:
    """A 3 MB tmpfs (root only; skipped otherwise), unmounted afterwards."""
    disk = tmp_path / "disk"
    mount_tmpfs(disk)
    yield disk
    subprocess.run(["umount", str(disk)], check=False)


def fill(disk: Path, leave_bytes: int) -> Path:
    """Fill ``disk`` until about ``leave_bytes`` are free; returns the filler file."""
    stats = os.statvfs(disk)
    filler = disk / "filler"
    filler.write_bytes(b"\0" * max(stats.f_bavail * stats.f_frsize - leave_bytes, 0))
    return filler


# ------------------------------------------------------------------ single commands
def test_output_path_that_is_a_file(ct, tmp_path):
    blocker = tmp_path / "blocker"
    blocker.write_text("not a folder")
    one_line(run("plan", str(ct), "-o", str(blocker), "--no-report"), EXIT_OUTPUT, str(blocker), "a file")
    one_line(run("segment", str(ct), "-o", str(blocker / "sub")), EXIT_OUTPUT, str(blocker / "sub"), "a file")
    assert blocker.read_text() == "not a folder"


def test_non_empty_folder_that_is_no_trajplan_output_is_refused_unchanged(ct):
    before = sorted(p.name for p in ct.parent.iterdir())
    one_line(run("segment", str(ct), "-o", str(ct.parent)), 2, str(ct.parent), "no trajplan output")
    assert sorted(p.name for p in ct.parent.iterdir()) == before


def test_earlier_output_is_replaced_whole_and_a_link_to_it_kept(ct, tmp_path):
    earlier = tmp_path / "seg"
    earlier.mkdir()
    (earlier / "segmentation.json").write_text("{}")
    (earlier / "notes.txt").write_text("added by hand")
    (tmp_path / "link").symlink_to(earlier)
    proc = run("segment", str(ct), "-o", str(tmp_path / "link"))
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "link").is_symlink() and (tmp_path / "link").resolve() == earlier
    assert {p.name for p in earlier.iterdir()} == {"labels.nii.gz", "labels.seg.nrrd", "labels.json",
                                                   "sacrum.nii.gz", "segmentation.json"}
    assert json.loads((earlier / "segmentation.json").read_text())
    assert leftovers(tmp_path) == []


def test_folder_that_cannot_be_written(ct, tmp_path):
    if os.geteuid() == 0:   # root ignores permission bits; sysfs refuses new folders even to root
        out = Path("/sys/trajplan-test-output")
    else:
        locked = tmp_path / "locked"
        locked.mkdir(mode=0o500)
        out = locked / "plan"
    one_line(run("plan", str(ct), "-o", str(out), "--no-report"), EXIT_OUTPUT, str(out), "permission denied")
    assert not out.exists()


def test_read_only_file_system(ct, small_disk):
    earlier = small_disk / "plan"
    earlier.mkdir()
    (earlier / "plan.json").write_text("{}")
    subprocess.run(["mount", "-o", "remount,ro", str(small_disk)], check=True)
    for out in (small_disk / "new", earlier):
        one_line(run("plan", str(ct), "-o", str(out), "--no-report"), EXIT_OUTPUT, str(out), "read-only")
    assert (earlier / "plan.json").read_text() == "{}"
    one_line(run("batch", str(ct.parent), "-o", str(small_disk / "batch")), EXIT_OUTPUT,
             str(small_disk / "batch"), "read-only")


def test_full_disk_leaves_no_plan_folder_and_a_rerun_after_freeing_space_plans(ct, small_disk):
    out = small_disk / "plan"
    filler = fill(small_disk, 600_000)   # the plan folder takes about 1.9 MB
    line = one_line(run("plan", str(ct), "-o", str(out), "--no-report"), EXIT_OUTPUT,
                    f"no space left on {out} while writing")
    assert line.split("while writing ")[1] in PLAN_FILES, line
    assert not out.exists() and leftovers(small_disk) == []
    filler.unlink()
    proc = run("plan", str(ct), "-o", str(out), "--no-report")
    assert proc.returncode == 0, proc.stderr
    assert_whole(out)["needles"]


def test_folder_that_vanishes_mid_run(ct, tmp_path):
    out = tmp_path / "plan"
    proc = subprocess.Popen(trajplan("plan", str(ct), "-o", str(out), "--no-report"),
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    while not leftovers(tmp_path) and time.time() < deadline:
        time.sleep(0.05)
    staging = tmp_path / leftovers(tmp_path)[0]
    # At once, while the CT is read and segmented: a second later a small case can be planned
    # and renamed into place already (exit 0, seen on an idle machine).
    subprocess.run(["rm", "-rf", str(staging)], check=True)   # as if its file system went away
    _, stderr = proc.communicate(timeout=300)
    one_line(subprocess.CompletedProcess(proc.args, proc.returncode, "", stderr), EXIT_OUTPUT,
             str(out), "vanished")
    assert not out.exists() and leftovers(tmp_path) == []


def kill_when(cmd: list[str], out: Path, ready) -> None:
    """Run ``cmd`` (a plan to ``out``) and SIGKILL it as soon as ``ready(partial)`` holds, where
    ``partial`` is the staging folder of this run (None before it is made); or let it end."""
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 300
    while proc.poll() is None and time.time() < deadline:
        partial = next(out.parent.glob(f".{out.name}.partial-*-{proc.pid}-*"), None)
        try:
            if ready(partial):
                break
        except FileNotFoundError:          # renamed into place meanwhile
            break
        time.sleep(0.01)
    proc.kill()
    proc.wait()


def holding(files: int):
    """``ready`` for :func:`kill_when`: the staging folder holds at least ``files`` entries."""
    return lambda partial: partial is not None and len(list(partial.iterdir())) >= files


@pytest.mark.slow   # five plan runs, four of them killed
def test_sigkill_leaves_the_plan_folder_whole_or_absent(ct, tmp_path):
    out = tmp_path / "plan"
    cmd = trajplan("plan", str(ct), "-o", str(out), "--no-report", "--seed", "1")
    kill_when(cmd, out, holding(1))                    # the segmentation's files are being written
    assert not out.exists()                            # killed before the end: absent, never half
    partials = [name for name in leftovers(tmp_path) if ".partial-" in name]
    assert partials, "a killed run leaves its partial folder"
    proc = subprocess.run(cmd, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    earlier = assert_whole(out)
    assert not set(partials) & set(leftovers(tmp_path))      # the next run at that path deleted them
    seen = []
    # Killed with the segmentation written, with the plan written (all but the scene), and while the
    # earlier folder is moved aside for the new one (the .old- folder; a short window, often missed).
    for ready in (holding(4), holding(len(PLAN_FILES) - 1),
                  lambda partial: any(".old-" in name for name in leftovers(tmp_path))):
        kill_when(cmd, out, ready)
        if out.exists():                               # the earlier folder, or a new one, whole
            seen.append("earlier" if assert_whole(out) == earlier else "new")
        else:                                          # only between the two renames of a replacement
            seen.append("absent")
    assert seen[0] == "earlier", seen


# ------------------------------------------------------------------ batch
@pytest.mark.slow   # two batches of two cases
def test_two_batches_started_together_on_one_folder(archive, tmp_path):
    out = tmp_path / "out"
    cmd = trajplan("batch", str(archive), "-o", str(out), "--no-report", "--needles", "1")
    procs = [subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    outputs = [p.communicate(timeout=600) for p in procs]
    results = [subprocess.CompletedProcess(p.args, p.returncode, *o) for p, o in zip(procs, outputs)]
    codes = sorted(r.returncode for r in results)
    assert codes == [0, 2], [(r.returncode, r.stderr) for r in results]
    winner, loser = sorted(results, key=lambda r: r.returncode)
    line = one_line(loser, 2, str(out), "another trajplan batch", "pid", "host")
    assert str(procs[results.index(winner)].pid) in line
    rows = read_summary(out)
    assert [r["status"] for r in rows] == ["done", "done"], rows
    for row in rows:
        assert (out / row["case_id"] / "plan.json").is_file()
        assert json.loads((out / row["case_id"] / "case.json").read_text())["status"] == "done"
    assert not (out / ".partial").exists() or not any((out / ".partial").iterdir())


@pytest.mark.slow   # a batch of two cases
def test_batch_stops_cleanly_when_its_folder_vanishes(archive, tmp_path):
    out = tmp_path / "out"
    proc = subprocess.Popen(trajplan("batch", str(archive), "-o", str(out), "--no-report", "--needles", "1"),
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 300
    while time.time() < deadline and not any(p.name.startswith("case-") for p in
                                             (out.iterdir() if out.is_dir() else [])):
        time.sleep(0.1)                                         # the first case is done
    subprocess.run(["rm", "-rf", str(out)], check=True)
    _, stderr = proc.communicate(timeout=300)
    one_line(subprocess.CompletedProcess(proc.args, proc.returncode, "", stderr), EXIT_OUTPUT,
             str(out), "vanished")


def test_lock_of_a_killed_batch_is_taken_over(archive, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    holder = subprocess.Popen([sys.executable, "-c", (
        "import sys, time\nfrom pathlib import Path\nfrom trajplan.batch_lock import batch_lock\n"
        f"with batch_lock(Path({str(out)!r})):\n    print('locked', flush=True)\n    time.sleep(600)\n")],
        stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "locked"
    manifest = tmp_path / "one.csv"
    manifest.write_text(f"path\n{archive / 'p1' / 'ct.nii.gz'}\n")
    cmd = ("batch", str(manifest), "-o", str(out), "--no-report", "--needles", "1")
    one_line(run(*cmd), 2, str(out), f"pid {holder.pid} on host")
    assert not (out / "summary.csv").exists()                  # refused before touching anything
    holder.send_signal(signal.SIGKILL)
    holder.wait()
    proc = run(*cmd)
    assert proc.returncode == 0, proc.stderr
    assert f"taking over the lock of a batch that ended without releasing it (pid {holder.pid}" in proc.stderr
    assert [r["status"] for r in read_summary(out)] == ["done"]


def test_batch_on_a_full_disk_fails_the_case_goes_on_and_resumes(archive, small_disk, tmp_path):
    out = small_disk / "out"
    manifest = tmp_path / "one.csv"
    manifest.write_text(f"path\n{archive / 'p1' / 'ct.nii.gz'}\n")
    filler = fill(small_disk, 600_000)
    cmd = ("batch", str(manifest), "-o", str(out), "--no-report", "--needles", "1")
    proc = run(*cmd)
    assert proc.returncode == 0 and "Traceback" not in proc.stderr, proc.stderr
    [row] = read_summary(out)
    assert row["status"] == "failed"
    assert row["error"].startswith(f"no space left on {out / row['case_id']} while writing "), row["error"]
    assert json.loads((out / row["case_id"] / "case.json").read_text())["output_fault"] is True
    filler.unlink()
    proc = run(*cmd)                                           # no --retry-failed: a full disk is not the case's fault
    assert proc.returncode == 0, proc.stderr
    [row] = read_summary(out)
    assert row["status"] == "done" and (out / row["case_id"] / "plan.json").is_file()


def test_without_file_locks_a_live_run_on_this_host_is_refused_and_a_dead_one_taken_over(tmp_path, monkeypatch,
                                                                                          caplog):
    import errno
    import fcntl
    import socket

    from trajplan.batch_lock import LOCK_FILE, batch_lock
    from trajplan.errors import FolderInUseError

    def no_locks(fd, operation):
        raise OSError(errno.ENOLCK, "No locks available")

    monkeypatch.setattr(fcntl, "flock", no_locks)             # as on NFS without a lock daemon
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                          text=True, check=True)
    for pid, refused in ((os.getppid(), True), (int(dead.stdout), False)):
        (tmp_path / LOCK_FILE).write_text(json.dumps({"pid": pid, "host": socket.gethostname(), "started": 0}))
        if refused:
            with pytest.raises(FolderInUseError, match=f"pid {pid} on host"), batch_lock(tmp_path):
                pass
        else:
            with batch_lock(tmp_path):
                assert json.loads((tmp_path / LOCK_FILE).read_text())["pid"] == os.getpid()
            assert f"taking over the lock of a batch that ended without releasing it (pid {pid}" in caplog.text
