"""No import circle between sandboxkit and the suite, nor inside the suite (function-level imports count)."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import sandboxkit_conformance

import sandboxkit

CORE = Path(sandboxkit.__file__).parent
SUITE_PKG = Path(sandboxkit_conformance.__file__).parent


def _imports(path: Path, package: str) -> set[str]:
    """Every module ``path`` imports, anywhere in it (relative imports resolved against ``package``)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(
                    package.split(".")[: len(package.split(".")) - node.level + 1] + ([base] if base else [])
                )
            found.add(base)
            found.update(f"{base}.{alias.name}" for alias in node.names)
    return found


def _module(path: Path, root: Path, top: str) -> str:
    parts = [top, *path.relative_to(root).with_suffix("").parts]
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _graph() -> dict[str, set[str]]:
    graph: dict[str, set[str]] = {}
    for root, top in ((CORE, "sandboxkit"), (SUITE_PKG, "sandboxkit_conformance")):
        for path in root.rglob("*.py"):
            name = _module(path, root, top)
            package = name if path.name == "__init__.py" else name.rpartition(".")[0]
            graph[name] = {
                m for m in _imports(path, package) if m.split(".")[0] in ("sandboxkit", "sandboxkit_conformance")
            }
    return {name: {m for m in deps if m in graph and m != name} for name, deps in graph.items()}


def test_the_core_never_imports_the_suite() -> None:
    offenders = {name: deps for name, deps in _graph().items() if name.startswith("sandboxkit.")}
    offenders = {n: {d for d in deps if d.startswith("sandboxkit_conformance")} for n, deps in offenders.items()}
    assert not {n: d for n, d in offenders.items() if d}, "sandboxkit must not import sandboxkit_conformance"


def test_suite_modules_form_no_circle() -> None:
    graph = {n: {d for d in deps if d.startswith("sandboxkit_conformance")} for n, deps in _graph().items()}
    graph = {n: d for n, d in graph.items() if n.startswith("sandboxkit_conformance")}
    # a package depends on its own submodules only through what it imports; a module on its parent package is not
    # a circle unless the package imports it back, which the graph shows directly
    state: dict[str, int] = {}
    path: list[str] = []

    def visit(node: str) -> None:
        state[node] = 1
        path.append(node)
        for dep in sorted(graph.get(node, ())):
            if dep == node.rpartition(".")[0] or node.startswith(dep + "."):
                continue  # importing from one's own parent package (it is loaded first by Python anyway)
            if state.get(dep) == 1:
                cycle = [*path[path.index(dep) :], dep]
                raise AssertionError("import circle: " + " -> ".join(cycle))
            if dep not in state:
                visit(dep)
        path.pop()
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            visit(node)


def test_test_modules_do_not_import_the_pytest_plugin() -> None:
    for path in (SUITE_PKG / "suite").glob("*.py"):
        assert "sandboxkit_conformance.plugin" not in _imports(path, "sandboxkit_conformance.suite"), path.name


def test_the_cli_entry_point_is_cheap() -> None:
    """Listing CLI commands loads the suite's entry point, which must not import pytest or the suite."""
    probe = (
        "import sys, sandboxkit.cli as c; c.build_parser(); "
        "print('pytest' in sys.modules, 'sandboxkit_conformance._cli' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["False", "True"], "the conformance command comes from the plugin hook, without pytest"
