"""The validation curves `dvc plots show` overlays: one table per dataset, a line per configuration.

Long format, one row per run and evaluation: `step`, `val_accuracy`, `configuration`, `seed`. The
plot's template (.dvc/plots/by_configuration.json) draws each configuration's mean over its seeds
as a line, coloured by configuration, with a band of one standard deviation across the seeds; the
revisions `dvc plots diff` compares are told apart by the line's dash. `configuration` names only
the axes that vary in the study besides the dataset and the seed (`activation=relu bn=post`), so a
legend stays short.
"""

from __future__ import annotations

import pandas as pd

from pipeline.study.axes import format_value
from pipeline.study.cells import Cell, axis_label

COLUMNS = ["step", "val_accuracy", "configuration", "seed"]
FIXED = ("dataset", "seed")  # a file per dataset; the seeds are a configuration's replicates


def configuration_label(cell: Cell, varying: list[str]) -> str:
    return " ".join(f"{axis_label(axis)}={format_value(cell[axis])}" for axis in varying) or "all runs"


def curves_by_dataset(histories: dict[Cell, pd.DataFrame]) -> dict[str, pd.DataFrame]:
    """Per dataset, every run's validation accuracy at each evaluation, labelled by its configuration."""
    cells = list(histories)
    axes = [axis for axis, _ in cells[0].axes] if cells else []
    varying = [a for a in axes if a not in FIXED and len({format_value(c[a]) for c in cells}) > 1]
    frames: dict[str, list[pd.DataFrame]] = {}
    for cell, history in histories.items():
        rows = history.loc[history["val_accuracy"].notna(), ["step", "val_accuracy"]].copy()
        rows["configuration"] = configuration_label(cell, varying)
        rows["seed"] = cell.seed
        frames.setdefault(cell.dataset, []).append(rows)
    return {
        dataset: pd.concat(parts, ignore_index=True).sort_values(["configuration", "seed", "step"])[COLUMNS]
        for dataset, parts in sorted(frames.items())
    }
