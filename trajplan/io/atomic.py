"""Write files atomically: to a temporary file in the same folder, then rename.

A reader (or a resumed batch) therefore never sees a half-written output.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

from trajplan.errors import OutputError
from trajplan.io.faults import write_cause, writing


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it onto ``path`` on success.

    The temporary file keeps ``path``'s suffixes (so writers that pick a format from
    the extension, such as SimpleITK, still do). On any exception it is removed and
    ``path`` is left untouched.

    Raises
    ------
    OutputError
        When the file cannot be written (full disk, read-only or forbidden folder, a
        file in the way, a vanished folder), naming the folder, the file and the cause.
    """
    path = Path(path)
    with writing(path.parent, path.name):
        path.parent.mkdir(parents=True, exist_ok=True)
        suffix = "".join(path.suffixes)
        fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=f".part{suffix}", dir=path.parent)
        os.close(fd)
    tmp = Path(tmp_name)
    try:
        yield tmp
        os.chmod(tmp, 0o666 & ~current_umask())  # mkstemp files are private; outputs follow the umask
        os.replace(tmp, path)
    except Exception as exc:
        cause = write_cause(exc, path.parent)  # before the partial file is removed: a full disk is still full
        tmp.unlink(missing_ok=True)
        if cause is None:
            raise
        raise OutputError(cause, path.parent, path.name) from exc
    finally:
        tmp.unlink(missing_ok=True)


def current_umask() -> int:
    """The process umask (read without changing it for good)."""
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_text(path: str | Path, text: str) -> None:
    """Atomically write ``text`` (UTF-8) to ``path``."""
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def write_json(path: str | Path, data: object) -> None:
    """Atomically write ``data`` as indented JSON to ``path``."""
    write_text(path, json.dumps(data, indent=2, allow_nan=False) + "\n")
