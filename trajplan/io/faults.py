"""Name why a write failed: full disk, read-only or forbidden folder, a file in the way, a vanished folder.

Python reports most of these as ``OSError`` with an errno; some writers (SimpleITK's
NIfTI writer) fail without one, so the folder itself is then examined.
"""

from __future__ import annotations

import contextlib
import errno
import os
from collections.abc import Iterator
from pathlib import Path

from trajplan.errors import OutputError

CAUSES = {
    errno.ENOSPC: "no space left",
    errno.EDQUOT: "disk quota exceeded",
    errno.EROFS: "read-only file system",
    errno.EACCES: "permission denied",
    errno.EPERM: "permission denied",
    errno.ENOTDIR: "a file is in the way where a folder is needed",
    errno.EEXIST: "a file is in the way where a folder is needed",
    errno.EISDIR: "a folder is in the way where a file is needed",
    errno.EFBIG: "file too large",
    errno.ENAMETOOLONG: "file name too long",
    errno.ESTALE: "the folder vanished (stale file handle)",
}
LOW_SPACE_BYTES = 1 << 20   # less than this free after a failed write: the disk is full


def probe_folder(folder: Path) -> str | None:
    """Why ``folder`` cannot be written now, or None when nothing is visibly wrong."""
    try:
        stats = os.statvfs(folder)
    except OSError:
        return "the folder vanished"
    if not folder.is_dir():
        return "the folder vanished"
    if stats.f_flag & os.ST_RDONLY:
        return "read-only file system"
    if stats.f_bavail * stats.f_frsize < LOW_SPACE_BYTES:
        return "no space left"
    if not os.access(folder, os.W_OK):
        return "permission denied"
    return None


def write_cause(exc: BaseException, folder: Path) -> str | None:
    """The cause of a failed write into ``folder`` in a few words; None when it is not a write fault.

    An ``OSError`` with a known errno names its cause; a missing file means the folder
    vanished when it did. An input/output error or a writer's ``RuntimeError`` (which
    carries no errno) is explained by :func:`probe_folder` when it can be.
    """
    if isinstance(exc, OSError) and exc.errno in CAUSES:
        return CAUSES[exc.errno]
    if isinstance(exc, OSError) and exc.errno == errno.ENOENT:
        return "the folder vanished" if not folder.is_dir() else None
    if isinstance(exc, OSError) and exc.errno == errno.EIO:
        return probe_folder(folder) or "input/output error"
    if isinstance(exc, RuntimeError):
        return probe_folder(folder)
    return None


@contextlib.contextmanager
def writing(folder: str | Path, name: str | None = None) -> Iterator[None]:
    """Turn a write fault in the block into an :class:`OutputError` naming ``folder`` and ``name``."""
    try:
        yield
    except OutputError:
        raise
    except Exception as exc:
        cause = write_cause(exc, Path(folder))
        if cause is None:
            raise
        raise OutputError(cause, folder, name) from exc
