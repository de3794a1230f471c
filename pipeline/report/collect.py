"""Gather the results of exactly the cells of the current study.

Reads each cell folder (pipeline/cell/outputs.py); returns one row per run (its
axes, its effective settings, its summary and its time to each target) and each
run's history, keyed by cell.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from pipeline.cell.convergence import target_metrics
from pipeline.cell.outputs import find_cell_outputs, read_cell_outputs
from pipeline.errors import UserError
from pipeline.report.diagnostics import run_diagnostics
from pipeline.study.axes import flatten
from pipeline.study.cells import Cell, cell_settings, expand_matrix, tuned_settings
from pipeline.study.schema import CellSettings, Params

SEED = "seed"
LR_POLICY = "lr_policy"  # results.csv: "fixed" (the study's learning rate) or "tuned" (chosen by the sweep)


def axes_of(params: Params) -> list[str]:
    """The study's axes, as results.csv names its columns."""
    return list(params.matrix)


def configuration_axes(params: Params) -> list[str]:
    """What makes a configuration: every axis but the seed, whose runs are its replicates."""
    return [axis for axis in params.matrix if axis != SEED]


def seconds_per_epoch(summary: dict) -> float | None:
    """Training seconds per epoch: the mean step time after the first (compiling) step, times steps per epoch.

    None when no step past the first was trained (nothing to time).
    """
    timed_steps = (summary.get("steps_trained") or 0) - 1
    if timed_steps < 1 or summary.get("train_seconds") is None:
        return None
    return float(summary["train_seconds"]) / timed_steps * int(summary["steps_per_epoch"])


def collect_results(
    params: Params, cells_dir: Path, chosen: dict[str, float] | None = None
) -> tuple[pd.DataFrame, dict[Cell, pd.DataFrame]]:
    """One row per cell (axes, settings, summary, time to each target) and each cell's history.

    Folders of cells no longer in the study are left out; a cell of the study
    without results is an error that names its stage. With `chosen` (configuration ->
    learning rate, from the choose stage) these are the tuned cells, each checked to
    have trained at its configuration's chosen rate; `lr_policy` says which.
    """
    stage = "train" if chosen is None else "tuned"
    wanted = {cell.name: cell for cell in expand_matrix(params)}
    found: dict[str, Path] = {}
    outputs = {}
    for folder in find_cell_outputs(cells_dir):
        cell_outputs = read_cell_outputs(folder)
        name = cell_outputs.name
        if name not in wanted:
            continue
        if name in found:
            raise UserError(f"{found[name]} and {folder} both hold cell {name}; delete the stale one")
        found[name], outputs[name] = folder, cell_outputs
    missing = [name for name in wanted if name not in found]
    if missing:
        raise UserError(
            f"no results for {len(missing)} cell(s), e.g. {stage}@{missing[0]}; run `dvc repro` first "
            "(if the matrix changed, regenerate the pipeline first: `uv run python -m pipeline.dvcfile`)"
        )
    rows, histories = [], {}
    for name, cell in wanted.items():
        summary, history, steps = outputs[name].summary, outputs[name].history, outputs[name].steps
        if chosen is None:
            expected = cell_settings(params, cell)
        else:
            expected = tuned_settings(params, cell, chosen[cell.configuration])
        check_trained_as_the_study_says(expected, summary, found[name])
        policy = "fixed" if chosen is None else "tuned"
        if summary.get(LR_POLICY, "fixed") != policy:
            raise UserError(
                f"{found[name]} holds a {summary[LR_POLICY]} run, not a {policy} one; run `dvc repro` again"
            )
        measured = {k: v for k, v in summary.items() if k not in ("axes", "settings", LR_POLICY)}
        rows.append(
            {
                **cell.as_dict(),
                LR_POLICY: policy,
                **flatten("", {"train": summary["settings"]["train"]}),
                **measured,
                "seconds_per_epoch": seconds_per_epoch(summary),
                **target_metrics(history, params.targets_for(cell.dataset), steps, params.report.loss_window),
                **run_diagnostics(history),  # gradient-norm ratio, BN statistics gap (None where not recorded)
            }
        )
        histories[cell] = history
    return pd.DataFrame(rows), histories


def check_trained_as_the_study_says(settings: CellSettings, summary: dict, folder: Path) -> None:
    """Refuse a cell whose outputs came from other training settings (a stale folder, a hand-run stage)."""
    expected = flatten("train", settings.train.model_dump())
    recorded = flatten("train", summary["settings"]["train"])
    differ = sorted(k for k in expected.keys() | recorded.keys() if expected.get(k) != recorded.get(k))
    if differ:
        shown = ", ".join(f"{k} {recorded.get(k)!r} (study: {expected.get(k)!r})" for k in differ[:3])
        raise UserError(f"{folder} was trained with other settings than the study's: {shown}; run `dvc repro` again")
