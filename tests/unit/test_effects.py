"""Paired effects: the t check, the bootstrap over seeds and the verdict rule (four outcomes, with margins)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from pipeline.report.effects import bootstrap_interval, level_effect, paired_effect, t_interval
from pipeline.report.verdicts import (
    INSIDE,
    LARGER,
    MIN_PAIRED_SEEDS,
    NO_DIFFERENCE,
    NON_INFERIORITY,
    OVERLAPS,
    REFUTED,
    SMALLER,
    SUPPORTED,
    Rule,
    compare_stated,
    decide,
    decide_range,
    one_sided_p,
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


SPEED = Rule(predicts=1, margin=1.1, ratio=True)
# Per-seed log ratios for the p-values: their mean and spread only matter for the tests' p-values.
LOGS = np.log([1.3, 1.25, 1.35, 1.3, 1.28])


@pytest.mark.parametrize(
    ("boot", "check", "estimate", "predicts", "verdict"),
    [
        ((1.2, 1.5), (1.15, 1.6), 1.3, 1, SUPPORTED),
        ((1.2, 1.5), (1.15, 1.6), 1.3, -1, REFUTED),  # a speed-up, when the claim predicts a slow-down
        ((0.6, 0.8), (0.55, 0.85), 0.7, 1, REFUTED),
        ((0.6, 0.8), (0.55, 0.85), 0.7, -1, SUPPORTED),
        ((0.95, 1.05), (0.93, 1.07), 1.0, 1, NO_DIFFERENCE),  # inside 1/1.1 .. 1.1: no meaningful difference
        ((0.9, 1.5), (0.8, 1.7), 1.2, 1, "inconclusive"),
        ((1.2, 1.5), (0.9, 1.7), 1.3, 1, "inconclusive"),  # the t check includes no effect
        ((1.0, 1.5), (1.1, 1.7), 1.3, 1, "inconclusive"),  # touching no effect is not excluding it
        ((1.02, 1.2), (1.01, 1.25), 1.08, 1, "inconclusive"),  # an effect, but its estimate is below the margin
        ((1.02, 1.08), (1.01, 1.09), 1.05, 1, NO_DIFFERENCE),  # an effect, too small to matter either way
        ((0.5, 1.05), (0.4, 1.08), 0.8, 1, REFUTED),  # no effect as large as 1.1x is left, on the predicted side
    ],
)
def test_verdict_rule(boot, check, estimate, predicts, verdict):
    rule = Rule(predicts=predicts, margin=1.1, ratio=True)
    assert decide(estimate, [boot, check], np.log([estimate] * 5) + LOGS - LOGS.mean(), rule).verdict == verdict


def test_a_claim_is_refuted_only_when_both_intervals_lie_on_the_other_side():
    # The bootstrap lies wholly below no effect; the t check reaches past the margin: not refuted.
    against = np.log([0.7, 0.72, 0.69, 0.71, 0.7])
    assert decide(0.7, [(0.6, 0.8), (0.5, 1.2)], against, SPEED).verdict == "inconclusive"
    assert decide(0.7, [(0.5, 1.2), (0.6, 0.8)], against, SPEED).verdict == "inconclusive"
    assert decide(0.7, [(0.6, 0.8), (0.55, 0.85)], against, SPEED).verdict == REFUTED


def test_differences_are_judged_against_their_margin_in_their_own_units():
    rule = Rule(predicts=1, margin=0.01, ratio=False)
    small = np.array([0.004, 0.005, 0.006, 0.005, 0.005])
    assert decide(0.005, [(0.004, 0.006), (0.0035, 0.0065)], small, rule).verdict == NO_DIFFERENCE
    large = np.array([0.10, 0.12, 0.11, 0.09, 0.13])
    assert decide(0.11, [(0.095, 0.125), (0.09, 0.13)], large, rule).verdict == SUPPORTED


def test_non_inferiority_is_judged_against_the_margin_on_the_worse_side():
    rule = Rule(predicts=1, margin=1.1, ratio=True, test=NON_INFERIORITY)
    logs = np.log([0.97, 0.98, 0.96, 0.99, 0.97])
    # a little slower, but not by 1.1x: balanced, as a non-inferiority claim says (superiority would not be)
    assert decide(0.97, [(0.95, 0.99), (0.94, 0.995)], logs, rule).verdict == SUPPORTED
    assert decide(0.97, [(0.95, 0.99), (0.94, 0.995)], logs, SPEED).verdict == NO_DIFFERENCE
    slower = np.log([0.6, 0.62, 0.58, 0.61, 0.6])
    assert decide(0.6, [(0.55, 0.65), (0.5, 0.7)], slower, rule).verdict == REFUTED
    assert decide(0.95, [(0.85, 1.05), (0.8, 1.1)], logs, rule).verdict == "inconclusive"


def test_no_verdict_below_the_minimum_number_of_seeds():
    got = decide(2.5, [(2.0, 3.0), (1.5, 4.0)], np.log([2.4, 2.6]), SPEED)
    assert got.verdict == "inconclusive" and got.reason.startswith(f"n < {MIN_PAIRED_SEEDS} paired seeds")


def test_each_verdict_carries_the_p_value_of_the_test_it_rests_on():
    values = np.array([0.10, 0.14, 0.06, 0.12, 0.08])
    rule = Rule(predicts=1, margin=0.01, ratio=False)
    t = t_interval(values, 0.95, log_scale=False)
    supported = decide(0.1, [(t.low, t.high)] * 2, values, rule)
    # computed by hand: one-sided t of H0 mean <= 0
    statistic = values.mean() / (values.std(ddof=1) / math.sqrt(5))
    assert supported.verdict == SUPPORTED and supported.p_value == pytest.approx(stats.t.sf(statistic, 4))
    # refuted against a claim of a drop: on the claim's side (-values) H0 is "a drop of at least 0.01", mean >= 0.01
    refuted = decide(0.1, [(t.low, t.high)] * 2, values, Rule(predicts=-1, margin=0.01, ratio=False))
    statistic = (0.01 - (-values.mean())) / (values.std(ddof=1) / math.sqrt(5))
    assert refuted.verdict == REFUTED and refuted.p_value == pytest.approx(stats.t.sf(statistic, 4))
    # no spread at all: the test is exact
    assert one_sided_p(np.full(4, 0.2), 0.0, "greater") == 0.0 and one_sided_p(np.full(4, 0.2), 0.3, "greater") == 1.0


def test_a_stated_range_is_judged_on_both_intervals():
    values = np.array([0.67, 0.675, 0.68, 0.672, 0.678])
    assert decide_range([(0.668, 0.679), (0.667, 0.68)], values, 0.65, 0.70).verdict == SUPPORTED
    assert decide_range([(0.50, 0.52), (0.49, 0.53)], values, 0.65, 0.70).verdict == REFUTED
    assert decide_range([(0.72, 0.75), (0.71, 0.76)], values, 0.65, 0.70).verdict == REFUTED
    assert decide_range([(0.60, 0.74), (0.59, 0.75)], values, 0.65, 0.70).verdict == "inconclusive"
    effect = level_effect(values, 0.65, 0.70, 0.95)
    assert effect.verdict == SUPPORTED and 0 < effect.p_value < 0.025


@pytest.mark.parametrize(
    ("bounds", "stated", "where"),
    [
        ([(1.1, 1.5), (1.05, 1.6)], (5.0, 5.0), SMALLER),  # "5x" against 1.3x [1.1, 1.5]
        ([(4.0, 6.0), (3.5, 6.5)], (5.0, 5.0), INSIDE),
        ([(6.0, 8.0), (5.5, 8.5)], (5.0, 5.0), LARGER),
        ([(4.0, 6.0), (5.2, 6.5)], (5.0, 5.0), OVERLAPS),  # one interval holds it, the other does not
        ([(0.66, 0.68), (0.655, 0.685)], (0.65, 0.70), INSIDE),
        ([(0.50, 0.55), (0.49, 0.56)], (0.65, 0.70), SMALLER),
        ([(0.60, 0.67), (0.59, 0.68)], (0.65, 0.70), OVERLAPS),
    ],
)
def test_a_stated_number_is_placed_against_the_intervals(bounds, stated, where):
    assert compare_stated(bounds, stated) == where


def test_paired_effect_puts_it_together():
    rule = Rule(predicts=1, margin=0.01, ratio=False)
    effect = paired_effect(mean_over(DIFFERENCES), DIFFERENCES, rule=rule, confidence=0.95)
    assert effect.estimate == pytest.approx(0.1) and effect.seeds == 5 and effect.null == 0
    assert effect.check == t_interval(DIFFERENCES, 0.95, log_scale=False)
    assert effect.verdict == SUPPORTED and effect.margin == 0.01 and effect.detectable > 0
    flipped = paired_effect(mean_over(DIFFERENCES), DIFFERENCES, rule=Rule(-1, 0.01, False), confidence=0.95)
    assert flipped.verdict == REFUTED


def test_a_verdict_needs_the_t_check_to_agree_with_the_bootstrap():
    # Three seeds, one far out: the bootstrap's resamples of the mean stay above 0, the t interval (t = 4.30
    # with 2 degrees of freedom) does not. Supported on the bootstrap alone, inconclusive by the rule.
    values = np.array([0.05, 0.06, 0.30])
    effect = paired_effect(mean_over(values), values, rule=Rule(1, 0.01, False), confidence=0.95)
    assert effect.interval.low > 0 and effect.check.low < 0
    assert effect.verdict == "inconclusive" and effect.reason == "the bootstrap interval and the t check disagree"
