"""Exceptions that the command line turns into one clear line and an exit code.

``InputError`` and its subclasses mean the user's input or arguments are at fault
(exit code 2, no traceback); ``OutputError`` means an output could not be written
(exit code 4, no traceback); anything else is an internal error (exit code 1).
"""

from __future__ import annotations

from pathlib import Path


class InputError(Exception):
    """Bad input data or arguments; the message names the problem in one line."""


class DicomError(InputError):
    """A DICOM folder or file that cannot be read as one CT series."""


class NoSacrumError(InputError):
    """The field of view holds no (or too little) sacrum to plan on."""


class NoSafePathError(InputError):
    """No candidate needle path meets the safety margins."""


class FolderInUseError(InputError):
    """Another trajplan run is writing the output folder (its lock is held)."""


class OutputError(Exception):
    """An output could not be written: full disk, read-only or forbidden folder, a file in the way.

    Not the input's fault and not a bug: the command line says so in one line and exits
    with code 4.

    Parameters
    ----------
    cause : str
        A few words, e.g. ``"no space left"``, ``"read-only file system"``.
    folder : path
        The output folder as the user named it.
    name : str, optional
        The file (relative to ``folder``) being written when it failed.
    """

    def __init__(self, cause: str, folder: str | Path, name: str | None = None) -> None:
        self.cause, self.folder, self.name = cause, Path(folder), name
        where = f"{cause} on {folder} while writing {name}" if name else f"cannot write to {folder}: {cause}"
        super().__init__(where)

    def __reduce__(self) -> tuple:
        """Pickle by the constructor's arguments (e.g. from a dask worker)."""
        return OutputError, (self.cause, self.folder, self.name)

    def moved(self, work: Path, final: Path) -> "OutputError":
        """The same fault, named in ``final`` when it happened in its staging folder ``work``."""
        full = self.folder / self.name if self.name else self.folder
        try:
            relative = full.relative_to(work)
        except ValueError:
            return self
        return OutputError(self.cause, final, str(relative) if relative.parts else self.name)
