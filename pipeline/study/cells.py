"""A study's cells: one training run each, identified by its value on every axis.

The axes are the keys of `matrix:` in params (pipeline/study/params.py), in the order
written there. Everything that names or groups cells derives from them: the cell
and DVC stage name, the MLflow params and tags, the report's grouping.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

from pipeline.errors import UserError
from pipeline.study.axes import CELL_AXES, apply_axes, format_value, read_dotted
from pipeline.study.schema import LEARNING_RATE, CellSettings, Params


@dataclass(frozen=True)
class Cell:
    axes: tuple[tuple[str, object], ...]  # (axis key, value) in the matrix's order

    def __getitem__(self, axis: str) -> object:
        return dict(self.axes)[axis]

    @property
    def dataset(self) -> str:
        return str(self["dataset"])

    @property
    def seed(self) -> int:
        return int(self["seed"])

    @property
    def name(self) -> str:
        """The cell's id, its output folder and its DVC stage `train@<name>`.

        The cell axes read as bare values ("cifar10-relu-post-0.0-0"); an axis of
        `train` adds its leaf key, e.g. "learning_rate_0.01".
        """
        return "-".join(
            format_value(value) if key in CELL_AXES else f"{key.rsplit('.', 1)[-1]}_{format_value(value)}"
            for key, value in self.axes
        )

    def as_dict(self) -> dict[str, object]:
        return dict(self.axes)

    @property
    def configuration(self) -> str:
        """The cell's name without its seed (and a sweep cell's learning rate): what a sweep chooses for."""
        return Cell(tuple((k, v) for k, v in self.axes if k not in ("seed", LEARNING_RATE))).name


def expand_matrix(params: Params) -> list[Cell]:
    """Every cell of the cross product, the first axis varying slowest.

    Values are read back from each cell's validated settings, so `dropout: [0]`
    and `[0.0]` name the same cell.
    """
    keys = list(params.matrix)
    cells = []
    for values in itertools.product(*params.matrix.values()):
        settings = apply_axes(params.train, dict(zip(keys, values, strict=True)))
        cells.append(Cell(tuple((key, read_dotted(settings, key)) for key in keys)))
    return cells


def cell_settings(params: Params, cell: Cell) -> CellSettings:
    return apply_axes(params.train, cell.as_dict())


def _named(cells: list[Cell], what: str, name: str, where: str) -> Cell:
    """The cell called `name`, or one message naming the fix (a stage run from an older pipeline)."""
    for cell in cells:
        if cell.name == name:
            return cell
    raise UserError(
        f"{what} {name} is not in {where}; if that changed, "
        "regenerate the pipeline with `uv run python -m pipeline.dvcfile`"
    )


def find_cell(params: Params, name: str, source: str) -> Cell:
    return _named(expand_matrix(params), "cell", name, f"the matrix of {source}")


def axis_label(key: str) -> str:
    """An axis as a column or panel reads it: its leaf key ("learning_rate" for train.optimizer.learning_rate)."""
    return key.rsplit(".", 1)[-1]


# -- the learning-rate sweep (params `sweep:`) ---------------------------------------------------


def expand_sweep(params: Params) -> list[Cell]:
    """One cell per configuration x sweep learning rate x sweep seed: `<configuration>-learning_rate_<rate>-<seed>`."""
    if params.sweep is None:
        return []
    configurations = {cell.configuration: cell for cell in expand_matrix(params)}
    return [
        Cell(tuple((k, v) for k, v in cell.axes if k != "seed") + ((LEARNING_RATE, rate), ("seed", seed)))
        for cell in configurations.values()
        for rate in params.sweep.learning_rates
        for seed in params.sweep.seeds
    ]


def sweep_settings(params: Params, cell: Cell) -> CellSettings:
    """A sweep cell trains for the sweep's budget at its own rate; everything else as the study says."""
    assert params.sweep is not None
    return apply_axes(params.train, {**cell.as_dict(), "train.epochs": params.sweep.epochs})


def tuned_settings(params: Params, cell: Cell, learning_rate: float) -> CellSettings:
    """A cell of the study trained at the learning rate chosen for its configuration."""
    return apply_axes(params.train, {**cell.as_dict(), LEARNING_RATE: learning_rate})


def find_sweep_cell(params: Params, name: str, source: str) -> Cell:
    return _named(expand_sweep(params), "sweep cell", name, f"the sweep of {source}")
