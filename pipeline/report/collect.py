"""Gather the results of exactly the cells of the current study.

Reads each cell folder (pipeline/cell/outputs.py); returns one row per run (its
axes, its effective settings, its summary and its time to each target) and each
run's history and per-step losses, keyed by cell.

Times to an accuracy target come twice: on the validation accuracy with BN's moving
statistics (`steps_to_acc50`, what the trained model scores) and, for a BN run that
recorded it, on the accuracy with the statistics recomputed on training images
(`steps_to_acc50_recomputed_bn`, from `val_accuracy_recomputed_bn`): early in training the
moving averages lag the weights, so the first partly measures the BN momentum. A run
without BN has nothing to recompute; a BN run that did not record the probe keeps its
moving-statistics times there, and `speed_accuracy` says which each run's are.
"""

from __future__ import annotations

from pathlib import Path
from typing import NamedTuple

import numpy as np
import pandas as pd

from pipeline.cell.convergence import smoothed_loss, target_metrics
from pipeline.cell.outputs import find_cell_outputs, read_cell_outputs
from pipeline.errors import UserError
from pipeline.report.diagnostics import RECOMPUTED, run_diagnostics
from pipeline.report.survival import RECOMPUTED_SUFFIX
from pipeline.study.axes import flatten
from pipeline.study.cells import Cell, cell_settings, expand_matrix, tuned_settings
from pipeline.study.schema import CellSettings, Params
from pipeline.study.targets import VAL_ACCURACY, Target

SEED = "seed"
LR_POLICY = "lr_policy"  # results.csv: "fixed" (the study's learning rate) or "tuned" (chosen by the sweep)
SPEED_ACCURACY = "speed_accuracy"  # results.csv: which accuracy a run's *_recomputed_bn times are on
ON_RECOMPUTED, ON_MOVING, NO_BN = (
    "recomputed BN statistics",
    "moving BN statistics (no recomputed ones recorded)",
    "no BN",
)
DATA_SIZES = ("train_examples", "val_examples", "test_examples")  # metrics.json: images in each split


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


def recomputed_target_metrics(history: pd.DataFrame, targets: list[Target], bn: str) -> dict[str, object]:
    """Times to each accuracy target on the recomputed-statistics accuracy (keys with RECOMPUTED_SUFFIX).

    A run without BN, or a BN run without the probe's column, keeps the moving-statistics accuracy
    (`speed_accuracy` says which). Only evaluations that took the probe bracket a crossing.
    """
    accuracy_targets = [t for t in targets if t.quantity == VAL_ACCURACY]
    recorded = bn != "off" and RECOMPUTED in history and history[RECOMPUTED].notna().any()
    source = history.assign(val_accuracy=history[RECOMPUTED]) if recorded else history
    times = target_metrics(source, accuracy_targets)
    renamed = {f"{name}{RECOMPUTED_SUFFIX}": value for name, value in times.items()}
    return {**renamed, SPEED_ACCURACY: ON_RECOMPUTED if recorded else (NO_BN if bn == "off" else ON_MOVING)}


def final_train_loss(steps: pd.DataFrame, window: int) -> float | None:
    """The trailing mean of the last `window` per-step losses at the last step; None if not finite (diverged)."""
    smooth = smoothed_loss(steps, window).to_numpy()
    return float(smooth[-1]) if len(smooth) and np.isfinite(smooth[-1]) else None


class Runs(NamedTuple):
    results: pd.DataFrame  # one row per cell
    histories: dict[Cell, pd.DataFrame]  # one row per evaluation
    steps: dict[Cell, pd.DataFrame]  # one row per optimizer step: step, train_loss


def collect_results(
    params: Params, cells_dir: Path, chosen: dict[str, float] | None = None
) -> tuple[pd.DataFrame, dict[Cell, pd.DataFrame]]:
    """The per-run table and the histories of `collect_runs`."""
    runs = collect_runs(params, cells_dir, chosen)
    return runs.results, runs.histories


def collect_runs(params: Params, cells_dir: Path, chosen: dict[str, float] | None = None) -> Runs:
    """One row per cell (axes, settings, summary, time to each target), each cell's history and per-step losses.

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
    rows, histories, losses = [], {}, {}
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
        targets = params.targets_for(cell.dataset)
        rows.append(
            {
                **cell.as_dict(),
                LR_POLICY: policy,
                **flatten("", {"train": summary["settings"]["train"]}),
                # the data the run trained on: its sizes as it recorded them (absent: not recorded), and the
                # study's input scaling, which its prepare stage applied (runs of older outputs record neither)
                "input_scaling": params.prepare.scaling,
                **{size: None for size in DATA_SIZES},
                **measured,
                "seconds_per_epoch": seconds_per_epoch(summary),
                "final_train_loss": final_train_loss(steps, params.report.loss_window),
                **target_metrics(history, targets, steps, params.report.loss_window),
                **recomputed_target_metrics(history, targets, str(cell["bn"])),
                **run_diagnostics(history),  # gradient-norm ratio, BN statistics gap (None where not recorded)
            }
        )
        histories[cell], losses[cell] = history, steps
    return Runs(pd.DataFrame(rows), histories, losses)


def check_trained_as_the_study_says(settings: CellSettings, summary: dict, folder: Path) -> None:
    """Refuse a cell whose outputs came from other training settings (a stale folder, a hand-run stage)."""
    expected = flatten("train", settings.train.model_dump())
    recorded = flatten("train", summary["settings"]["train"])
    differ = sorted(k for k in expected.keys() | recorded.keys() if expected.get(k) != recorded.get(k))
    if differ:
        shown = ", ".join(f"{k} {recorded.get(k)!r} (study: {expected.get(k)!r})" for k in differ[:3])
        raise UserError(f"{folder} was trained with other settings than the study's: {shown}; run `dvc repro` again")
