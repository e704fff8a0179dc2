"""One ``trajplan batch`` per output folder: a lock held for the whole run.

The lock is ``OUT/.trajplan-batch.lock``, locked with ``flock`` while a run works and
holding that run's pid, host and start time. The kernel releases it when the run ends
in any way (SIGKILL included), so a lock left by a killed run is taken over at once;
the record it left names the run that died. The file itself is never deleted (deleting
a lock file lets two runs lock two different files).
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import logging
import os
import socket
import time
from collections.abc import Iterator
from pathlib import Path

from trajplan.errors import FolderInUseError
from trajplan.io.faults import writing
from trajplan.io.process import pid_alive

log = logging.getLogger("trajplan")

LOCK_FILE = ".trajplan-batch.lock"
NO_LOCKS = (errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS)   # flock unsupported (e.g. NFS without lockd)


def _record(fd: int) -> dict:
    """The holder record in the lock file (empty when there is none or it is unreadable)."""
    try:
        text = os.pread(fd, 4096, 0).decode("utf-8")
        return json.loads(text) if text.strip() else {}
    except (OSError, ValueError):
        return {}


def _holder(fd: int, wait_s: float = 1.0) -> dict:
    """The record of the run holding the lock; waits briefly for a run that has just taken it."""
    deadline = time.monotonic() + wait_s
    while not (record := _record(fd)) and time.monotonic() < deadline:
        time.sleep(0.05)
    return record


def _alive_here(record: dict) -> bool:
    """True when ``record`` names a process that is running on this host."""
    pid = record.get("pid")
    return record.get("host") == socket.gethostname() and isinstance(pid, int) and pid_alive(pid)


def _try_flock(fd: int) -> bool | None:
    """Take the lock: True; False when another process holds it; None when the file system has no locks."""
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as exc:
        if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN):
            return False
        if exc.errno in NO_LOCKS:
            return None
        raise
    return True


def describe(record: dict) -> str:
    """``pid N on host H, started T`` of a holder record."""
    if not record:
        return "pid and host not yet recorded"
    started = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(record.get("started", 0)))
    return f"pid {record.get('pid')} on host {record.get('host')}, started {started}"


@contextlib.contextmanager
def batch_lock(out_root: Path) -> Iterator[None]:
    """Hold the batch lock of ``out_root`` for the block.

    Raises
    ------
    FolderInUseError
        At once when another run holds it, naming the folder and that run.
    OutputError
        When the lock file cannot be written (read-only folder, full disk, ...).
    """
    path = out_root / LOCK_FILE
    with writing(out_root, LOCK_FILE):
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
    try:
        locked = _try_flock(fd)
        if locked is None:      # no file locks here: refuse only a run that is alive on this host
            log.warning("%s: this file system has no file locks; make sure no other trajplan batch "
                        "writes to this folder", out_root)
        held_by_another = _alive_here(_record(fd)) if locked is None else not locked
        if held_by_another:
            raise FolderInUseError(
                f"{out_root}: another trajplan batch is writing this folder ({describe(_holder(fd))}); "
                "wait for it to end, or give another -o"
            )
        left = _record(fd)
        if left:
            log.warning("%s: taking over the lock of a batch that ended without releasing it (%s)",
                        out_root, describe(left))
        mine = json.dumps({"pid": os.getpid(), "host": socket.gethostname(), "started": time.time()})
        with writing(out_root, LOCK_FILE):
            os.ftruncate(fd, 0)
            os.pwrite(fd, mine.encode("utf-8"), 0)
        try:
            yield
        finally:
            os.ftruncate(fd, 0)     # a run that ends well leaves no record: a record means a killed run
    finally:
        os.close(fd)                # closing releases the flock
