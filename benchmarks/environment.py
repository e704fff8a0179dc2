"""The numerical libraries a validation ran with, named in the tables it writes.

Their versions can move a figure: a needle at a margin flips with a library's rounding (phantom
117's ground-truth plan held 23 safe needles in the validation generated at commit 9491493 and holds
22 on that same commit under a venv bootstrapped since, with numpy 2.4.6, scipy 1.17.1 and
scikit-image 0.26.0).
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

NUMERICAL = ("numpy", "scipy", "scikit-image", "SimpleITK")


def numerical_stack() -> str:
    """``"numpy 2.4.6, scipy 1.17.1, ..."``: the installed versions of NUMERICAL ("absent" if not installed)."""
    def one(name: str) -> str:
        try:
            return f"{name} {version(name)}"
        except PackageNotFoundError:
            return f"{name} absent"
    return ", ".join(one(name) for name in NUMERICAL)
