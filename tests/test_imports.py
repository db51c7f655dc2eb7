"""The import graph: no circle between or inside the packages, and no private reach-in from outside.

Both checks read the source with ``ast`` (nothing is imported), so they need no engine.
"""

from __future__ import annotations

import ast
import functools
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
#: package name -> the directory that holds it
PACKAGES = {
    "sandboxkit": ROOT / "sandboxkit",
    "sandboxkit_docker": ROOT / "plugins" / "docker" / "sandboxkit_docker",
    "sandboxkit_modal": ROOT / "plugins" / "modal" / "sandboxkit_modal",
    "sandboxkit_conformance": ROOT / "conformance" / "sandboxkit_conformance",
}
#: trees that must use sandboxkit's public API only (tests/ may test private units of the core)
PUBLIC_ONLY = [ROOT / "plugins", ROOT / "conformance", ROOT / "benchmarks", ROOT / "examples"]


def _module_name(path: Path) -> str:
    for package, directory in PACKAGES.items():
        if path.is_relative_to(directory):
            parts = [package, *path.relative_to(directory).with_suffix("").parts]
            return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
    raise ValueError(path)


def _modules() -> dict[str, Path]:
    return {_module_name(p): p for d in PACKAGES.values() for p in d.rglob("*.py")}


def _runtime_imports(tree: ast.AST, module: str, is_package: bool) -> Iterator[tuple[str, list[str], int]]:
    """``(imported module, names, line)`` for each import that runs (``if TYPE_CHECKING:`` blocks do not)."""

    def visit(node: ast.AST) -> Iterator[tuple[str, list[str], int]]:
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            yield from (i for child in node.orelse for i in visit(child))
            return
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name, [], node.lineno
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = module.split(".")
                anchor = anchor[: len(anchor) - node.level + (1 if is_package else 0)]
                base = ".".join([*anchor, base] if base else anchor)
            yield base, [a.name for a in node.names], node.lineno
        for child in ast.iter_child_nodes(node):
            yield from visit(child)

    yield from visit(tree)


@functools.cache
def _parsed_graph() -> dict[str, frozenset[str]]:
    modules = _modules()
    graph: dict[str, set[str]] = {name: set() for name in modules}
    for name, path in modules.items():
        tree = ast.parse(path.read_text(), str(path))
        for target, names, _ in _runtime_imports(tree, name, path.name == "__init__.py"):
            hits = [f"{target}.{n}" for n in names if f"{target}.{n}" in modules]
            if (target in modules and len(hits) < len(names)) or not names:
                hits.append(target)
            graph[name].update(h for h in hits if h in modules and h != name)
    return {name: frozenset(targets) for name, targets in graph.items()}


def _graph() -> dict[str, set[str]]:
    """Module -> the modules of the four packages it imports at run time (a fresh copy to edit)."""
    return {name: set(targets) for name, targets in _parsed_graph().items()}


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def connect(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(graph[node]):
            if nxt not in index:
                connect(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            connect(node)
    return found


def test_the_graph_sees_the_packages() -> None:
    graph = _graph()
    assert "sandboxkit._async_sandbox" in graph["sandboxkit"]
    assert "sandboxkit.spi" in graph["sandboxkit_docker.provider"]


def test_a_circle_is_found() -> None:
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_no_import_circle_between_or_inside_the_packages() -> None:
    cycles = _cycles(_graph())
    assert cycles == [], "import circles (every module of each imports the next, round to the first): " + "; ".join(
        " <-> ".join(c) for c in cycles
    )


def _private_imports(path: Path) -> Iterator[str]:
    tree = ast.parse(path.read_text(), str(path))
    for node in ast.walk(tree):
        targets: list[str] = []
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and not node.level and node.module:
            targets = [node.module] if "._" in node.module else [f"{node.module}.{a.name}" for a in node.names]
        elif isinstance(node, ast.Attribute) and ast.unparse(node).startswith("sandboxkit._"):
            targets = [ast.unparse(node)]
        for target in targets:
            parts = target.split(".")
            if parts[0] == "sandboxkit" and any(p.startswith("_") and not p.startswith("__") for p in parts[1:2]):
                yield f"{path.relative_to(ROOT)}:{getattr(node, 'lineno', 0)}: {target}"


@pytest.mark.parametrize("tree", PUBLIC_ONLY, ids=lambda p: p.name)
def test_nothing_outside_sandboxkit_imports_its_private_modules(tree: Path) -> None:
    found = sorted({hit for path in tree.rglob("*.py") if ".venv" not in path.parts for hit in _private_imports(path)})
    assert found == [], "use sandboxkit's public API (sandboxkit, sandboxkit.spi, ...) instead of: " + ", ".join(found)
