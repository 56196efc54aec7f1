"""The package's imports run one way: no cycle between modules of different subpackages, and
none at all inside ``report/`` or ``search_space/`` (DESIGN.md, "Layout").

Every import counts, also those inside functions, except the ones under ``if TYPE_CHECKING:``.
"""

from __future__ import annotations

import ast
import pathlib

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1] / "convnas"
ACYCLIC_INSIDE = ("report", "search_space")


def _module_name(path: pathlib.Path) -> str:
    parts = ["convnas", *path.relative_to(ROOT).with_suffix("").parts]
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _type_checking_nodes(tree: ast.AST) -> set[int]:
    hidden: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            hidden.update(id(n) for stmt in node.body for n in ast.walk(stmt))
    return hidden


def import_graph() -> dict[str, set[str]]:
    """Module -> the convnas modules it imports."""
    paths = {_module_name(p): p for p in ROOT.rglob("*.py")}
    graph: dict[str, set[str]] = {}
    for name, path in paths.items():
        tree = ast.parse(path.read_text())
        hidden = _type_checking_nodes(tree)
        package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
        deps: set[str] = set()
        for node in ast.walk(tree):
            if id(node) in hidden:
                continue
            if isinstance(node, ast.Import):
                deps.update(a.name for a in node.names if a.name in paths)
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    anchor = package.split(".")
                    anchor = anchor[: len(anchor) - node.level + 1]
                    base = ".".join([*anchor, *([base] if base else [])])
                for alias in node.names:
                    target = f"{base}.{alias.name}"
                    deps.add(target if target in paths else base)
        graph[name] = {d for d in deps if d in paths and d != name}
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
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
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def subpackage(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "convnas"


def test_graph_sees_the_package():
    graph = import_graph()
    assert "convnas.search_space.space" in graph
    assert "convnas.search_space.architecture" in graph["convnas.search_space.space"]


def test_no_cycle_between_subpackages_or_inside_report_and_search_space():
    bad = []
    for component in cycles(import_graph()):
        packages = {subpackage(m) for m in component}
        if len(packages) > 1 or packages & set(ACYCLIC_INSIDE):
            bad.append(component)
    assert not bad, f"import cycles: {bad}"


@pytest.mark.parametrize(
    "graph, expected",
    [
        ({"a": {"b"}, "b": {"a"}, "c": set()}, [["a", "b"]]),
        ({"a": {"b"}, "b": {"c"}, "c": set()}, []),
    ],
)
def test_cycle_finder(graph, expected):
    assert cycles(graph) == expected


def test_subpackages_import_one_way():
    """Collapsed to subpackages (``operators``, ``kernels``, ``run``...), the graph has no
    cycle either: e.g. ``kernels`` never imports ``operators`` while ``operators`` calls the
    kernels."""
    packages: dict[str, set[str]] = {}
    for module, deps in import_graph().items():
        packages.setdefault(subpackage(module), set()).update(subpackage(d) for d in deps)
    for name, deps in packages.items():
        deps.discard(name)
    assert not cycles(packages), f"subpackages importing each other: {cycles(packages)}"
