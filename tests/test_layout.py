"""The package's layers, read from its source: who may import whom, and no import cycles.

Every import statement counts, module-level or inside a function (a lazy import that hides a
cycle is still a cycle). The layers, bottom up: ``core`` (the numerics) imports nothing else of
the package; ``distributed`` (the Dask block operations) only ``core`` and the input checks;
``config`` only the parameter constraints; ``fitting`` (the one fitting layer) sits above
``core`` and ``distributed``; the model classes above it.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1] / "rfm_recsys"


def _module_name(path: Path) -> str:
    parts = path.relative_to(ROOT.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path) -> set[str]:
    """Every rfm_recsys module a file imports (relative imports resolved)."""
    name = _module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names if a.name.startswith("rfm_recsys")}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                mod = ".".join(base + ([node.module] if node.module else []))
            else:
                mod = node.module or ""
            if not mod.startswith("rfm_recsys"):
                continue
            # "from . import blocks" names a module; "from .x import y" the module x
            for alias in node.names:
                sub = f"{mod}.{alias.name}"
                out.add(sub if (ROOT.parent / sub.replace(".", "/")).with_suffix(".py").exists()
                        or (ROOT.parent / sub.replace(".", "/")).is_dir() else mod)  # fmt: skip
    return out


GRAPH = {_module_name(p): _imports(p) for p in ROOT.rglob("*.py")}


def _layer(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "rfm_recsys"


@pytest.mark.parametrize(
    "layer, allowed",
    [
        ("core", {"core"}),
        ("distributed", {"core", "distributed", "checks", "ids"}),
        ("config", {"params"}),
        ("fitting", {"core", "distributed", "fitting"}),
    ],
)
def test_layers_import_only_what_lies_below(layer, allowed):
    wrong = {
        (m, dep)
        for m, deps in GRAPH.items()
        if _layer(m) == layer
        for dep in deps
        if _layer(dep) not in allowed
    }
    assert not wrong, sorted(wrong)


def test_no_import_cycles():
    # Tarjan's strongly connected components over every import, lazy ones included; a package's
    # __init__ importing its own submodules is no cycle unless a submodule imports it back
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in GRAPH.get(v, ()):
            if w not in GRAPH:
                continue
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    for v in GRAPH:
        if v not in index:
            visit(v)
    assert not cycles, cycles


def test_the_graph_is_read():
    # guards the test itself: known edges are found, lazy ones included
    assert "rfm_recsys.core.engine" in GRAPH["rfm_recsys.fitting.fit"]
    assert "rfm_recsys.distributed" in GRAPH["rfm_recsys.fitting.fit"]  # imported in a function
    assert "rfm_recsys.core.blocks" in GRAPH["rfm_recsys.core.engine"]
