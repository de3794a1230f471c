"""The per-step loss metric: at most MAX_POINTS points, the first steps as logged, then window means."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from pipeline.tracking.step_losses import FIRST_STEPS, MAX_POINTS, step_loss_points


def _steps(losses) -> pd.DataFrame:
    return pd.DataFrame({"step": np.arange(1, len(losses) + 1), "train_loss": np.asarray(losses, dtype=float)})


def test_a_short_cell_keeps_every_finite_step():
    losses = [2.5 - 0.01 * s for s in range(300)]
    losses[7] = math.nan  # not a number: no point
    points = step_loss_points(_steps(losses))
    assert points == [(s + 1, loss) for s, loss in enumerate(losses) if s != 7]


def test_a_full_cell_has_its_first_steps_then_the_mean_of_each_window_at_its_last_step():
    n = 14_070  # a full study's CIFAR-10 cell: 1,407 steps x 10 epochs
    points = step_loss_points(_steps(np.arange(1, n + 1)))  # each step's loss is its own number
    k = math.ceil((n - FIRST_STEPS) / (MAX_POINTS - FIRST_STEPS))
    assert k == 35 and len(points) == MAX_POINTS
    assert points[:FIRST_STEPS] == [(s, float(s)) for s in range(1, FIRST_STEPS + 1)]
    # a window of steps a..b has the mean (a + b) / 2, at step b; the last window holds what is left (5 steps)
    windows = [(a, min(a + k - 1, n)) for a in range(FIRST_STEPS + 1, n + 1, k)]
    assert points[FIRST_STEPS:] == [(b, (a + b) / 2) for a, b in windows]
    assert windows[-1] == (14_066, 14_070)


@pytest.mark.parametrize("n", [0, 1, FIRST_STEPS, FIRST_STEPS + 1, MAX_POINTS, MAX_POINTS + 1, 14_070, 100_003])
def test_any_length_stays_within_the_bound_and_ends_at_the_last_step(n):
    points = step_loss_points(_steps(np.ones(n)))
    assert len(points) == n if n <= MAX_POINTS else len(points) <= MAX_POINTS  # 501 steps: 100 + 201 windows of 2
    assert [s for s, _ in points[:FIRST_STEPS]] == list(range(1, min(n, FIRST_STEPS) + 1))
    assert all(value == 1.0 for _, value in points) and (n == 0 or points[-1][0] == n)


def test_a_window_averages_its_finite_losses_and_one_without_any_has_no_point():
    n = 1_000  # windows of ceil(900 / 400) = 3 steps after the first 100: 101-103, 104-106, ...
    losses = np.full(n, 2.0)
    losses[100:103] = [1.0, math.nan, 4.0]  # the finite two: mean 2.5
    losses[103:106] = [math.inf, math.nan, -math.inf]  # none finite
    points = dict(step_loss_points(_steps(losses)))
    assert points[103] == 2.5 and 106 not in points and points[109] == 2.0
