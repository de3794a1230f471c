from __future__ import annotations

import math

import pandas as pd
import pytest

from pipeline.convergence import target_key, time_to_target, validation_auc


def _history(accuracies):
    n = len(accuracies)
    return pd.DataFrame(
        {"step": [10 * i for i in range(n)], "epoch": [i / 4 for i in range(n)],
         "seconds": [1.5 * i for i in range(n)], "val_accuracy": accuracies}
    )  # fmt: skip


def test_first_crossing_is_reported():
    assert time_to_target(_history([0.1, 0.4, 0.62, 0.55, 0.7]), 0.6) == {
        "reached": True, "steps": 20, "epochs": 0.5, "seconds": 3.0,
    }  # fmt: skip


def test_reaching_the_target_exactly_counts():
    # The target is a threshold to reach, not to exceed: equal is a hit.
    assert time_to_target(_history([0.1, 0.6, 0.7]), 0.6)["steps"] == 10
    assert time_to_target(_history([0.1, 0.599999, 0.7]), 0.6)["steps"] == 20


def test_a_miss_is_a_miss_not_the_budget():
    assert time_to_target(_history([0.1, 0.2, 0.3]), 0.9) == {
        "reached": False,
        "steps": None,
        "epochs": None,
        "seconds": None,
    }


def test_auc_of_a_constant_curve_is_that_constant():
    assert validation_auc(_history([0.5] * 5), budget_steps=40) == pytest.approx(0.5)


def test_auc_counts_divergence_and_untrained_budget_as_zero():
    # trained 20 of 40 steps at 0.5, then NaN
    assert validation_auc(_history([0.5, 0.5, math.nan]), budget_steps=40) == pytest.approx((5 + 2.5) / 40)


def test_target_key():
    assert target_key(0.55) == "acc55" and target_key(0.9) == "acc90"
