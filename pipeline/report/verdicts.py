"""The verdict rule: four outcomes from a claim's two intervals, its direction and its smallest effect of interest.

A claim predicts an effect on one side of no effect (1x for a ratio, 0 for a difference) and its
question declares the smallest effect that counts, the margin (a 1.1x speed-up, 1 accuracy point).
Every verdict needs the paired bootstrap interval and the paired t check to agree, and at least
MIN_PAIRED_SEEDS seeds. Ratios are judged on the log scale, where the margin is symmetric: 1.1x
on the predicted side, 1/1.1x on the other.

Superiority (the claim: an effect of at least the margin, on the predicted side):
- supported: both intervals exclude no effect on the predicted side, and the estimate reaches the margin;
- no meaningful difference: both intervals lie inside +-margin (two one-sided tests, each at the
  level of one end of a two-sided interval);
- refuted: both intervals exclude the margin on the predicted side (no effect as large as the claim
  needs, or one the other way);
- inconclusive: otherwise.
Non-inferiority (the claim: not worse than the reference by the margin): supported when both
intervals lie above -margin, refuted when both lie below it, else inconclusive.
A stated range (a level, not a comparison): supported when both intervals lie within it, refuted
when both lie entirely outside it on one side, else inconclusive.

Each verdict comes with the p-value of the one-sided paired t test it rests on (two one-sided
tests: the larger of the two), from `scipy.stats.ttest_1samp`; an inconclusive verdict has 1. The
page's multiplicity control (multiplicity.py) reads them.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import stats

from pipeline.report.questions import NON_INFERIORITY, SUPERIORITY

MIN_PAIRED_SEEDS = 3  # below this a t interval has < 2 degrees of freedom and a bootstrap < 10 distinct resamples

SUPPORTED, REFUTED, NO_DIFFERENCE, INCONCLUSIVE = "supported", "refuted", "no meaningful difference", "inconclusive"
VERDICTS = (SUPPORTED, REFUTED, NO_DIFFERENCE, INCONCLUSIVE)

Bounds = tuple[float, float]  # (low, high) of an interval, on the effect's own scale


@dataclass(frozen=True)
class Rule:
    """What a comparison claims: its direction, its smallest effect of interest and the kind of test."""

    predicts: int  # +1: the effect lies above no effect (speed-up > 1, difference > 0); -1: below
    margin: float  # a ratio (e.g. 1.1) or a difference (e.g. 0.01)
    ratio: bool
    test: str = SUPERIORITY

    @property
    def delta(self) -> float:
        """The margin on the analysis scale (log for ratios)."""
        return math.log(self.margin) if self.ratio else self.margin

    def oriented(self, value: float | np.ndarray) -> float | np.ndarray:
        """A value on the analysis scale, signed so that the predicted side is positive."""
        value = np.log(value) if self.ratio else value
        return self.predicts * value


@dataclass(frozen=True)
class Decision:
    verdict: str
    reason: str
    p_value: float = 1.0  # of the one-sided test(s) the verdict rests on; 1 when inconclusive


def _too_few() -> Decision:
    return Decision(INCONCLUSIVE, f"n < {MIN_PAIRED_SEEDS} paired seeds: too few for a verdict or a reliable interval")


def one_sided_p(values: np.ndarray, bound: float, alternative: str) -> float:
    """p of the one-sided t test that the mean of `values` is greater (or less) than `bound`.

    With no spread at all the test is exact: 0 when every value lies strictly on that side, else 1.
    """
    values = np.asarray(values, dtype=float)
    if len(values) < 2:
        return 1.0
    if np.ptp(values) == 0:
        beyond = values[0] > bound if alternative == "greater" else values[0] < bound
        return 0.0 if beyond else 1.0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # near-constant samples: scipy's precision warning
        return float(stats.ttest_1samp(values, bound, alternative=alternative).pvalue)


def _oriented_bounds(bounds: Sequence[Bounds], rule: Rule) -> list[Bounds]:
    oriented = []
    for low, high in bounds:
        a, b = float(rule.oriented(low)), float(rule.oriented(high))
        oriented.append((min(a, b), max(a, b)))
    return oriented


def decide(estimate: float, bounds: Sequence[Bounds], per_seed: np.ndarray, rule: Rule) -> Decision:
    """The verdict of a comparison from its estimate, its intervals (bootstrap, t check) and per-seed effects.

    `per_seed` holds each seed's effect on the analysis scale (log ratio or difference), as the t check uses it.
    """
    seeds = len(per_seed)
    if seeds < MIN_PAIRED_SEEDS or not bounds:
        return _too_few()
    sides = _oriented_bounds(bounds, rule)
    effect = float(rule.oriented(estimate))
    values = rule.predicts * np.asarray(per_seed, dtype=float)
    delta = rule.delta
    if rule.test == NON_INFERIORITY:
        return _non_inferiority(sides, values, delta)
    if all(low > 0 for low, _ in sides) and effect >= delta:
        return Decision(
            SUPPORTED,
            "both intervals exclude no effect on the predicted side and the estimate reaches the margin",
            one_sided_p(values, 0.0, "greater"),
        )
    if all(-delta < low and high < delta for low, high in sides):
        return Decision(
            NO_DIFFERENCE,
            "both intervals lie inside ± the margin (two one-sided tests)",
            max(one_sided_p(values, -delta, "greater"), one_sided_p(values, delta, "less")),
        )
    if all(high < delta for _, high in sides):
        return Decision(
            REFUTED,
            "both intervals exclude an effect as large as the margin on the predicted side",
            one_sided_p(values, delta, "less"),
        )
    return Decision(INCONCLUSIVE, _why_inconclusive(sides, effect, delta))


def _why_inconclusive(sides: list[Bounds], effect: float, delta: float) -> str:
    if all(low > 0 for low, _ in sides):
        return "an effect on the predicted side, but its estimate is below the margin"
    kinds = {(low > 0, high < delta) for low, high in sides}
    if len(kinds) > 1:
        return "the bootstrap interval and the t check disagree"
    return "the intervals include both no effect and the margin"


def _non_inferiority(sides: list[Bounds], values: np.ndarray, delta: float) -> Decision:
    if all(low > -delta for low, _ in sides):
        return Decision(
            SUPPORTED,
            "both intervals exclude being worse by the margin (non-inferiority)",
            one_sided_p(values, -delta, "greater"),
        )
    if all(high < -delta for _, high in sides):
        return Decision(
            REFUTED, "both intervals lie beyond the margin on the worse side", one_sided_p(values, -delta, "less")
        )
    return Decision(INCONCLUSIVE, "the intervals include being worse by the margin")


def decide_range(bounds: Sequence[Bounds], values: np.ndarray, low: float, high: float) -> Decision:
    """The verdict of a stated range [low, high] on a mean over seeds, from its intervals and per-seed values."""
    values = np.asarray(values, dtype=float)
    if len(values) < MIN_PAIRED_SEEDS or not bounds:
        return _too_few()
    if all(low <= a and b <= high for a, b in bounds):
        p = max(one_sided_p(values, low, "greater"), one_sided_p(values, high, "less"))
        return Decision(SUPPORTED, f"both intervals within [{low:g}, {high:g}]", p)
    if all(b < low for _, b in bounds):
        return Decision(REFUTED, f"both intervals below [{low:g}, {high:g}]", one_sided_p(values, low, "less"))
    if all(a > high for a, _ in bounds):
        return Decision(REFUTED, f"both intervals above [{low:g}, {high:g}]", one_sided_p(values, high, "greater"))
    return Decision(INCONCLUSIVE, f"an interval straddles an end of [{low:g}, {high:g}]")


INSIDE, SMALLER, LARGER, OVERLAPS = "inside", "smaller", "larger", "overlaps"


def compare_stated(bounds: Sequence[Bounds], stated: tuple[float, float]) -> str:
    """Where a claim's own number (a point: low == high; or a range) lies against the intervals.

    "smaller": both intervals lie below it (the effect is smaller than claimed); "larger": above it;
    "inside": the number lies inside both intervals (a range: both intervals lie within it);
    "overlaps": anything else.
    """
    low, high = stated
    if not bounds:
        return OVERLAPS
    if all(b < low for _, b in bounds):
        return SMALLER
    if all(a > high for a, _ in bounds):
        return LARGER
    point = low == high
    if all((a <= low and high <= b) if point else (low <= a and b <= high) for a, b in bounds):
        return INSIDE
    return OVERLAPS
