"""Gather the results of exactly the cells in the current matrix.

Reads <cells>/*/metrics.json and history.csv; returns one row per run (its summary,
the settings it was trained with and its time to each target) and each run's history.
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from pipeline.cells import Cell, expand_matrix
from pipeline.convergence import target_key, time_to_target
from pipeline.errors import UserError
from pipeline.params import Params

AXES = ["dataset", "activation", "bn", "dropout", "seed"]
# Settings every run of a study was trained with; a run's own record wins where it has one.
SETTINGS = ["architecture", "optimizer", "learning_rate"]


def _settings(params: Params) -> dict[str, object]:
    return {
        "architecture": params.train.architecture,
        "optimizer": params.train.optimizer.name,
        "learning_rate": params.train.optimizer.learning_rate,
    }


def _cell_of(summary: dict) -> Cell:
    return Cell(
        summary["dataset"], summary["activation"], summary["bn"], float(summary["dropout"]), int(summary["seed"])
    )


def collect_results(params: Params, cells_dir: Path) -> tuple[pd.DataFrame, dict[Cell, pd.DataFrame]]:
    """One row per cell (summary plus time to each target) and each cell's history.

    Directories of cells no longer in the matrix are left out; a cell of the
    matrix without results is an error that names its stage.
    """
    wanted = expand_matrix(params.matrix)
    found: dict[Cell, Path] = {}
    for metrics_path in sorted(cells_dir.glob("*/metrics.json")):
        cell = _cell_of(json.loads(metrics_path.read_text(encoding="utf-8")))
        if cell in wanted:
            if cell in found:
                raise UserError(
                    f"{found[cell].parent} and {metrics_path.parent} both hold cell {cell.name}; delete the stale one"
                )
            found[cell] = metrics_path
    missing = [cell.name for cell in wanted if cell not in found]
    if missing:
        raise UserError(f"no results for {len(missing)} cell(s), e.g. train@{missing[0]}; run `dvc repro` first")
    rows, histories = [], {}
    for cell in wanted:
        summary = json.loads(found[cell].read_text(encoding="utf-8"))
        history = pd.read_csv(found[cell].parent / "history.csv")
        summary = {**_settings(params), **summary}
        # Outputs written before these were recorded: the last evaluation is where training ended.
        summary.setdefault("steps_trained", int(history["step"].iloc[-1]))
        summary.setdefault("train_seconds", float(history["seconds"].iloc[-1]))
        for target in getattr(params.targets, cell.dataset):
            reached = time_to_target(history, target)
            key = target_key(target)
            summary[f"reached_{key}"] = reached["reached"]
            summary[f"steps_to_{key}"] = reached["steps"]
            summary[f"epochs_to_{key}"] = reached["epochs"]
            summary[f"seconds_to_{key}"] = reached["seconds"]
        rows.append(summary)
        histories[cell] = history
    return pd.DataFrame(rows), histories
