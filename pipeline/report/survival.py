"""Time to a target accuracy as a censored quantity.

A run that reached the target contributes the steps (or seconds) at its first
validation pass at or above it: an event. A run that missed it is right-censored
where its budget ended: it is known not to have reached the target within it. A run
that diverged never reaches the target, so it too is censored at the end of its
budget (in seconds: at its own pace, extrapolated to the budget), not where it
stopped, which would treat it as if it might still have got there. No miss is
dropped, and none is counted as if it had reached the target at the budget.

- Kaplan-Meier curves, their pointwise intervals and medians: `scipy.stats.ecdf` on
  `scipy.stats.CensoredData`.
- Restricted mean: the area under the Kaplan-Meier "not yet reached" curve up to a
  horizon, computed here in numpy so that thousands of bootstrap resamples take
  milliseconds; the tests check it against scipy's curve and a hand computation.
- Reach rate: `scipy.stats.binomtest(...).proportion_ci(method="wilson")`.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import stats

# Per-run columns: time to a target when reached, and how long the run was followed when not.
TIME_COLUMN = {"steps": "steps_to_{key}", "seconds": "seconds_to_{key}"}
FOLLOW_UP_COLUMN = {"steps": "steps_trained", "seconds": "train_seconds"}
# A target key with this suffix (acc50_recomputed_bn) names the times on the accuracy with recomputed BN
# statistics (collect.py), which speed verdicts on accuracy targets read.
RECOMPUTED_SUFFIX = "_recomputed_bn"
MEDIAN_BAND = "log-log"  # pointwise band of the curve that the median's interval is read from


@dataclass(frozen=True)
class CensoredTimes:
    """One time per run: when it reached the target, or when its budget ended without reaching it."""

    times: np.ndarray  # float, in the unit the times were taken in
    reached: np.ndarray  # bool; False: right-censored at `times`

    @property
    def runs(self) -> int:
        return len(self.times)

    @property
    def hits(self) -> int:
        return int(self.reached.sum())


def _numbers(runs: pd.DataFrame, column: str) -> np.ndarray:
    return pd.to_numeric(runs[column], errors="coerce").to_numpy(dtype=float)


def follow_up(runs: pd.DataFrame, unit: str) -> np.ndarray:
    """How long each run was followed without reaching a target: to the end of its budget.

    For a diverged run, which stopped early and can never reach the target, that is
    the budget in steps, and in seconds its training time scaled to the budget.
    """
    followed = _numbers(runs, FOLLOW_UP_COLUMN[unit])
    if "outcome" not in runs:
        return followed
    diverged = (runs["outcome"] == "diverged").to_numpy()
    trained, budget = _numbers(runs, "steps_trained"), _numbers(runs, "budget_steps")
    with np.errstate(divide="ignore", invalid="ignore"):
        to_budget = followed * budget / trained if unit == "seconds" else budget
    # Diverged before its first step: no pace to extrapolate; followed as long as the longest run here.
    to_budget = np.where(np.isfinite(to_budget) & (trained > 0), to_budget, np.nanmax(followed))
    return np.where(diverged, to_budget, followed)


def censored_times(runs: pd.DataFrame, key: str, unit: str) -> CensoredTimes:
    """Times to the target `key` (e.g. "acc50") in `unit` for the runs in `runs`, misses censored."""
    reached = runs[f"reached_{key}"].astype(bool).to_numpy()
    hit = _numbers(runs, TIME_COLUMN[unit].format(key=key))
    return CensoredTimes(times=np.where(reached, hit, follow_up(runs, unit)), reached=reached)


def _ecdf(data: CensoredTimes):
    sample = stats.CensoredData(uncensored=data.times[data.reached], right=data.times[~data.reached])
    return stats.ecdf(sample)


@dataclass(frozen=True)
class KaplanMeier:
    times: np.ndarray  # distinct observed times
    reached_fraction: np.ndarray  # estimated fraction of runs that reached the target by each time
    censored_at: np.ndarray  # times at which budgets ended without reaching it (the "+" marks of a plot)


def kaplan_meier(data: CensoredTimes) -> KaplanMeier:
    result = _ecdf(data)
    return KaplanMeier(
        times=np.asarray(result.cdf.quantiles, dtype=float),
        reached_fraction=np.asarray(result.cdf.probabilities, dtype=float),
        censored_at=np.sort(data.times[~data.reached]),
    )


@dataclass(frozen=True)
class Median:
    """Median time to target from the Kaplan-Meier curve, with its interval.

    `value` is None when fewer than half the runs reached the target within the
    follow-up; `high` is None when the upper limit lies beyond what was observed.
    """

    value: float | None
    low: float | None
    high: float | None
    followed: float  # the longest follow-up: "not reached" means "not within this"


def median_time(data: CensoredTimes, confidence: float) -> Median:
    """The first time the "not yet reached" curve falls to one half or below.

    The interval is read off the curve's pointwise log-log band where it crosses one
    half (the method of R's survfit). Where every run still at risk has reached the
    target the curve is 0, its band is undefined, and the lower band is taken as 0.
    """
    result = _ecdf(data)
    times = np.asarray(result.sf.quantiles, dtype=float)
    surviving = np.asarray(result.sf.probabilities, dtype=float)
    with warnings.catch_warnings():
        # scipy warns where the band is undefined (the curve at 0); handled below.
        warnings.simplefilter("ignore", RuntimeWarning)
        band = result.sf.confidence_interval(confidence_level=confidence, method=MEDIAN_BAND)
    lower_band = np.where(np.isnan(band.low.probabilities) & (surviving == 0), 0.0, band.low.probabilities)
    upper_band = np.asarray(band.high.probabilities, dtype=float)

    def first_at_or_below_half(curve: np.ndarray) -> float | None:
        below = np.flatnonzero(curve <= 0.5)  # NaN compares False: an undefined band crosses nothing
        return float(times[below[0]]) if len(below) else None

    return Median(
        value=first_at_or_below_half(surviving),
        low=first_at_or_below_half(lower_band),
        high=first_at_or_below_half(upper_band),
        followed=float(data.times.max()),
    )


def restricted_mean(times: np.ndarray, reached: np.ndarray, horizon: float | np.ndarray) -> np.ndarray:
    """Area under the Kaplan-Meier "not yet reached" curve from 0 to `horizon`.

    The mean time to target with every time capped at the horizon. Runs lie along
    the last axis; any leading axes (bootstrap resamples) are kept. Events come
    before censorings at equal times, as in every Kaplan-Meier estimator. Past the
    last observation the curve is carried forward to the horizon.
    """
    times = np.asarray(times, dtype=float)
    reached = np.asarray(reached, dtype=bool)
    horizon = np.asarray(horizon, dtype=float)[..., None]
    order = np.lexsort((~reached, times), axis=-1)
    times = np.take_along_axis(times, order, axis=-1)
    reached = np.take_along_axis(reached, order, axis=-1)
    runs = times.shape[-1]
    at_risk = runs - np.arange(runs)
    # Tied events, taken one at a time, multiply to the usual (1 - d/n) at that time.
    surviving_after = np.cumprod(np.where(reached, 1.0 - 1.0 / at_risk, 1.0), axis=-1)
    surviving_before = np.concatenate([np.ones_like(surviving_after[..., :1]), surviving_after[..., :-1]], axis=-1)
    starts = np.concatenate([np.zeros_like(times[..., :1]), times[..., :-1]], axis=-1)
    widths = np.minimum(times, horizon) - np.minimum(starts, horizon)
    tail = np.maximum(horizon[..., 0] - times[..., -1], 0.0) * surviving_after[..., -1]
    return (surviving_before * widths).sum(axis=-1) + tail


@dataclass(frozen=True)
class Proportion:
    successes: int
    trials: int
    low: float
    high: float

    @property
    def value(self) -> float:
        return self.successes / self.trials


def reach_rate(data: CensoredTimes, confidence: float) -> Proportion:
    """Share of runs that reached the target, with its Wilson score interval."""
    interval = stats.binomtest(data.hits, data.runs).proportion_ci(confidence_level=confidence, method="wilson")
    return Proportion(data.hits, data.runs, float(interval.low), float(interval.high))
