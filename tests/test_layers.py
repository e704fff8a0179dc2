"""The import layers of docs/architecture.md hold: no module imports one that imports it back.

Read from the source (every import that runs, at the top of a module or inside a function; not
those under ``if TYPE_CHECKING:``, which only type checkers follow):

- trajplan's core (``volume``, ``labels``, ``errors``, ``io/``, ``needle``, ``planning/``) imports
  nothing of ``segmentation`` or ``sample_ct``;
- ``segmentation`` and ``sample_ct`` import of trajplan only its core;
- the whole module graph has no cycle.
"""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("trajplan", "segmentation", "sample_ct")
CORE = ("trajplan.volume", "trajplan.labels", "trajplan.errors", "trajplan.distance", "trajplan.io", "trajplan.needle",
        "trajplan.planning")


def _modules() -> dict[str, Path]:
    found = {}
    for package in PACKAGES:
        for path in (ROOT / package).rglob("*.py"):
            name = ".".join(path.relative_to(ROOT).with_suffix("").parts)
            found[name.removesuffix(".__init__")] = path
    return found


def _imported(tree: ast.AST, modules: dict[str, Path]):
    """The project modules an AST imports at run time (a package's module where one is named)."""
    typing_only = {id(n) for node in ast.walk(tree)
                   if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test)
                   for n in ast.walk(node)}
    for node in ast.walk(tree):
        if id(node) in typing_only:
            continue
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [f"{node.module}.{a.name}" for a in node.names if f"{node.module}.{a.name}" in modules]
            names = names or [node.module]
        else:
            continue
        for name in names:
            while name not in modules and "." in name:
                name = name.rsplit(".", 1)[0]
            if name in modules:
                yield name


def _graph() -> dict[str, set[str]]:
    modules = _modules()
    edges: dict[str, set[str]] = defaultdict(set)
    for name, path in modules.items():
        edges[name] |= set(_imported(ast.parse(path.read_text(encoding="utf-8")), modules)) - {name}
    return edges


def _in(module: str, prefixes) -> bool:
    return any(module == p or module.startswith(p + ".") for p in prefixes)


def test_the_graph_sees_imports_at_the_top_and_inside_functions():
    edges = _graph()
    assert "segmentation.pipeline" in edges["trajplan.pipeline"]           # at the top
    assert "segmentation.pipeline" in edges["trajplan.compare"]            # inside a function
    assert "trajplan.planning.evaluate" in edges["trajplan.viewer.session"]   # inside a method


def test_trajplans_core_imports_neither_segmentation_nor_the_phantom():
    wrong = [(a, b) for a, bs in _graph().items() if _in(a, CORE) for b in bs
             if _in(b, ("segmentation", "sample_ct"))]
    assert not wrong, wrong


def test_segmentation_and_the_phantom_import_only_trajplans_core():
    wrong = [(a, b) for a, bs in _graph().items() if _in(a, ("segmentation", "sample_ct")) for b in bs
             if _in(b, ("trajplan",)) and not _in(b, CORE)]
    assert not wrong, wrong


def test_no_module_imports_one_that_imports_it_back():
    edges = _graph()
    state: dict[str, int] = {}          # 1 on the current path, 2 done

    def cycle_from(module: str, path: list[str]) -> list[str] | None:
        state[module] = 1
        for other in sorted(edges[module]):
            if state.get(other) == 1:
                return path[path.index(other):] + [other]
            if other not in state and (found := cycle_from(other, path + [other])):
                return found
        state[module] = 2
        return None

    for module in sorted(edges):
        if module not in state:
            found = cycle_from(module, [module])
            assert found is None, " -> ".join(found)
