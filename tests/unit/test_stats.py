from __future__ import annotations

import math

import pandas as pd
import pytest

from pipeline.report.stats import band, mean_ci, summarize


def test_t_interval_matches_the_textbook():
    # mean 2, sample std 1, n 3: half-width t(0.975, 2) * 1 / sqrt(3) = 4.3027 / 1.7321
    result = mean_ci(pd.Series([1.0, 2.0, 3.0]), 0.95)
    assert result["n"] == 3 and result["mean"] == 2 and result["std"] == 1
    half = 4.302653 / math.sqrt(3)
    assert result["ci_low"] == pytest.approx(2 - half, rel=1e-5)
    assert result["ci_high"] == pytest.approx(2 + half, rel=1e-5)


def test_interval_level_follows_the_confidence():
    # t(0.95, 2) = 2.919986: a 90% interval is narrower than the 95% one
    result = mean_ci(pd.Series([1.0, 2.0, 3.0]), 0.90)
    assert (result["ci_low"], result["ci_high"]) == pytest.approx(
        (2 - 2.919986 / math.sqrt(3), 2 + 2.919986 / math.sqrt(3))
    )


def test_single_seed_has_no_interval_and_nans_are_not_counted():
    result = mean_ci(pd.Series([0.5, math.nan]), 0.95)
    assert result == {"n": 1, "mean": 0.5, "std": None, "ci_low": None, "ci_high": None}


def test_summary_groups_seeds_and_counts_outcomes():
    results = pd.DataFrame(
        {"dataset": "d", "activation": "relu", "bn": ["off", "off", "pre", "pre"], "dropout": 0.0,
         "outcome": ["completed", "diverged", "completed", "completed"],
         "test_accuracy": [0.5, 0.1, 0.8, 0.9], "reached_acc50": [True, False, True, True]}
    )  # fmt: skip
    summary = summarize(
        results, ["dataset", "activation", "bn", "dropout"], ["test_accuracy", "reached_acc50"], 0.95
    ).set_index("bn")
    assert summary.loc["off", "seeds"] == 2 and summary.loc["off", "diverged"] == 1
    assert summary.loc["pre", "test_accuracy.mean"] == pytest.approx(0.85)
    assert summary.loc["off", "reached_acc50"] == 1


def test_band_spans_the_seeds():
    a = pd.DataFrame({"step": [0, 1], "epoch": [0, 0.5], "val_accuracy": [0.1, 0.5]})
    b = pd.DataFrame({"step": [0, 1], "epoch": [0, 0.5], "val_accuracy": [0.3, 0.7]})
    curve = band([a, b], "val_accuracy")
    assert curve["mean"].tolist() == pytest.approx([0.2, 0.6])
    assert curve["low"].tolist() == [0.1, 0.5] and curve["high"].tolist() == [0.3, 0.7]


def test_interval_is_clipped_to_what_the_metric_can_take():
    from pipeline.report.stats import fmt_ci

    assert fmt_ci(0.95, 0.8, 1.1, bounds=(0, 1)) == "0.950 [0.800, 1.000]"
    assert fmt_ci(0.95, None, None) == "0.950"
    assert fmt_ci(float("nan"), None, None) == "–"
