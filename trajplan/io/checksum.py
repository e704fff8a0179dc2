"""Content checksums of inputs (a file, or every file of a DICOM folder), never their names."""

from __future__ import annotations

import hashlib
from pathlib import Path

_CHUNK = 1 << 20


def sha256_of(path: str | Path) -> str:
    """SHA-256 (hex) of a file, or of a folder's files in sorted relative-path order.

    For a folder (a DICOM series), the digest covers each file's content; file names
    only decide the order, so renaming a folder does not change its checksum.
    """
    path = Path(path)
    digest = hashlib.sha256()
    files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    for file in files:
        with open(file, "rb") as handle:
            while chunk := handle.read(_CHUNK):
                digest.update(chunk)
    return digest.hexdigest()
