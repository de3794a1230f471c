"""Paired effects: the t check, the bootstrap over seeds and the verdict rule."""

from __future__ import annotations

import math

import numpy as np
import pytest

from pipeline.report.effects import (
    MIN_PAIRED_SEEDS,
    Interval,
    bootstrap_interval,
    decide,
    paired_effect,
    t_interval,
)

DIFFERENCES = np.array([0.10, 0.14, 0.06, 0.12, 0.08])


def mean_over(values):
    return lambda indices: values[indices].mean(axis=-1)


def test_t_check_is_the_textbook_paired_interval():
    # mean 0.1, sd 0.0316, t(0.975, 4) = 2.7764
    interval = t_interval(DIFFERENCES, 0.95, log_scale=False)
    half = 2.776445 * DIFFERENCES.std(ddof=1) / math.sqrt(5)
    assert (interval.low, interval.high) == pytest.approx((0.1 - half, 0.1 + half), rel=1e-5)
    ratios = np.exp(DIFFERENCES)
    on_logs = t_interval(np.log(ratios), 0.95, log_scale=True)
    assert (on_logs.low, on_logs.high) == pytest.approx((math.exp(0.1 - half), math.exp(0.1 + half)), rel=1e-5)


def test_bootstrap_of_three_seeds_spans_their_range():
    # With 3 seeds, each all-one-seed resample has probability 1/27 > 2.5%: the 95% percentile interval
    # of a mean runs exactly from the smallest seed's value to the largest's.
    values = np.array([0.2, 0.5, 0.3])
    interval = bootstrap_interval(mean_over(values), 3, 0.95, method="percentile")
    assert (interval.low, interval.high) == pytest.approx((0.2, 0.5))


def test_bootstrap_is_seeded_and_resamples_whole_seeds():
    # Twelve distinct values: so many distinct resamples that two unseeded runs would not agree by chance.
    values = np.random.default_rng(7).lognormal(size=12)
    first = bootstrap_interval(mean_over(values), 12, 0.95)
    assert first == bootstrap_interval(mean_over(values), 12, 0.95)
    assert first.method == "BCa bootstrap" and values.min() < first.low < values.mean() < first.high < values.max()


def test_bootstrap_falls_back_to_percentile_when_bca_is_undefined():
    interval = bootstrap_interval(mean_over(np.full(4, 2.0)), 4, 0.95)
    assert (interval.low, interval.high) == (2.0, 2.0) and interval.method.startswith("percentile")


@pytest.mark.parametrize(
    ("boot", "check", "predicts", "verdict"),
    [
        ((1.2, 1.5), (1.1, 1.7), 1, "supported"),
        ((1.2, 1.5), (1.1, 1.7), -1, "refuted"),
        ((0.6, 0.9), (0.5, 0.95), 1, "refuted"),
        ((0.6, 0.9), (0.5, 0.95), -1, "supported"),
        ((0.9, 1.5), (0.8, 1.7), 1, "inconclusive"),
        ((1.2, 1.5), (0.9, 1.7), 1, "inconclusive"),  # the t check includes no effect
        ((1.0, 1.5), (1.1, 1.7), 1, "inconclusive"),  # touching no effect is not excluding it
    ],
)
def test_verdict_rule(boot, check, predicts, verdict):
    got, _ = decide(Interval(*boot, "b"), Interval(*check, "t"), 5, 1.0, predicts)
    assert got == verdict


def test_no_verdict_below_the_minimum_number_of_seeds():
    got, reason = decide(Interval(2.0, 3.0, "b"), Interval(1.5, 4.0, "t"), MIN_PAIRED_SEEDS - 1, 1.0, 1)
    assert got == "inconclusive" and reason.startswith(f"n < {MIN_PAIRED_SEEDS} paired seeds")


def test_paired_effect_puts_it_together():
    effect = paired_effect(mean_over(DIFFERENCES), DIFFERENCES, ratio=False, predicts=1, confidence=0.95)
    assert effect.estimate == pytest.approx(0.1) and effect.seeds == 5 and effect.null == 0
    assert effect.check == t_interval(DIFFERENCES, 0.95, log_scale=False)
    assert effect.verdict == "supported"
    flipped = paired_effect(mean_over(DIFFERENCES), DIFFERENCES, ratio=False, predicts=-1, confidence=0.95)
    assert flipped.verdict == "refuted"
