"""The package's layout holds: no import cycle, and the cells' code never imports what only records them.

The import graph is read from the source (pipeline/study/code.py's reader, lazy imports included), so a
cycle that only closes inside a function still counts.
"""

from __future__ import annotations

from pathlib import Path

import networkx as nx

from pipeline.study.code import PACKAGE, _imports, _module_file, code_deps
from tests.helpers import REPO


def _modules(root: Path) -> list[str]:
    names = []
    for path in sorted((root / PACKAGE).rglob("*.py")):
        parts = path.relative_to(root).with_suffix("").parts
        names.append(".".join(parts[:-1] if parts[-1] == "__init__" else parts))
    return names


def import_graph(root: Path) -> nx.DiGraph:
    """An edge from each project module to each project module it imports (a package counts as its __init__)."""
    graph = nx.DiGraph()
    for module in _modules(root):
        graph.add_node(module)
        for imported in _imports(root, _module_file(root, module), module):
            if imported != module:
                graph.add_edge(module, imported)
    return graph


def test_no_import_cycle_in_the_package():
    cycles = list(nx.simple_cycles(import_graph(REPO)))
    assert not cycles, "import cycles: " + "; ".join(" -> ".join([*c, c[0]]) for c in cycles)


def test_the_cycle_test_sees_a_cycle_that_closes_inside_a_function(tmp_path):
    package = tmp_path / PACKAGE
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "a.py").write_text("from pipeline.b import g\n\n\ndef f():\n    return g()\n")
    (package / "b.py").write_text("def g():\n    from pipeline import a  # lazy\n\n    return a\n")
    assert list(nx.simple_cycles(import_graph(tmp_path))) in (
        [["pipeline.a", "pipeline.b"]],
        [["pipeline.b", "pipeline.a"]],
    )


def test_the_cells_code_imports_no_tracking_runner_or_report():
    for module in (REPO / PACKAGE / "cell").glob("*.py"):
        files = code_deps(REPO, f"{PACKAGE}.cell.{module.stem}")
        assert not [f for f in files if f.split("/")[1] in ("tracking", "runner", "report")], module.name


def test_no_module_reaches_into_another_module_s_private_names():
    import ast

    offenders = []
    for path in (REPO / PACKAGE).rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith(PACKAGE):
                offenders += [f"{path.relative_to(REPO)}: {a.name}" for a in node.names if a.name.startswith("_")]
            if isinstance(node, ast.Attribute) and node.attr.startswith("_") and not node.attr.startswith("__"):
                owner = node.value
                if isinstance(owner, ast.Name) and owner.id not in ("self", "cls") and owner.id[0].islower():
                    offenders.append(f"{path.relative_to(REPO)}:{node.lineno}: {owner.id}.{node.attr}")
    assert not offenders, offenders
