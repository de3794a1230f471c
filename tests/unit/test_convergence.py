from __future__ import annotations

import math

import pandas as pd
import pytest

from pipeline.cell.convergence import target_metrics, time_to_loss, time_to_target, validation_auc
from pipeline.study.targets import TRAIN_LOSS, VAL_ACCURACY, Target, target_key


def _history(accuracies):
    n = len(accuracies)
    return pd.DataFrame(
        {"step": [10 * i for i in range(n)], "epoch": [i / 4 for i in range(n)],
         "seconds": [1.5 * i for i in range(n)], "val_accuracy": accuracies}
    )  # fmt: skip


def test_first_crossing_is_interpolated_between_the_evaluations_around_it():
    # 0.4 at step 10, 0.62 at step 20: 0.6 is crossed 0.2 / 0.22 = 10/11 of the way; epochs and seconds alike.
    assert time_to_target(_history([0.1, 0.4, 0.62, 0.55, 0.7]), 0.6) == {
        "reached": True, "steps": pytest.approx(10 + 100 / 11), "epochs": pytest.approx(0.25 + 0.25 * 10 / 11),
        "seconds": pytest.approx(1.5 + 1.5 * 10 / 11),
    }  # fmt: skip
    # halfway: 0.2 at step 10, 0.4 at step 20, target 0.3 -> step 15, epoch 0.375, 2.25 s
    assert time_to_target(_history([0.1, 0.2, 0.4]), 0.3) == {
        "reached": True, "steps": pytest.approx(15.0), "epochs": pytest.approx(0.375), "seconds": pytest.approx(2.25),
    }  # fmt: skip


def test_reaching_the_target_exactly_counts():
    # The target is a threshold to reach, not to exceed: equal is a hit, even when the curve falls back after.
    assert time_to_target(_history([0.1, 0.6, 0.5, 0.7]), 0.6)["steps"] == pytest.approx(10)
    assert 10 < time_to_target(_history([0.1, 0.599999, 0.7]), 0.6)["steps"] < 10.01


def test_a_target_met_by_the_untrained_model_is_at_step_zero():
    assert time_to_target(_history([0.65, 0.7]), 0.6) == {"reached": True, "steps": 0.0, "epochs": 0.0, "seconds": 0.0}


def _steps(losses):
    return pd.DataFrame({"step": range(1, len(losses) + 1), "train_loss": losses})


def test_loss_target_is_the_first_step_of_the_trailing_mean_at_or_below_it():
    history = pd.DataFrame({"step": [0, 2, 4, 6], "epoch": [0, 0.5, 1.0, 1.5], "seconds": [0.0, 1.0, 2.0, 4.0]})
    losses = _steps([3.0, 2.0, 1.0, 1.0, 1.0, 0.5])
    # trailing means over 3 steps: -, -, 2, 4/3, 1, 5/6: 1.0 is first reached at step 5 (between evaluations 4 and 6)
    assert time_to_loss(history, losses, 1.0, window=3) == {
        "reached": True,
        "steps": 5.0,
        "epochs": 1.25,
        "seconds": 3.0,
    }
    # over 4 steps: -, -, -, 1.75, 1.25, 0.875: the longer window reaches 1.0 one step later, 0.8 never
    assert time_to_loss(history, losses, 1.0, window=4) == {
        "reached": True,
        "steps": 6.0,
        "epochs": 1.5,
        "seconds": 4.0,
    }
    assert time_to_loss(history, losses, 1.25, window=4)["steps"] == 5.0
    assert time_to_loss(history, losses, 0.8, window=4)["reached"] is False
    # before the window is full there is no smoothed loss: a target met by the first steps alone is not reached
    assert time_to_loss(history, _steps([0.1, 0.1]), 1.0, window=3)["reached"] is False


def test_a_loss_target_missed_or_after_a_divergence_is_a_miss():
    history = pd.DataFrame({"step": [0, 4], "epoch": [0, 1.0], "seconds": [0.0, 2.0]})
    miss = {"reached": False, "steps": None, "epochs": None, "seconds": None}
    assert time_to_loss(history, _steps([2.0, 2.0, 2.0, math.nan]), 1.0, window=1) == miss
    assert time_to_loss(history, _steps([2.0, math.inf, 0.1, 0.1]), 1.0, window=3) == miss


def test_target_metrics_have_one_set_of_columns_per_target():
    history = pd.DataFrame({"step": [0, 2], "epoch": [0, 1.0], "seconds": [0.0, 1.0], "val_accuracy": [0.1, 0.7]})
    metrics = target_metrics(history, [Target(VAL_ACCURACY, 0.4), Target(TRAIN_LOSS, 1.3)], _steps([2.0, 1.0]), 1)
    assert metrics == {
        "reached_acc40": True, "steps_to_acc40": pytest.approx(1.0), "epochs_to_acc40": pytest.approx(0.5),
        "seconds_to_acc40": pytest.approx(0.5),
        "reached_loss1p3": True, "steps_to_loss1p3": 2.0, "epochs_to_loss1p3": 1.0, "seconds_to_loss1p3": 1.0,
    }  # fmt: skip


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
    assert Target(VAL_ACCURACY, 0.55).key == "acc55" and Target(TRAIN_LOSS, 1.3).key == "loss1p3"
    assert Target(TRAIN_LOSS, 0.45).key == "loss0p45" and Target(TRAIN_LOSS, 2.0).key == "loss2"


def test_an_accuracy_target_key_names_its_exact_percentage():
    # 0.57 * 100 is 56.99999999999999 in floats: the key says 57, as the value does
    assert target_key(0.57) == "acc57" and Target(VAL_ACCURACY, 0.57).key == "acc57"
    for percent in range(1, 100):
        assert target_key(percent / 100) == f"acc{percent}", percent
        assert Target(VAL_ACCURACY, percent / 100).key == f"acc{percent}", percent
