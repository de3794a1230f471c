"""Convergence measures computed from a cell's validation history.

A history is a table with one row per evaluation: `step` (optimizer steps so far),
`epoch` (fractional), `seconds` (training time so far, evaluation excluded) and
`val_accuracy`. The first row is the untrained model at step 0.
"""

from __future__ import annotations

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
