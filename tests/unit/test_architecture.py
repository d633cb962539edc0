"""The package's import rules, checked mechanically from the source (DESIGN.md section 2 and 8).

Imports flow one way: no cycles between churnlab modules, whether the import is at module level
or inside a function (only ``if TYPE_CHECKING:`` blocks are exempt: they never run). MLflow is
imported by the tracking module only, rich and typer by the CLI modules only.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "src" / "churnlab"
CLI_MODULES = {"cli", "cli_app", "cli_actions", "terminal"}
TRACKING_MODULES = {"tracking"}


def _type_checking_nodes(tree: ast.AST) -> set[int]:
    """ids of every node inside an ``if TYPE_CHECKING:`` block."""
    skip: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If):
            test = node.test
            name = test.id if isinstance(test, ast.Name) else getattr(test, "attr", None)
            if name == "TYPE_CHECKING":
                for child in node.body:
                    skip |= {id(n) for n in ast.walk(child)}
    return skip


def imports_of(source: str, modules: set[str]) -> tuple[set[str], set[str]]:
    """(churnlab modules imported, top-level third-party packages imported) by one module."""
    tree = ast.parse(source)
    skip = _type_checking_nodes(tree)
    internal: set[str] = set()
    external: set[str] = set()
    for node in ast.walk(tree):
        if id(node) in skip:
            continue
        if isinstance(node, ast.Import):
            for alias in node.names:
                parts = alias.name.split(".")
                if parts[0] == "churnlab" and len(parts) > 1:
                    internal.add(parts[1])
                elif parts[0] != "churnlab":
                    external.add(parts[0])
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            parts = node.module.split(".")
            if parts[0] != "churnlab":
                external.add(parts[0])
            elif len(parts) > 1:
                internal.add(parts[1])
            else:  # from churnlab import a, b
                internal |= {a.name for a in node.names if a.name in modules}
    return internal, external


def package_graph(package: Path = PACKAGE) -> tuple[dict[str, set[str]], dict[str, set[str]]]:
    """Module -> churnlab modules it imports, and module -> third-party packages it imports."""
    files = {p.stem: p for p in package.glob("*.py") if p.stem != "__init__"}
    graph, external = {}, {}
    for name, path in files.items():
        graph[name], external[name] = imports_of(path.read_text(), set(files))
        graph[name].discard(name)
    return graph, external


def find_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Every strongly connected component with more than one module (Tarjan), sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    out: list[list[str]] = []
    counter = [0]

    def visit(v: str) -> None:
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in graph:
                continue
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return sorted(out)


def test_cycle_detector_on_synthetic_graphs() -> None:
    assert find_cycles({"a": {"b"}, "b": {"c"}, "c": set()}) == []
    assert find_cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert find_cycles({"a": {"b"}, "b": {"a"}, "c": {"d"}, "d": {"c"}}) == [["a", "b"], ["c", "d"]]


def test_function_level_imports_count_and_type_checking_does_not() -> None:
    source = (
        "from typing import TYPE_CHECKING\n"
        "if TYPE_CHECKING:\n"
        "    from churnlab.train import TaskResult\n"
        "def f():\n"
        "    from churnlab import kpis, notamodule\n"
        "    import churnlab.tracking\n"
        "    import mlflow.pyfunc\n"
    )
    internal, external = imports_of(source, {"kpis", "tracking", "train"})
    assert internal == {"kpis", "tracking"}
    assert external == {"typing", "mlflow"}


def test_a_reintroduced_cycle_is_caught() -> None:
    graph, _ = package_graph()
    assert find_cycles(graph) == []
    # What the old code did: the bundle reaching up into the pipeline that uses it.
    graph["bundle"] = graph["bundle"] | {"pipeline"}
    cycles = find_cycles(graph)
    assert cycles and "bundle" in cycles[0] and "pipeline" in cycles[0]


def test_no_import_cycles_in_the_package() -> None:
    graph, _ = package_graph()
    assert len(graph) > 20  # the parse found the modules
    assert find_cycles(graph) == [], "import cycle(s) between churnlab modules"


@pytest.mark.parametrize(
    ("package", "allowed"),
    [("mlflow", TRACKING_MODULES), ("rich", CLI_MODULES), ("typer", CLI_MODULES)],
)
def test_third_party_packages_stay_in_their_layer(package: str, allowed: set[str]) -> None:
    _, external = package_graph()
    users = {m for m, pkgs in external.items() if package in pkgs}
    assert users, f"nothing imports {package}: the check would be vacuous"
    assert users <= allowed, (
        f"{package} imported outside {sorted(allowed)}: {sorted(users - allowed)}"
    )


def test_stages_do_not_import_the_pipeline_or_the_cli() -> None:
    graph, _ = package_graph()
    upward = CLI_MODULES | {"pipeline", "actions", "reporting", "measuring"}
    for module, deps in graph.items():
        if module in upward or module == "__main__":
            continue
        assert not deps & upward, f"{module} imports {sorted(deps & upward)}"
