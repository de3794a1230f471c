"""Which project files are a stage's code, so that a change to them re-runs exactly that stage.

A stage depends on its entry point's module and every project module it imports, transitively
(found by reading the imports, lazy ones included; conservative: an import anywhere in a module
counts), plus the files such a module reads at run time (DATA_FILES).

The cells are the exception: hundreds of stages, and hours of training each time they go stale.
They depend on `cell_code`: the modules of pipeline/cell/ and what those import (the study's
schema, axes and cells, data reading, errors), and nothing else. The stage command
(pipeline/train.py) hands a cell its tracker; pipeline/cell/ never imports tracking, the runner
or the report (tests/unit/test_layout.py), so a fix there leaves every cell up to date.

No stage lists these files in dvc.yaml: a stage depends on one digest of its code (`digest`, an md5
per file), written by a digest stage (pipeline/train_code.py for the cells, pipeline/stage_code.py
for the other kinds, STAGE_ENTRIES), which itself depends on the folder pipeline/ whole. DVC makes
a `dvc exp show` column of every dependency: one folder and a few digests instead of every module.
"""

from __future__ import annotations

import ast
import hashlib
from pathlib import Path

PACKAGE = "pipeline"
CELL_PACKAGE = "pipeline/cell"
# Files a module reads at run time that no import shows.
DATA_FILES = {"pipeline/report/render.py": ["pipeline/report/templates"]}
# The kinds of stage besides the cells and the checks, by the entry point their command runs: each kind's
# stages depend on results/code/<kind>.json, the digest of code_deps(entry) (pipeline/stage_code.py).
STAGE_ENTRIES = {
    "fetch": "pipeline.fetch",
    "prepare": "pipeline.prepare",
    "choose": "pipeline.choose",
    "report": "pipeline.report.__main__",
}


def _module_file(root: Path, module: str) -> Path | None:
    base = root.joinpath(*module.split("."))
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def _imports(root: Path, path: Path, module: str) -> set[str]:
    """Project modules `path` imports anywhere in it (functions too), as dotted names."""
    found: set[str] = set()
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative: resolve against this module's package
                parts = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(parts + ([node.module] if node.module else []))
            else:
                base = node.module or ""
            # `from pipeline.data import prepared` imports a module; `from pipeline.x import f` a name.
            names = [base] + [f"{base}.{alias.name}" for alias in node.names]
        else:
            continue
        found.update(n for n in names if n.split(".")[0] == PACKAGE and _module_file(root, n))
    return found


def code_deps(root: Path, entry: str) -> list[str]:
    """Files (relative to root) of `entry` and every project module it imports, transitively."""
    seen: set[str] = set()
    todo = [entry]
    while todo:
        module = todo.pop()
        if module in seen:
            continue
        seen.add(module)
        parts = module.split(".")
        todo += [".".join(parts[:i]) for i in range(1, len(parts))]  # importing a.b.c runs a and a.b
        todo += sorted(_imports(root, _module_file(root, module), module))
    files = {_module_file(root, m).relative_to(root).as_posix() for m in seen}
    files |= {extra for f in list(files) for extra in DATA_FILES.get(f, [])}
    return sorted(files)


def digest(root: Path, names: list[str]) -> dict:
    """An md5 per file (a folder's files one by one, sorted): what a digest stage writes, {"files": {name: md5}}."""
    files = {}
    for name in names:
        path = root / name
        for file in sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]:
            files[file.relative_to(root).as_posix()] = hashlib.md5(file.read_bytes()).hexdigest()
    return {"files": files}


def cell_code(root: Path) -> list[str]:
    """The files that decide a cell's outputs: pipeline/cell/'s modules and what they import, transitively."""
    modules = [f"{PACKAGE}.cell.{p.stem}" for p in sorted((root / CELL_PACKAGE).glob("*.py")) if p.stem != "__init__"]
    return sorted({file for module in modules for file in code_deps(root, module)})
