"""The numerical libraries a validation ran with, named in the tables it writes, and where the
benchmarks find the real data (``../shared/ct`` beside the checkout: read, never written or shipped).

Their versions can move a figure: a needle at a margin flips with a library's rounding (phantom
117's ground-truth plan held 23 safe needles in the validation generated at commit 9491493 and holds
22 on that same commit under a venv bootstrapped since, with numpy 2.4.6, scipy 1.17.1 and
scikit-image 0.26.0). `make` installs the versions pinned in constraints.txt.
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

NUMERICAL = ("numpy", "scipy", "scikit-image", "SimpleITK", "edt")
CONSTRAINTS = Path(__file__).resolve().parents[1] / "constraints.txt"
SHARED_CT = Path(__file__).resolve().parents[2] / "shared" / "ct"


def pinned(path: Path) -> dict[str, str]:
    """The versions pinned in a pip constraints file (``name==version`` lines), by lower-case name."""
    pins = {}
    for line in path.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if "==" in line:
            name, pin = line.split("==", 1)
            pins[name.strip().lower()] = pin.strip()
    return pins


def numerical_stack() -> str:
    """``"numpy 2.4.6, scipy 1.17.1, ..."``: the installed versions of NUMERICAL ("absent" if not
    installed), and those that differ from the pins of constraints.txt."""
    def installed(name: str) -> str:
        try:
            return version(name)
        except PackageNotFoundError:
            return "absent"
    found = {name: installed(name) for name in NUMERICAL}
    pins = pinned(CONSTRAINTS) if CONSTRAINTS.exists() else {}
    differ = [f"{name} {pins[name.lower()]}" for name in NUMERICAL
              if name.lower() in pins and pins[name.lower()] != found[name]]
    text = ", ".join(f"{name} {found[name]}" for name in NUMERICAL)
    return text + (f" (not as pinned in constraints.txt: {', '.join(differ)})" if differ else "")
