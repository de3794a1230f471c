"""The smallest effect a claim's seeds can detect.

For the paired t check a verdict needs: the true mean effect (on the analysis scale: a log ratio
or a difference) that a one-sided test at the level of one end of the page's two-sided interval
detects with probability POWER, given the claim's n and the spread of its per-seed effects. The
test statistic then follows a noncentral t with n - 1 degrees of freedom and noncentrality
effect * sqrt(n) / sd (`scipy.stats.nct`), so the answer solves that distribution's tail for
the noncentrality. The spread is the one observed: a sensitivity figure for this design, not a
promise about another.
"""

from __future__ import annotations

import math

import numpy as np
from scipy import optimize, stats

POWER = 0.8


def _noncentrality(df: int, critical: float, power: float) -> float:
    """The noncentrality at which a noncentral t with `df` exceeds `critical` with probability `power`."""

    def shortfall(nc: float) -> float:
        return float(stats.nct.sf(critical, df, nc)) - power

    high = critical + 1.0
    while shortfall(high) < 0:  # nct's tail grows with nc: double until it covers `power`
        high *= 2
    return float(optimize.brentq(shortfall, 0.0, high, xtol=1e-10))


def detectable_effect(per_seed: np.ndarray, confidence: float, power: float = POWER) -> float | None:
    """The smallest mean effect on the analysis scale detected with probability `power`; None below 2 seeds."""
    values = np.asarray(per_seed, dtype=float)
    n = len(values)
    if n < 2 or not np.all(np.isfinite(values)):
        return None
    spread = float(values.std(ddof=1))
    if spread == 0:
        return 0.0  # seeds that agree exactly: any effect at all is seen
    critical = float(stats.t.ppf(0.5 + confidence / 2, df=n - 1))  # one end of the two-sided interval
    return _noncentrality(n - 1, critical, power) * spread / math.sqrt(n)
