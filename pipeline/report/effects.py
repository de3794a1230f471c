"""Paired effects over seeds: an estimate, its bootstrap interval, a t check and a verdict.

Seeds are the replicates, and the same seed gives two configurations the same
initial data order, so seeds pair configurations: every resample draws seeds, and a
drawn seed brings both of its runs. An effect is either a ratio (a speed-up: no
effect is 1) or a difference (no effect is 0).

The interval is a paired bootstrap (`scipy.stats.bootstrap`, BCa; percentile where
BCa is undefined because every resample gives the same value), seeded so the report
is identical for identical inputs. With a handful of seeds a bootstrap interval is
too narrow, so a verdict also needs a paired t interval over the per-seed effects
(on the log scale for ratios) to agree; see `decide`.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from scipy import stats

MIN_PAIRED_SEEDS = 3  # below this a t interval has < 2 degrees of freedom and a bootstrap < 10 distinct resamples
BOOTSTRAP_RESAMPLES = 4999
BOOTSTRAP_SEED = 20_231_125  # fixed: the same inputs give byte-identical intervals

SUPPORTED, REFUTED, INCONCLUSIVE = "supported", "refuted", "inconclusive"


@dataclass(frozen=True)
class Interval:
    low: float
    high: float
    method: str  # how it was computed, as the page names it

    def side_of(self, null: float) -> int:
        """+1 when the interval lies entirely above `null`, -1 entirely below, 0 when it touches it."""
        if self.low > null:
            return 1
        if self.high < null:
            return -1
        return 0


@dataclass(frozen=True)
class Effect:
    estimate: float
    interval: Interval | None  # paired bootstrap; None with fewer than 2 seeds
    check: Interval | None  # paired t; None with fewer than 2 seeds
    seeds: int  # n: paired seeds behind the estimate
    ratio: bool  # True: no effect is 1 (a ratio); False: no effect is 0 (a difference)
    verdict: str
    reason: str  # why this verdict, in words built from the numbers
    within: tuple[float, float] | None = None  # a level (not a comparison): the range the claim states

    @property
    def null(self) -> float:
        return 1.0 if self.ratio else 0.0


def bootstrap_interval(
    statistic: Callable[[np.ndarray], np.ndarray], seeds: int, confidence: float, method: str = "BCa"
) -> Interval:
    """Paired bootstrap over seed indices: `statistic` maps index arrays (..., seeds) to effects (...).

    BCa by default, falling back to percentile where BCa is undefined.
    """
    indices = np.arange(seeds)

    def over_indices(sample: np.ndarray, axis: int = -1) -> np.ndarray:
        return statistic(np.moveaxis(sample, axis, -1))

    def run(method: str):
        with warnings.catch_warnings():
            # BCa's own warning when it is undefined; the fallback below handles it.
            warnings.simplefilter("ignore")
            return stats.bootstrap(
                (indices,),
                over_indices,
                vectorized=True,
                n_resamples=BOOTSTRAP_RESAMPLES,
                confidence_level=confidence,
                method=method,
                rng=np.random.default_rng(BOOTSTRAP_SEED),
            )

    interval = run(method).confidence_interval
    name = f"{method} bootstrap"
    if method != "percentile" and not (np.isfinite(interval.low) and np.isfinite(interval.high)):
        interval = run("percentile").confidence_interval
        name = "percentile bootstrap (BCa undefined: every resample gave the same value)"
    return Interval(float(interval.low), float(interval.high), name)


def t_interval(per_seed: np.ndarray, confidence: float, log_scale: bool) -> Interval:
    """Two-sided paired t interval of the mean per-seed effect, mapped back from logs for ratios."""
    values = np.asarray(per_seed, dtype=float)
    mean = float(values.mean())
    spread = float(values.std(ddof=1)) if len(values) > 1 else math.nan
    half = float(stats.t.ppf(0.5 + confidence / 2, df=len(values) - 1)) * spread / math.sqrt(len(values))
    low, high = mean - half, mean + half
    if log_scale:
        low, high = math.exp(low), math.exp(high)
    return Interval(low, high, "paired t on per-seed log ratios" if log_scale else "paired t on per-seed differences")


def decide(
    interval: Interval | None, check: Interval | None, seeds: int, null: float, predicts: int
) -> tuple[str, str]:
    """The verdict rule, as the page states it.

    Supported: at least MIN_PAIRED_SEEDS paired seeds, and both the bootstrap interval
    and the t check lie entirely on the side of no effect that the claim predicts.
    Refuted: the same, on the other side. Inconclusive: anything else.
    """
    if seeds < MIN_PAIRED_SEEDS or interval is None or check is None:
        return INCONCLUSIVE, f"n < {MIN_PAIRED_SEEDS} paired seeds: too few for a verdict or a reliable interval"
    boot, t = interval.side_of(null), check.side_of(null)
    if boot == t == predicts:
        return SUPPORTED, "both intervals on the predicted side"
    if boot == t == -predicts:
        return REFUTED, "both intervals on the opposite side"
    if boot == 0:
        return INCONCLUSIVE, "interval includes no effect"
    if t == 0:
        return INCONCLUSIVE, "t check includes no effect"
    return INCONCLUSIVE, "bootstrap and t check disagree"


def paired_effect(
    statistic: Callable[[np.ndarray], np.ndarray],
    per_seed: np.ndarray,
    *,
    ratio: bool,
    predicts: int,
    confidence: float,
) -> Effect:
    """Estimate, intervals and verdict for one paired comparison.

    `statistic(indices)` gives the effect on the seeds at `indices` (last axis; leading
    axes are resamples); `per_seed` holds each seed's own effect on the analysis scale
    (log ratio or difference) for the t check. `predicts` is +1 when the claim expects
    the effect above no effect, -1 below.
    """
    seeds = len(per_seed)
    estimate = float(statistic(np.arange(seeds)))
    null = 1.0 if ratio else 0.0
    if not (np.isfinite(estimate) and np.all(np.isfinite(per_seed))):
        # e.g. a target met at step 0, where a ratio of times has no meaning
        return Effect(estimate, None, None, seeds, ratio, INCONCLUSIVE, "the effect is undefined for some seed")
    interval = check = None
    if seeds >= 2:
        interval = bootstrap_interval(statistic, seeds, confidence)
        check = t_interval(per_seed, confidence, log_scale=ratio)
    verdict, reason = decide(interval, check, seeds, null, predicts)
    return Effect(estimate, interval, check, seeds, ratio, verdict, reason)


def _inside(interval: Interval, low: float, high: float) -> int:
    """+1 when the interval lies within [low, high], -1 when it misses the range entirely, 0 otherwise."""
    if low <= interval.low and interval.high <= high:
        return 1
    if interval.high < low or interval.low > high:
        return -1
    return 0


def level_effect(per_seed: np.ndarray, low: float, high: float, confidence: float) -> Effect:
    """A mean over seeds and whether it lies in the range [low, high] that a claim states.

    Supported: at least MIN_PAIRED_SEEDS seeds, and both the bootstrap interval of the
    mean and the t interval lie within the range. Refuted: both lie entirely outside
    it. Inconclusive: anything else (an interval that straddles an end of the range).
    """
    values = np.asarray(per_seed, dtype=float)
    seeds = len(values)
    estimate = float(values.mean())
    interval = check = None
    if seeds >= 2:
        interval = bootstrap_interval(lambda at: values[at].mean(axis=-1), seeds, confidence)
        check = t_interval(values, confidence, log_scale=False)
        check = Interval(check.low, check.high, "t interval of the mean")
    if seeds < MIN_PAIRED_SEEDS or interval is None or check is None:
        verdict, reason = INCONCLUSIVE, f"n < {MIN_PAIRED_SEEDS} seeds: too few for a verdict or a reliable interval"
    else:
        boot, t = _inside(interval, low, high), _inside(check, low, high)
        if boot == t == 1:
            verdict, reason = SUPPORTED, f"both intervals within [{low:g}, {high:g}]"
        elif boot == t == -1:
            verdict, reason = REFUTED, f"both intervals outside [{low:g}, {high:g}]"
        else:
            verdict, reason = INCONCLUSIVE, f"an interval straddles an end of [{low:g}, {high:g}]"
    return Effect(estimate, interval, check, seeds, False, verdict, reason, within=(low, high))
