"""Speed-up as a curve over every target level, not only the declared targets.

The declared targets (params `targets:`) are a few points of a continuum, and a speed-up that
holds at one may vanish at the next. For a speed claim this computes, per condition (its axes
but the target), the verdict's own statistic at every level of a grid: the reference's
restricted mean time to the level over the treatment's, up to the shorter follow-up of the
two, misses censored; for BN runs on the recomputed-statistics accuracy where the run recorded
it, as the verdict. A level that no run of either configuration reached has no point, never 1x.
Point estimates only: the declared targets carry the intervals.

Crossings are those of pipeline/cell/convergence.py: the first evaluation at or above an accuracy,
interpolated with the one before it (`time_to_target`); the first step at which the trailing mean
of the per-step losses is at or below a loss (the same as `time_to_loss`, computed for every
level at once).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from pipeline.cell.convergence import smoothed_loss, time_to_target
from pipeline.report import outcomes
from pipeline.report.collect import ON_RECOMPUTED, SPEED_ACCURACY
from pipeline.report.diagnostics import RECOMPUTED
from pipeline.report.findings import Design, Finding, claim_rows, paired_groups
from pipeline.report.questions import ANSWER_COLUMNS_AXIS
from pipeline.report.survival import follow_up, restricted_mean
from pipeline.report.timing import comparable_timing
from pipeline.study.cells import Cell
from pipeline.study.targets import TRAIN_LOSS, VAL_ACCURACY

ACCURACY_STEP = 0.01  # the grid of accuracy levels: chance + ACCURACY_FROM_CHANCE up to the best reached
ACCURACY_FROM_CHANCE = 0.05
LOSS_LEVELS = 40  # evenly spaced from just below chance's loss down to the lowest smoothed loss reached


@dataclass(frozen=True)
class Crossings:
    """One run's time to every level of a grid: reached, steps and seconds (NaN where not reached)."""

    reached: np.ndarray
    steps: np.ndarray
    seconds: np.ndarray


def accuracy_crossings(history: pd.DataFrame, levels: np.ndarray, column: str = VAL_ACCURACY) -> Crossings:
    """Times to each accuracy level on `column` of the history (the moving or the recomputed accuracy)."""
    source = history.assign(val_accuracy=history[column])
    times = [time_to_target(source, float(level)) for level in levels]
    return Crossings(
        np.array([t["reached"] for t in times], dtype=bool),
        np.array([np.nan if t["steps"] is None else t["steps"] for t in times], dtype=float),
        np.array([np.nan if t["seconds"] is None else t["seconds"] for t in times], dtype=float),
    )


def loss_crossings(history: pd.DataFrame, steps: pd.DataFrame, levels: np.ndarray, window: int) -> Crossings:
    """Times to each loss level: the first step at which the trailing mean of `window` losses is at or below it."""
    smooth = smoothed_loss(steps, window).to_numpy(dtype=float)
    lowest_yet = np.fmin.accumulate(np.where(np.isfinite(smooth), smooth, np.inf)) if len(smooth) else smooth
    below = lowest_yet[None, :] <= np.asarray(levels, dtype=float)[:, None]
    reached = below.any(axis=1)
    first = below.argmax(axis=1)
    at_step = np.where(reached, steps["step"].to_numpy(dtype=float)[first] if len(smooth) else np.nan, np.nan)
    evaluated = history["step"].to_numpy(dtype=float)
    seconds = np.interp(at_step, evaluated, history["seconds"].to_numpy(dtype=float))
    return Crossings(reached, at_step, np.where(reached, seconds, np.nan))


def accuracy_levels(best: np.ndarray, dataset: str) -> np.ndarray:
    """The accuracy grid: from just above chance to the best accuracy any run reached."""
    low = outcomes.chance_accuracy(dataset) + ACCURACY_FROM_CHANCE
    high = float(np.nanmax(best)) if np.isfinite(best).any() else low
    count = int(np.floor(round((high - low) / ACCURACY_STEP, 9))) + 1
    return np.round(low + ACCURACY_STEP * np.arange(max(count, 0)), 4)


def loss_levels(lowest: np.ndarray, dataset: str) -> np.ndarray:
    """The loss grid: from just below chance's loss, ln(classes), to the lowest smoothed loss any run reached."""
    high = outcomes.chance_loss(dataset) - 0.05
    low = float(np.nanmin(lowest)) if np.isfinite(lowest).any() else high
    if low >= high:
        return np.array([])
    return np.unique(np.round(np.linspace(high, low, LOSS_LEVELS), 4))[::-1]


@dataclass(frozen=True)
class Curve:
    label: str  # the condition, e.g. "activation relu, dropout 0"
    quantity: str  # VAL_ACCURACY or TRAIN_LOSS
    levels: np.ndarray
    speedups: np.ndarray  # NaN where no run of either configuration reached the level


def _times(runs: pd.DataFrame, crossings: list[Crossings], unit: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(levels x runs) times and reached flags, a miss at the run's follow-up; and the follow-ups."""
    followed = follow_up(runs, unit)
    hit = np.stack([c.steps if unit == "steps" else c.seconds for c in crossings], axis=1)
    reached = np.stack([c.reached for c in crossings], axis=1)
    return np.where(reached, hit, followed[None, :]), reached, followed


def speedup_curve(
    treated: pd.DataFrame,
    reference: pd.DataFrame,
    treated_crossings: list[Crossings],
    reference_crossings: list[Crossings],
    unit: str,
) -> np.ndarray:
    """Per level: restricted mean (reference) / restricted mean (treatment) up to the shorter follow-up."""
    mine, my_hits, my_follow = _times(treated, treated_crossings, unit)
    theirs, their_hits, their_follow = _times(reference, reference_crossings, unit)
    horizon = min(my_follow.max(), their_follow.max())
    ratio = restricted_mean(theirs, their_hits, horizon) / restricted_mean(mine, my_hits, horizon)
    return np.where(my_hits.any(axis=1) | their_hits.any(axis=1), ratio, np.nan)


def crossings_of(
    runs: pd.DataFrame,
    quantity: str,
    levels: np.ndarray,
    histories: dict[str, pd.DataFrame],
    steps: dict[str, pd.DataFrame],
    loss_window: int,
) -> list[Crossings]:
    """Each run's crossings of `levels`, on the accuracy the speed verdict uses (or the training loss)."""
    found = []
    for _, run in runs.iterrows():
        history = histories[run["cell"]]
        if quantity == TRAIN_LOSS:
            found.append(loss_crossings(history, steps[run["cell"]], levels, loss_window))
        else:
            column = RECOMPUTED if run.get(SPEED_ACCURACY) == ON_RECOMPUTED else VAL_ACCURACY
            found.append(accuracy_crossings(history, levels, column))
    return found


def _finite(values) -> np.ndarray:
    values = pd.to_numeric(pd.Series(values), errors="coerce").to_numpy(dtype=float)
    return values[np.isfinite(values)]


def grid(runs: pd.DataFrame, quantity: str, histories: dict[str, pd.DataFrame], steps: dict, window: int) -> np.ndarray:
    """The levels of one quantity for these runs (all of one dataset)."""
    dataset = str(runs["dataset"].iloc[0])
    extremes = []
    for _, run in runs.iterrows():
        if quantity == TRAIN_LOSS:
            values = _finite(smoothed_loss(steps[run["cell"]], window))
            extremes.append(values.min() if len(values) else np.nan)
        else:
            column = RECOMPUTED if run.get(SPEED_ACCURACY) == ON_RECOMPUTED else VAL_ACCURACY
            values = _finite(histories[run["cell"]][column])
            extremes.append(values.max() if len(values) else np.nan)
    extremes = np.array(extremes, dtype=float)
    return loss_levels(extremes, dataset) if quantity == TRAIN_LOSS else accuracy_levels(extremes, dataset)


def by_name(mapping: dict[Cell, pd.DataFrame]) -> dict[str, pd.DataFrame]:
    return {cell.name: frame for cell, frame in mapping.items()}


def finding_curves(
    finding: Finding,
    column: str,
    results: pd.DataFrame,
    design: Design,
    histories: dict[str, pd.DataFrame],
    steps: dict[str, pd.DataFrame],
    loss_window: int,
) -> list[Curve]:
    """A speed finding's curves on one column: per quantity it covers, one per condition (its axes but the target)."""
    claim = finding.claim
    rows = claim_rows(claim, results)
    rows = rows[rows[ANSWER_COLUMNS_AXIS] == column]
    if claim.quantity.timed:
        rows = comparable_timing(rows).kept
    quantities = [q for q in (VAL_ACCURACY, TRAIN_LOSS) if claim.quantity.on in (None, q)]
    curves = []
    for quantity in quantities:
        if rows.empty or not design.targets_on(column, quantity):
            continue
        levels = grid(rows, quantity, histories, steps, loss_window)
        if not len(levels):
            continue
        for labels, _, treated, reference in paired_groups(claim, finding.treatment, rows, design):
            mine = crossings_of(treated, quantity, levels, histories, steps, loss_window)
            theirs = crossings_of(reference, quantity, levels, histories, steps, loss_window)
            label = ", ".join(f"{axis} {value}" for axis, value in labels) or "all runs"
            curves.append(
                Curve(label, quantity, levels, speedup_curve(treated, reference, mine, theirs, claim.quantity.unit))
            )
    return curves
