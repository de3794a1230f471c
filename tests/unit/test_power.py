"""The smallest effect a claim's seeds detect, checked against a simulation of the test it is about."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from pipeline.report.power import POWER, detectable_effect

# Per-seed effects with standard deviation exactly 1: the detectable effect is then in standard deviations.
UNIT_SPREAD = {n: (lambda x: (x - x.mean()) / x.std(ddof=1))(np.arange(n, dtype=float)) for n in (3, 5, 10)}


@pytest.mark.parametrize("n", [3, 5, 10])
def test_at_the_detectable_effect_the_t_check_rejects_with_the_stated_power(n):
    effect = detectable_effect(UNIT_SPREAD[n], 0.95)
    # Independently: simulate the one-sided t test at one end of a 95% interval on n normal effects of that mean.
    rng = np.random.default_rng(20231125)
    draws = rng.normal(loc=effect, scale=1.0, size=(200_000, n))
    t = draws.mean(axis=1) / (draws.std(axis=1, ddof=1) / math.sqrt(n))
    rejected = float(np.mean(t > stats.t.ppf(0.975, n - 1)))
    assert rejected == pytest.approx(POWER, abs=0.005)  # 200,000 draws: a standard error of 0.0009


def test_more_seeds_detect_smaller_effects_and_a_wider_spread_needs_larger_ones():
    five, ten = detectable_effect(UNIT_SPREAD[5], 0.95), detectable_effect(UNIT_SPREAD[10], 0.95)
    assert ten < five
    assert detectable_effect(3 * UNIT_SPREAD[5], 0.95) == pytest.approx(3 * five)
    # the large-sample limit: (z_0.975 + z_0.8) standard errors
    big = (lambda x: (x - x.mean()) / x.std(ddof=1))(np.arange(400, dtype=float))
    assert detectable_effect(big, 0.95) == pytest.approx((1.959964 + 0.841621) / math.sqrt(400), rel=0.01)


def test_no_figure_below_two_seeds_and_any_effect_without_spread():
    assert detectable_effect(np.array([0.3]), 0.95) is None
    assert detectable_effect(np.full(5, 0.3), 0.95) == 0.0
