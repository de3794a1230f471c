"""Every measure derived from a cell's validation history, computed here and only here.

A history is a table with one row per evaluation: `step` (optimizer steps so far),
`epoch` (fractional), `seconds` (training time so far, evaluation excluded),
`val_accuracy` and `val_loss`. The first row is the untrained model at step 0; after
a divergence the last row has no accuracy.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd


def target_key(target: float) -> str:
    """Metric-name form of an accuracy target: 0.55 -> "acc55"."""
    return f"acc{round(target * 100)}"


def time_to_target(history: pd.DataFrame, target: float) -> dict[str, object]:
    """Steps, epochs and seconds until validation accuracy first reaches `target`.

    A miss is recorded as a miss (`reached` False, the rest None), never as the budget.
    """
    hits = history.index[history["val_accuracy"] >= target]
    if len(hits) == 0:
        return {"reached": False, "steps": None, "epochs": None, "seconds": None}
    row = history.loc[hits[0]]
    return {
        "reached": True,
        "steps": int(row["step"]),
        "epochs": float(row["epoch"]),
        "seconds": float(row["seconds"]),
    }


def target_metrics(history: pd.DataFrame, targets: list[float]) -> dict[str, object]:
    """reached_/steps_to_/epochs_to_/seconds_to_<acc key> for each target."""
    metrics: dict[str, object] = {}
    for target in targets:
        reached = time_to_target(history, target)
        key = target_key(target)
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
