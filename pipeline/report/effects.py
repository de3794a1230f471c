"""Paired effects over seeds: an estimate, its bootstrap interval, a t check, a verdict and what n can detect.

Seeds are the replicates, and the same seed gives two configurations the same
initial data order, so seeds pair configurations: every resample draws seeds, and a
drawn seed brings both of its runs. An effect is either a ratio (a speed-up: no
effect is 1) or a difference (no effect is 0).

The interval is a paired bootstrap (`scipy.stats.bootstrap`, BCa; percentile where
BCa is undefined because every resample gives the same value), seeded so the report
is identical for identical inputs. With a handful of seeds a bootstrap interval is
too narrow, so a verdict also needs a paired t interval over the per-seed effects
(on the log scale for ratios) to agree: the rule is verdicts.py's. Each effect also
carries the smallest effect its seeds can detect (power.py).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable
from dataclasses import dataclass, replace

import numpy as np
from scipy import stats

from pipeline.report.power import detectable_effect
from pipeline.report.verdicts import (
    INCONCLUSIVE,
    MIN_PAIRED_SEEDS,
    SUPERIORITY,
    Decision,
    Rule,
    decide,
    decide_range,
)

BOOTSTRAP_RESAMPLES = 4999
BOOTSTRAP_SEED = 20_231_125  # fixed: the same inputs give byte-identical intervals


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
    p_value: float = 1.0  # of the one-sided t test(s) the verdict rests on (verdicts.py); 1 when inconclusive
    margin: float | None = None  # the smallest effect of interest, on the effect's own scale
    test: str = SUPERIORITY
    detectable: float | None = None  # the smallest effect n seeds detect (power.py), on the effect's own scale
    stated: str = ""  # how the claim's own number lies against the intervals (verdicts.compare_stated); "": none

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


def _detectable(per_seed: np.ndarray, confidence: float) -> float | None:
    """What the seeds can detect, where they are enough for a verdict at all (none below MIN_PAIRED_SEEDS)."""
    return detectable_effect(per_seed, confidence) if len(per_seed) >= MIN_PAIRED_SEEDS else None


def _bounds(*intervals: Interval | None) -> list[tuple[float, float]]:
    return [(i.low, i.high) for i in intervals if i is not None]


def _on_own_scale(value: float | None, ratio: bool) -> float | None:
    return None if value is None else (math.exp(value) if ratio else value)


def paired_effect(
    statistic: Callable[[np.ndarray], np.ndarray],
    per_seed: np.ndarray,
    *,
    rule: Rule,
    confidence: float,
) -> Effect:
    """Estimate, intervals, verdict and detectable effect for one paired comparison.

    `statistic(indices)` gives the effect on the seeds at `indices` (last axis; leading
    axes are resamples); `per_seed` holds each seed's own effect on the analysis scale
    (log ratio or difference) for the t check; `rule` says what the claim predicts.
    """
    seeds = len(per_seed)
    estimate = float(statistic(np.arange(seeds)))
    ratio = rule.ratio
    if not (np.isfinite(estimate) and np.all(np.isfinite(per_seed))):
        # e.g. a target met at step 0, where a ratio of times has no meaning
        return Effect(
            estimate, None, None, seeds, ratio, INCONCLUSIVE, "the effect is undefined for some seed",
            margin=rule.margin, test=rule.test,
        )  # fmt: skip
    interval = check = None
    if seeds >= 2:
        interval = bootstrap_interval(statistic, seeds, confidence)
        check = t_interval(per_seed, confidence, log_scale=ratio)
    decision = decide(estimate, _bounds(interval, check), per_seed, rule)
    return _with_decision(
        Effect(estimate, interval, check, seeds, ratio, "", "", margin=rule.margin, test=rule.test),
        decision,
        detectable=_on_own_scale(_detectable(per_seed, confidence), ratio),
    )


def _with_decision(effect: Effect, decision: Decision, detectable: float | None) -> Effect:
    return replace(
        effect, verdict=decision.verdict, reason=decision.reason, p_value=decision.p_value, detectable=detectable
    )


def level_effect(per_seed: np.ndarray, low: float, high: float, confidence: float) -> Effect:
    """A mean over seeds and whether it lies in the range [low, high] that a claim states (verdicts.decide_range)."""
    values = np.asarray(per_seed, dtype=float)
    seeds = len(values)
    estimate = float(values.mean())
    interval = check = None
    if seeds >= 2:
        interval = bootstrap_interval(lambda at: values[at].mean(axis=-1), seeds, confidence)
        check = t_interval(values, confidence, log_scale=False)
        check = Interval(check.low, check.high, "t interval of the mean")
    decision = decide_range(_bounds(interval, check), values, low, high)
    return _with_decision(
        Effect(estimate, interval, check, seeds, False, "", "", within=(low, high)),
        decision,
        detectable=_detectable(values, confidence),
    )
