"""Every measure derived from a cell's history and per-step losses, computed here and only here.

A history is a table with one row per evaluation: `step` (optimizer steps so far),
`epoch` (fractional), `seconds` (training time so far, evaluation and the compile
step excluded), `val_accuracy` and `val_loss`. The first row is the untrained model
at step 0; after a divergence the last row has no accuracy. The per-step losses
(steps.csv) have one row per optimizer step: `step` (1-based) and `train_loss`, the
loss of that step's mini-batch.

Time to a target, two kinds (`Target`):
- validation accuracy (key `acc50` for 0.5): the first evaluation at or above the
  target, linearly interpolated with the evaluation before it. With accuracies a0 <
  target <= a1 at steps s0, s1, the crossing is at s0 + (target - a0) / (a1 - a0) *
  (s1 - s0); epochs and seconds are interpolated with the same fraction. Reached
  already at step 0: step 0.
- training loss (key `loss1p3` for 1.3, the dot written "p"): the first step at which
  the trailing mean of the last W per-step losses (W = report.loss_window; defined
  from step W on) is at or below the target. Epochs and seconds at that step are
  interpolated linearly between the evaluations around it (timing is measured per
  segment, not per step).
A miss is a miss: `reached` False and the times None, never the budget.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from pipeline.study.targets import VAL_ACCURACY, Target

MISS = {"reached": False, "steps": None, "epochs": None, "seconds": None}


def time_to_target(history: pd.DataFrame, target: float) -> dict[str, object]:
    """Steps, epochs and seconds until validation accuracy first reaches `target`, interpolated.

    Linear between the two evaluations that bracket the first crossing; a miss is
    recorded as a miss (`reached` False, the rest None), never as the budget.
    """
    history = history[np.isfinite(history["val_accuracy"].to_numpy(dtype=float))]  # brackets are measured evaluations
    accuracy = history["val_accuracy"].to_numpy(dtype=float)
    hits = np.flatnonzero(accuracy >= target)
    if len(hits) == 0:
        return dict(MISS)
    i = int(hits[0])
    fraction = 1.0 if i == 0 else (target - accuracy[i - 1]) / (accuracy[i] - accuracy[i - 1])

    def at(column: str) -> float:
        values = history[column].to_numpy(dtype=float)
        return float(values[i]) if i == 0 else float(values[i - 1] + fraction * (values[i] - values[i - 1]))

    return {"reached": True, "steps": at("step"), "epochs": at("epoch"), "seconds": at("seconds")}


def smoothed_loss(steps: pd.DataFrame, window: int) -> pd.Series:
    """Trailing mean of the last `window` per-step losses, NaN for the first window - 1 steps."""
    return steps["train_loss"].astype(float).rolling(window, min_periods=window).mean()


def time_to_loss(history: pd.DataFrame, steps: pd.DataFrame, target: float, window: int) -> dict[str, object]:
    """Steps, epochs and seconds until the smoothed training loss first falls to `target` or below."""
    smooth = smoothed_loss(steps, window).to_numpy()
    hits = np.flatnonzero(np.isfinite(smooth) & (smooth <= target))
    if len(hits) == 0:
        return dict(MISS)
    step = float(steps["step"].iloc[int(hits[0])])
    at_steps = history["step"].to_numpy(dtype=float)
    return {
        "reached": True,
        "steps": step,
        "epochs": float(np.interp(step, at_steps, history["epoch"].to_numpy(dtype=float))),
        "seconds": float(np.interp(step, at_steps, history["seconds"].to_numpy(dtype=float))),
    }


def target_metrics(
    history: pd.DataFrame, targets: list[Target], steps: pd.DataFrame | None = None, loss_window: int = 20
) -> dict[str, object]:
    """reached_/steps_to_/epochs_to_/seconds_to_<key> for each target (`steps` needed for loss targets)."""
    metrics: dict[str, object] = {}
    for target in targets:
        if target.quantity == VAL_ACCURACY:
            reached = time_to_target(history, target.value)
        else:
            reached = time_to_loss(history, steps, target.value, loss_window)
        key = target.key
        metrics[f"reached_{key}"] = reached["reached"]
        metrics[f"steps_to_{key}"] = reached["steps"]
        metrics[f"epochs_to_{key}"] = reached["epochs"]
        metrics[f"seconds_to_{key}"] = reached["seconds"]
    return metrics


def validation_auc(history: pd.DataFrame, budget_steps: int) -> float:
    """Area under validation accuracy over the step budget, scaled to [0, 1].

    Higher means accurate sooner. Evaluations that are NaN (after a divergence),
    and the part of the budget never trained, count as accuracy 0.
    """
    steps = history["step"].to_numpy(dtype=float)
    accuracy = np.nan_to_num(history["val_accuracy"].to_numpy(dtype=float), nan=0.0)
    if budget_steps <= 0 or len(steps) < 2:
        return 0.0
    area = float(np.trapezoid(accuracy, steps))
    return area / budget_steps


def _finite_or_none(value: object) -> float | None:
    return float(value) if value is not None and math.isfinite(float(value)) else None


def history_metrics(history: pd.DataFrame, budget_steps: int) -> dict[str, object]:
    """Best (before any divergence: those evaluations were of a sound model), final and AUC."""
    accuracy = history["val_accuracy"]
    best = accuracy.idxmax() if accuracy.notna().any() else None
    return {
        "best_val_accuracy": float(history.loc[best, "val_accuracy"]) if best is not None else None,
        "best_val_step": int(history.loc[best, "step"]) if best is not None else None,
        # The last validation pass: null for a diverged cell.
        "final_val_accuracy": _finite_or_none(accuracy.iloc[-1]),
        "final_val_loss": _finite_or_none(history["val_loss"].iloc[-1]),
        "val_auc": validation_auc(history, budget_steps),
    }
