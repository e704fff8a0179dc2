"""Output folders that are complete or absent: built beside their place, then renamed into it.

A command writes into ``PARENT/.NAME.partial-<host>-<pid>-<random>`` and the folder gets its name
``PARENT/NAME`` by a rename once every file is in. A kill, a crash or a full disk
therefore never leaves a folder at ``NAME`` that looks finished and is not; an earlier
folder at ``NAME`` stays until the new one is whole, and is then replaced as a whole.
The partial folder of a killed run is deleted by the next run at ``NAME`` on its host.
"""

from __future__ import annotations

import contextlib
import glob
import os
import re
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

from trajplan.errors import InputError, OutputError
from trajplan.io.atomic import current_umask
from trajplan.io.faults import writing
from trajplan.io.plan_folder import MARKERS
from trajplan.io.process import pid_alive, this_host

STAGING_MARK = ".trajplan-staging"      # made in a staging folder when it is made, removed before the rename


def check_replaceable(final: Path) -> None:
    """Refuse an output path that is a file, or a non-empty folder that is not a trajplan output.

    Raises
    ------
    OutputError
        When ``final`` is a file (nothing can be written there).
    InputError
        When ``final`` is a folder with other contents, which replacing would delete.
    """
    if final.exists() and not final.is_dir():
        raise OutputError("it is a file, not a folder", final)
    if final.is_dir() and any(final.iterdir()) and not any((final / m).is_file() for m in MARKERS):
        raise InputError(f"{final}: a folder that is not empty and holds no trajplan output "
                         f"({' or '.join(MARKERS)}); give a new or empty folder (nothing was changed)")


def replace_folder(source: Path, target: Path) -> None:
    """Rename ``source`` to ``target``; an existing ``target`` is moved aside first, then deleted.

    ``target`` is absent only between two renames; it never holds a mix of old and new files.
    """
    old = None
    if target.exists():
        old = Path(tempfile.mkdtemp(prefix=f".{target.name}.old-", dir=target.parent))
        os.replace(target, old)          # an empty folder may be replaced by rename
    try:
        os.rename(source, target)
    except OSError:
        if old is not None:
            os.replace(old, target)
        raise
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def remove_dead_partials(final: Path) -> None:
    """Delete the ``.NAME.partial-<host>-<pid>-*`` folders of ``final`` left by killed runs on this host."""
    pattern = re.compile(rf"\.{re.escape(final.name)}\.partial-(?P<host>[A-Za-z0-9]+)-(?P<pid>\d+)-")
    for folder in final.parent.glob(f".{glob.escape(final.name)}.partial-*"):
        owner = pattern.match(folder.name)
        if owner and owner["host"] == this_host() and not pid_alive(int(owner["pid"])):
            shutil.rmtree(folder, ignore_errors=True)


@contextlib.contextmanager
def staged_folder(final: str | Path) -> Iterator[Path]:
    """Yield a hidden temporary folder beside ``final``; rename it to ``final`` when the block ends well.

    On any exception the temporary folder is removed and ``final`` is left as it was.

    Raises
    ------
    OutputError
        When the output cannot be written (see :mod:`trajplan.io.faults`), named in
        ``final``; also when the temporary folder vanished during the block.
    InputError
        See :func:`check_replaceable`.
    """
    final = Path(final)
    if final.is_symlink():              # a link to the output folder: replace the folder, keep the link
        final = final.resolve()
    check_replaceable(final)
    with writing(final):
        final.parent.mkdir(parents=True, exist_ok=True)
        remove_dead_partials(final)
        work = Path(tempfile.mkdtemp(prefix=f".{final.name}.partial-{this_host()}-{os.getpid()}-",
                                     dir=final.parent))
        os.chmod(work, 0o777 & ~current_umask())
        (work / STAGING_MARK).touch()
    identity = folder_identity(work)
    try:
        yield work
        # Removed (and re-made by a writer) during the block: a re-made folder may get the same
        # inode again, but not the mark made with the original.
        if folder_identity(work) != identity or not (work / STAGING_MARK).is_file():
            raise OutputError("the folder vanished", final)
        with writing(final):
            (work / STAGING_MARK).unlink()
            replace_folder(work, final)
    except OutputError as exc:
        named = exc.moved(work, final)
        if named is exc:
            raise
        raise named from exc
    finally:
        shutil.rmtree(work, ignore_errors=True)


def folder_identity(folder: Path) -> tuple[int, int] | None:
    """(device, inode) of ``folder``, or None when it is gone (a re-made folder differs)."""
    try:
        stats = os.stat(folder)
    except OSError:
        return None
    return stats.st_dev, stats.st_ino
