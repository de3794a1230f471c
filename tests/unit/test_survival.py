"""Censored time to target, checked against computations written out by hand here."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from pipeline.report.survival import (
    CensoredTimes,
    censored_times,
    kaplan_meier,
    median_time,
    reach_rate,
    restricted_mean,
)

# Ten runs: reached at 10, 20, 20, 40, 50, 70; missed, censored at 30, 50, 80, 80 (events before censorings at 50).
TIMES = np.array([10, 20, 20, 30, 40, 50, 50, 70, 80, 80], dtype=float)
REACHED = np.array([1, 1, 1, 0, 1, 1, 0, 1, 0, 0], dtype=bool)
SAMPLE = CensoredTimes(TIMES, REACHED)


def product_limit(times, reached):
    """Kaplan-Meier by its definition: S(t) = prod over event times u <= t of (1 - d_u / n_u)."""
    surviving, curve = 1.0, {}
    for u in sorted(set(times[reached])):
        at_risk = int((times >= u).sum())
        events = int(((times == u) & reached).sum())
        surviving *= 1 - events / at_risk
        curve[u] = surviving
    return curve


def test_kaplan_meier_is_the_product_limit_estimator():
    curve = kaplan_meier(SAMPLE)
    by_hand = product_limit(TIMES, REACHED)
    # S: 0.9 at 10, 0.9 * 7/9 = 0.7 at 20, then * 5/6 at 40 (6 at risk), * 4/5 at 50, * 2/3 at 70
    assert by_hand[20] == pytest.approx(0.7) and by_hand[70] == pytest.approx(0.7 * 5 / 6 * 4 / 5 * 2 / 3)
    reached_by = dict(zip(curve.times, curve.reached_fraction, strict=True))
    for time, surviving in by_hand.items():
        assert reached_by[time] == pytest.approx(1 - surviving)
    assert curve.censored_at.tolist() == [30, 50, 80, 80]


def step_area(times, reached, horizon):
    """Area under the product-limit curve up to `horizon`, one interval at a time."""
    curve = product_limit(times, reached)
    area, previous, surviving = 0.0, 0.0, 1.0
    for u in sorted(curve):
        if u >= horizon:
            break
        area += surviving * (u - previous)
        previous, surviving = u, curve[u]
    return area + surviving * (horizon - previous)


@pytest.mark.parametrize("horizon", [5.0, 20.0, 45.0, 80.0, 100.0])
def test_restricted_mean_is_the_area_under_the_curve(horizon):
    assert restricted_mean(TIMES, REACHED, horizon) == pytest.approx(step_area(TIMES, REACHED, horizon))


def test_restricted_mean_agrees_with_scipys_curve():
    result = stats.ecdf(stats.CensoredData(uncensored=TIMES[REACHED], right=TIMES[~REACHED]))
    grid = np.linspace(0, 75, 75_001)
    area = float(np.sum(result.sf.evaluate(grid[:-1]) * np.diff(grid)))
    assert restricted_mean(TIMES, REACHED, 75.0) == pytest.approx(area, rel=1e-4)


def test_without_early_censoring_the_restricted_mean_caps_each_time_at_the_horizon():
    # Reached at 10 and 30, one run followed to the 100-step budget without reaching: (10 + 30 + 100) / 3.
    assert restricted_mean([10, 30, 100], [True, True, False], 100.0) == pytest.approx(140 / 3)
    # Times past the horizon count only up to it: (10 + 50 + 50) / 3.
    assert restricted_mean([10, 80, 100], [True, True, False], 50.0) == pytest.approx(110 / 3)


def test_a_run_censored_early_is_not_counted_as_the_budget():
    # Reached at 20 and 60; one run followed only to step 30. Kaplan-Meier: 1 until 20, 2/3 until 60, then 0.
    assert restricted_mean([20, 30, 60], [True, False, True], 100.0) == pytest.approx(20 + 40 * 2 / 3)
    # Had it been counted as followed to the budget (censored at 100), the area would be 60.
    assert restricted_mean([20, 100, 60], [True, False, True], 100.0) == pytest.approx(60.0)


def test_restricted_mean_works_on_many_resamples_at_once():
    rng = np.random.default_rng(0)
    picks = rng.integers(0, len(TIMES), size=(200, len(TIMES)))
    batched = restricted_mean(TIMES[picks], REACHED[picks], 60.0)
    one_by_one = [restricted_mean(TIMES[p], REACHED[p], 60.0) for p in picks]
    assert batched.shape == (200,) and batched == pytest.approx(np.array(one_by_one, dtype=float))


def loglog_band(times, reached, confidence):
    """Pointwise band of S by Greenwood's variance on the log(-log S) scale, written out."""
    z = stats.norm.ppf(0.5 + confidence / 2)
    surviving, greenwood, band = 1.0, 0.0, {}
    for u in sorted(set(times[reached])):
        at_risk = int((times >= u).sum())
        events = int(((times == u) & reached).sum())
        surviving *= 1 - events / at_risk
        if at_risk > events:
            greenwood += events / (at_risk * (at_risk - events))
        if 0 < surviving < 1:
            half = z * math.sqrt(greenwood) / abs(math.log(surviving))
            band[u] = (surviving ** math.exp(half), surviving ** math.exp(-half))  # (low, high)
        else:
            band[u] = (0.0, math.nan)
    return band


def test_median_and_its_interval_are_read_off_the_curve_and_its_band():
    band = loglog_band(TIMES, REACHED, 0.95)
    first_below_half = lambda column: next((u for u, b in band.items() if b[column] <= 0.5), None)  # noqa: E731
    median = median_time(SAMPLE, 0.95)
    assert median.value == 50.0  # S falls to 0.467 at 50
    assert median.low == first_below_half(0) and median.high == first_below_half(1)
    assert median.followed == 80.0


def test_median_is_not_reached_when_half_the_runs_miss():
    # 2 of 5 reached; the other 3 were followed to the budget of 100 steps.
    median = median_time(CensoredTimes(np.array([20.0, 20, 100, 100, 100]), np.array([1, 1, 0, 0, 0], bool)), 0.95)
    assert median.value is None and median.high is None and median.followed == 100


def test_reach_rate_is_the_wilson_interval():
    k, n, z = 7, 10, stats.norm.ppf(0.975)
    p = k / n
    centre = (p + z**2 / (2 * n)) / (1 + z**2 / n)
    half = z / (1 + z**2 / n) * math.sqrt(p * (1 - p) / n + z**2 / (4 * n**2))
    rate = reach_rate(SAMPLE, 0.95)
    assert (rate.successes, rate.trials) == (6, 10)
    rate = reach_rate(CensoredTimes(np.zeros(10), np.array([1] * k + [0] * (n - k), bool)), 0.95)
    assert (rate.low, rate.high) == pytest.approx((centre - half, centre + half))


def test_a_miss_is_censored_where_its_budget_ended_and_a_divergence_never_reaches():
    runs = pd.DataFrame(
        {
            "reached_acc50": [True, False, False],
            "steps_to_acc50": [40, None, None],
            "seconds_to_acc50": [4.0, None, None],
            "outcome": ["completed", "completed", "diverged"],
            "steps_trained": [100, 100, 30],  # the last run diverged at step 30
            "budget_steps": [100, 100, 100],
            "train_seconds": [10.0, 11.0, 3.5],
        }
    )
    steps = censored_times(runs, "acc50", "steps")
    # the diverged run would not have reached it by the budget either: censored at 100, not at 30
    assert steps.times.tolist() == [40, 100, 100] and steps.reached.tolist() == [True, False, False]
    # in seconds, at its own pace over the whole budget: 3.5 s for 30 steps -> 100 steps
    assert censored_times(runs, "acc50", "seconds").times.tolist() == pytest.approx([4.0, 11.0, 3.5 / 30 * 100])


def test_the_median_is_the_first_time_the_curve_is_at_or_below_one_half():
    # Four runs, two reached (at 10 and 20), two followed to 100 without: the "not yet reached" curve is
    # exactly 1/2 from step 20 on. The median is 20, where it reaches one half, not "never" (strictly below).
    median = median_time(CensoredTimes(np.array([10.0, 20, 100, 100]), np.array([1, 1, 0, 0], bool)), 0.95)
    assert median.value == 20.0
