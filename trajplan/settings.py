"""Planning settings files (``--config FILE.toml``) and the ``settings`` block of ``plan.json``.

A settings file is TOML with these keys, each optional (an absent key keeps its default)::

    min_separation_mm = 10.0                 # PlanOptions.min_separation_mm
    needle_lengths_mm = [100.0, 125.0, 150.0]  # STANDARD_NEEDLE_LENGTHS_MM

    [margins_mm]                             # DEFAULT_MARGINS_MM: a class or a structure
    canal = 3.0

    [weights]                                # WEIGHTS
    clearance = 0.35

    [placement_error]                        # PlanOptions.entry_sigma_mm, angle_sigma_deg, mc_samples
    entry_sigma_mm = 2.0
    angle_sigma_deg = 2.0
    samples = 300

The defaults are not repeated here: they are those of :mod:`trajplan.planning.defaults`.
:func:`read_settings` turns a file into ``PlanOptions`` keyword arguments (an unknown key, a
wrong type or a bad value is an :class:`~trajplan.errors.InputError` naming the key);
:func:`trajplan.planning.options.settings_json` gives the effective values, in the file's layout,
for ``plan.json``, and :func:`settings_toml` writes them back as a file.
"""

from __future__ import annotations

from pathlib import Path

from trajplan.errors import InputError
from trajplan.planning.defaults import CRITICAL_STRUCTURES, DEFAULT_MARGINS_MM, WEIGHTS
from trajplan.planning.options import PLACEMENT_KEYS, PlanOptions

_TABLES = ("margins_mm", "weights", "placement_error")
_TOP = ("min_separation_mm", "needle_lengths_mm")


def _number(value: object, key: str, where: str, *, whole: bool = False) -> float | int:
    kind = "a whole number" if whole else "a number"
    if isinstance(value, bool) or not isinstance(value, (int, float)) or (whole and not isinstance(value, int)):
        raise InputError(f"{where}: {key} must be {kind}, got {type(value).__name__} {value!r}")
    return value


def _table(value: object, key: str, where: str) -> dict:
    if not isinstance(value, dict):
        raise InputError(f"{where}: {key} must be a table ([{key}]), got {type(value).__name__} {value!r}")
    return value


def parse_settings(doc: dict, where: str = "settings") -> dict:
    """``PlanOptions`` keyword arguments from a parsed settings document.

    Raises
    ------
    InputError
        An unknown key, a value of the wrong type or out of range, each naming the key.
    """
    out: dict = {}
    for key, value in doc.items():
        if key not in _TABLES + _TOP:
            raise InputError(f"{where}: unknown key {key!r} (known: {', '.join(_TOP + _TABLES)})")
    if "min_separation_mm" in doc:
        out["min_separation_mm"] = float(_number(doc["min_separation_mm"], "min_separation_mm", where))
    if "needle_lengths_mm" in doc:
        lengths = doc["needle_lengths_mm"]
        if not isinstance(lengths, list) or not lengths:
            raise InputError(f"{where}: needle_lengths_mm must be a list of numbers such as [100, 125, 150], "
                             f"got {lengths!r}")
        out["needle_lengths_mm"] = tuple(float(_number(v, "needle_lengths_mm", where)) for v in lengths)
    if "margins_mm" in doc:
        margins = {}
        for name, value in _table(doc["margins_mm"], "margins_mm", where).items():
            if name not in DEFAULT_MARGINS_MM and name not in CRITICAL_STRUCTURES:
                raise InputError(f"{where}: unknown key 'margins_mm.{name}' (a class: {', '.join(DEFAULT_MARGINS_MM)}; "
                                 "or a structure such as foramen_S2_left)")
            margins[name] = float(_number(value, f"margins_mm.{name}", where))
        out["margins_mm"] = margins
    if "weights" in doc:
        weights = {}
        for name, value in _table(doc["weights"], "weights", where).items():
            if name not in WEIGHTS:
                raise InputError(f"{where}: unknown key 'weights.{name}' (known: {', '.join(WEIGHTS)})")
            weights[name] = float(_number(value, f"weights.{name}", where))
        out["weights"] = weights
    if "placement_error" in doc:
        for name, value in _table(doc["placement_error"], "placement_error", where).items():
            if name not in PLACEMENT_KEYS:
                raise InputError(f"{where}: unknown key 'placement_error.{name}' (known: {', '.join(PLACEMENT_KEYS)})")
            whole = name == "samples"
            number = _number(value, f"placement_error.{name}", where, whole=whole)
            out[PLACEMENT_KEYS[name]] = int(number) if whole else float(number)
    negative = [k for k in ("min_separation_mm", "entry_sigma_mm", "angle_sigma_deg") if out.get(k, 0.0) < 0]
    negative += [f"{table}.{k}" for table in ("margins_mm", "weights") for k, v in out.get(table, {}).items() if v < 0]
    if negative:
        names = {"entry_sigma_mm": "placement_error.entry_sigma_mm",
                 "angle_sigma_deg": "placement_error.angle_sigma_deg"}
        raise InputError(f"{where}: {names.get(negative[0], negative[0])} must not be negative")
    try:
        PlanOptions(**out)              # the ranges, checked where the options are checked
    except InputError as exc:
        raise InputError(f"{where}: {str(exc).replace('mc_samples', 'placement_error.samples')}") from None
    return out


def read_settings(path: str | Path) -> dict:
    """``PlanOptions`` keyword arguments from a TOML settings file (see the module docstring).

    Raises
    ------
    InputError
        A missing or unreadable file, bad TOML, or a key :func:`parse_settings` refuses.
    """
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10
        raise InputError("--config needs Python 3.11 or later (tomllib)") from None
    path = Path(path)
    try:
        doc = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise InputError(f"{path}: no such settings file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"{path}: cannot read the settings file ({exc})") from None
    except tomllib.TOMLDecodeError as exc:
        raise InputError(f"{path}: not valid TOML: {exc}") from None
    return parse_settings(doc, str(path))


def merge_margins(settings: dict, margins_mm: dict[str, float] | None) -> dict:
    """``settings`` with command-line margins applied over the file's (the command line wins)."""
    if not margins_mm:
        return settings
    return {**settings, "margins_mm": {**settings.get("margins_mm", {}), **margins_mm}}


def settings_toml(settings: dict) -> str:
    """A settings dict (:func:`settings_json`) written as a TOML file."""
    def value(v: object) -> str:
        return "[" + ", ".join(value(x) for x in v) + "]" if isinstance(v, list) else repr(v)

    lines = [f"{k} = {value(v)}" for k, v in settings.items() if not isinstance(v, dict)]
    for table, items in settings.items():
        if isinstance(items, dict):
            lines += ["", f"[{table}]"] + [f"{k} = {value(v)}" for k, v in items.items()]
    return "\n".join(lines) + "\n"
