"""Each run's value of the metric a claim compares, with divergence as an outcome, never a gap.

A run that diverged stops with no accuracy after it (pipeline/cell/training.py invents none). A claim
must still count it, or the runs most hurt by a setting would leave its comparison:
- on an accuracy, it counts at chance, 1 / classes: what a network that predicts nothing scores;
- on a loss, at chance's loss, ln(classes): what the untrained softmax of a balanced dataset scores;
- on a spread across an axis, its accuracy at chance enters the max - min (the worst outcome);
- on whether a run learned at all, by what it reached before it diverged (a reach rate);
- on any other metric, its recorded value (seconds per epoch, the gradient share before it diverged),
  or, where it has none, it is left out and counted.
A time to target counts it as a miss censored at the budget (survival.py).
"""

from __future__ import annotations

import math

import pandas as pd

from pipeline.data.datasets import DATASETS

ACCURACY_METRICS = frozenset(
    {"test_accuracy", "final_val_accuracy", "best_val_accuracy", "final_val_accuracy_recomputed_bn"}
)
LOSS_METRICS = frozenset({"final_train_loss", "final_val_loss", "test_loss"})
DIVERGED = "diverged"


def classes(dataset: str) -> int:
    return len(DATASETS[dataset].class_names)


def chance_accuracy(dataset: str) -> float:
    return 1.0 / classes(dataset)


def chance_loss(dataset: str) -> float:
    return math.log(classes(dataset))


def diverged(rows: pd.DataFrame) -> pd.Series:
    return rows["outcome"] == DIVERGED if "outcome" in rows else pd.Series(False, index=rows.index)


def run_values(rows: pd.DataFrame, metric: str) -> pd.Series:
    """The runs' `metric` as floats; a diverged run without a value at chance (accuracy or loss metrics)."""
    values = pd.to_numeric(rows[metric], errors="coerce").astype(float)
    if metric in ACCURACY_METRICS:
        chance = rows["dataset"].map(chance_accuracy)
    elif metric in LOSS_METRICS:
        chance = rows["dataset"].map(chance_loss)
    else:
        return values
    return values.where(~(diverged(rows) & values.isna()), chance.astype(float))


def learned(rows: pd.DataFrame, above_chance: float) -> pd.Series:
    """1.0 where a run's validation accuracy ever reached chance + `above_chance`, else 0.0 (never measured: 0)."""
    best = pd.to_numeric(rows["best_val_accuracy"], errors="coerce")
    threshold = rows["dataset"].map(chance_accuracy) + above_chance
    # a hair of tolerance: 0.1 + 0.1 is not exactly 0.2 in binary, an accuracy of 0.2 is
    return (best >= threshold - 1e-9).astype(float)
