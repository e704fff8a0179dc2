"""Exceptions that the command line turns into one clear line and an exit code.

``InputError`` and its subclasses mean the user's input or arguments are at fault
(exit code 2, no traceback); anything else is an internal error (exit code 1).
"""

from __future__ import annotations


class InputError(Exception):
    """Bad input data or arguments; the message names the problem in one line."""


class DicomError(InputError):
    """A DICOM folder or file that cannot be read as one CT series."""


class NoSacrumError(InputError):
    """The field of view holds no (or too little) sacrum to plan on."""


class NoSafePathError(InputError):
    """No candidate needle path meets the safety margins."""
