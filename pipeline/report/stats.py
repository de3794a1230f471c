"""Summaries across seeds: n, mean, spread and a t confidence interval."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
from scipy import stats


def mean_ci(values: pd.Series, confidence: float) -> dict[str, float | int | None]:
    """Mean, sample std and the two-sided t interval of the mean; NaNs are left out and counted."""
    clean = values.dropna().astype(float).to_numpy()
    n = len(clean)
    if n == 0:
        return {"n": 0, "mean": None, "std": None, "ci_low": None, "ci_high": None}
    mean = float(clean.mean())
    if n == 1:
        return {"n": 1, "mean": mean, "std": None, "ci_low": None, "ci_high": None}
    std = float(clean.std(ddof=1))
    half = float(stats.t.ppf(0.5 + confidence / 2, df=n - 1)) * std / math.sqrt(n)
    return {"n": n, "mean": mean, "std": std, "ci_low": mean - half, "ci_high": mean + half}


def summarize(results: pd.DataFrame, by: list[str], metrics: list[str], confidence: float) -> pd.DataFrame:
    """One row per configuration (a value of each axis in `by`): seeds, diverged runs, mean/CI of each metric."""
    rows = []
    for keys, group in results.groupby(by, sort=False):
        row = dict(zip(by, keys, strict=True))
        row["seeds"] = len(group)
        row["diverged"] = int((group["outcome"] == "diverged").sum())
        for metric in metrics:
            if metric.startswith("reached_"):
                row[metric] = int(group[metric].sum())
                continue
            for stat, value in mean_ci(group[metric], confidence).items():
                row[f"{metric}.{stat}"] = value
        rows.append(row)
    return pd.DataFrame(rows)


def band(histories: list[pd.DataFrame], column: str) -> pd.DataFrame:
    """Mean, min and max of `column` across seeds at each evaluated step."""
    stacked = pd.concat([h[["step", "epoch", column]] for h in histories])
    grouped = stacked.groupby("step")
    return pd.DataFrame(
        {
            "epoch": grouped["epoch"].first(),
            "mean": grouped[column].mean(),
            "low": grouped[column].min(),
            "high": grouped[column].max(),
            "n": grouped[column].count(),
        }
    ).reset_index()


def complete_band(histories: list[pd.DataFrame], column: str) -> pd.DataFrame:
    """`band` restricted to the steps where every run has a value, with the runs' mean `seconds` there.

    After a run diverges its accuracies are missing: a mean over the survivors would
    show a curve no run followed, so the band stops where the first run stops.
    """
    curve = band(histories, column)
    curve["seconds"] = band(histories, "seconds")["mean"]
    return curve[curve["n"] == len(histories)].reset_index(drop=True)


def fmt_ci(
    mean: float | None,
    low: float | None,
    high: float | None,
    digits: int = 3,
    bounds: tuple[float, float] | None = None,
) -> str:
    """ "mean [low, high]"; the interval is clipped to `bounds` where the metric cannot leave them."""
    if mean is None or (isinstance(mean, float) and np.isnan(mean)):
        return "–"
    if low is None or (isinstance(low, float) and np.isnan(low)):
        return f"{mean:.{digits}f}"
    if bounds is not None:
        low, high = max(low, bounds[0]), min(high, bounds[1])
    return f"{mean:.{digits}f} [{low:.{digits}f}, {high:.{digits}f}]"
