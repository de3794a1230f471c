"""Which of a round's out-of-date cells train together (`bnbench run --engine group`).

Cells group when they come from the same dvc.yaml with the same params files and prepared data,
and their settings share a `group_key` (pipeline/cell/grouping.py: they differ at most in seed,
learning rate and initializer). A group holds at most `size` cells; the rest of its kind form
further groups. A cell alone in its kind trains as its stage would.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from pipeline.runner.worker import Task

DEFAULT_SIZE = 64  # cells per program: the full study's largest kind (the seeds and rates of a configuration) fits


def cell_settings_key(task: Task, params_cache: dict) -> tuple:
    """Where the cell's program may be shared: its working directory, params files, data and group key."""
    from pipeline.cell.grouping import group_key
    from pipeline.cell.resolve import resolve_cell
    from pipeline.study.params import load_params
    from pipeline.train import parse_args

    args = parse_args(task.argv)
    files = tuple(args.params or [Path("params.yaml")])
    if (task.wdir, files) not in params_cache:
        params_cache[(task.wdir, files)] = load_params(*(task.wdir / f for f in files))
    params = params_cache[(task.wdir, files)]
    learning_rate_from = task.wdir / args.learning_rate_from if args.learning_rate_from else None
    source = " + ".join(map(str, files))
    _, settings, _ = resolve_cell(params, source, args.cell, args.sweep_cell, learning_rate_from)
    return task.wdir, files, task.wdir / args.data, group_key(settings)


def group_tasks(tasks: Sequence[Task], size: int = DEFAULT_SIZE) -> list[list[Task]]:
    """The tasks in batches: a group per kind, split into parts of at most `size`; in the tasks' order."""
    kinds: dict[tuple, list[Task]] = {}
    cache: dict = {}
    for task in tasks:
        kinds.setdefault(cell_settings_key(task, cache), []).append(task)
    return [members[i : i + size] for members in kinds.values() for i in range(0, len(members), size)]
