"""A matrix cell: one training run, identified by its axes."""

from __future__ import annotations

import itertools
from dataclasses import asdict, dataclass

from pipeline.params import Activation, BatchNorm, Dataset, MatrixParams


@dataclass(frozen=True)
class Cell:
    dataset: Dataset
    activation: Activation
    bn: BatchNorm
    dropout: float
    seed: int

    @property
    def name(self) -> str:
        # Same order as the DVC matrix, so `train@<name>` is this cell's stage.
        return f"{self.dataset}-{self.activation}-{self.bn}-{self.dropout}-{self.seed}"

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


def expand_matrix(matrix: MatrixParams) -> list[Cell]:
    """Every cell of the cross product, in the order DVC generates the stages."""
    return [
        Cell(*axes)
        for axes in itertools.product(matrix.dataset, matrix.activation, matrix.bn, matrix.dropout, matrix.seed)
    ]
