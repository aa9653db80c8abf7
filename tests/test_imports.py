"""fleet's modules and packages import each other without cycles.

Read from the source with ``ast``: every ``import`` of a fleet module, at the
top of a module or inside a function (a deferred import is still a
dependency), except those under ``if TYPE_CHECKING:``.  Modules may not form
a cycle, and neither may fleet's top-level packages and modules (``render``,
``deliver``, ``checks``, ``plan``, ...) once each package is taken as one.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator, Mapping
from pathlib import Path

import fleet

ROOT = Path(fleet.__file__).parent
Graph = dict[str, set[str]]


def _modules() -> dict[str, Path]:
    found = {}
    for path in ROOT.rglob("*.py"):
        parts = ["fleet", *path.relative_to(ROOT).with_suffix("").parts]
        if parts[-1] == "__init__":
            parts.pop()
        found[".".join(parts)] = path
    return found


def _type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _imports(tree: ast.AST) -> Iterator[ast.Import | ast.ImportFrom]:
    for node in ast.iter_child_nodes(tree):
        if isinstance(node, ast.If) and _type_checking(node):
            for other in node.orelse:
                yield from _imports(ast.Module(body=[other], type_ignores=[]))
            continue
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            yield node
        yield from _imports(node)


def _target(name: str, modules: Mapping[str, Path]) -> str | None:
    """The fleet module ``name`` is, or is inside (``fleet.x.NAME`` -> ``fleet.x``)."""
    while name and name not in modules:
        name = name.rpartition(".")[0]
    return name or None


def module_graph() -> Graph:
    """fleet module -> the fleet modules it imports."""
    modules = _modules()
    graph: Graph = {name: set() for name in modules}
    for name, path in modules.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        for node in _imports(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                wanted = [alias.name for alias in node.names]
            else:
                base = node.module or ""
                if node.level:
                    up = package.split(".")[: len(package.split(".")) - node.level + 1]
                    base = ".".join(up + ([base] if base else []))
                wanted = [f"{base}.{alias.name}" for alias in node.names]
            for imported in wanted:
                target = _target(imported, modules)
                if target and target != name:
                    graph[name].add(target)
    return graph


def package_graph(graph: Graph) -> Graph:
    """The same edges between fleet's top-level packages and modules (``fleet.render``, ...)."""

    def top(name: str) -> str:
        return ".".join(name.split(".")[:2])

    collapsed: Graph = {}
    for source, targets in graph.items():
        edges = collapsed.setdefault(top(source), set())
        edges.update(top(t) for t in targets if top(t) != top(source))
    return collapsed


def cycles(graph: Graph) -> list[set[str]]:
    """The strongly connected components with more than one node (Tarjan's algorithm)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[set[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = set()
            while True:
                member = stack.pop()
                component.add(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(component)

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_imports_inside_functions_count_and_those_for_type_checking_do_not():
    source = (
        "if TYPE_CHECKING:\n    import fleet.x\nelse:\n    import fleet.y\n"
        "def f():\n    from fleet import z\n"
    )
    found = [n.names[0].name for n in _imports(ast.parse(source))]
    assert found == ["fleet.y", "z"]


def test_the_graph_holds_fleets_own_imports():
    graph = module_graph()
    assert "fleet.model" in graph["fleet.render.console"]  # at the top
    assert "fleet.render.reports" in graph["fleet.deliver.history"]  # inside a function
    assert "fleet.checks.facts" in graph["fleet.diagnose.observe"]  # a name from a module
    assert "fleet.app" in graph["fleet.cli"]


def test_cycles_finds_a_loop_through_three_nodes():
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert cycles(graph) == [{"a", "b", "c"}]


def test_no_module_imports_another_that_imports_it_back():
    assert cycles(module_graph()) == []


def test_no_package_imports_another_that_imports_it_back():
    assert cycles(package_graph(module_graph())) == []
