"""The per-step training loss as MLflow shows it: at most MAX_POINTS points per cell.

Every step's loss is in the cell's `steps.csv`, which the run carries as an artifact and the report
reads; the metric `curves/train_loss_step` is the chart of it. One point per step was 7.9 million
metric rows over the full study (a full cell has 14,070 steps) and seconds of a cell's time, for a
chart that shows a few hundred points anyway.

The points: the first FIRST_STEPS steps each at its own step, as logged (the early evaluations,
steps 1, 2, 4, ..., resolve convergence in the first steps: so does this); after them, windows of k
consecutive steps, k as small as keeps the count within MAX_POINTS, each the mean of its steps'
finite losses, logged at the window's last step (as the history's `train_loss` is the mean over the
steps up to its evaluation). A mean rather than every k-th step: one step's loss is one
mini-batch's, noisy, and a sample of them would alias; the mean uses every step. A window with no
finite loss (a diverged cell's last steps) has no point.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

MAX_POINTS = 500
FIRST_STEPS = 100


def step_loss_points(steps: pd.DataFrame) -> list[tuple[int, float]]:
    """(step, loss) points of `steps` (columns step, train_loss, one row per step in order), as described above."""
    n = len(steps)
    if n == 0:  # a cell that trained no step (its untrained model's outputs not finite)
        return []
    head = min(n, FIRST_STEPS)
    k = max(1, math.ceil((n - head) / (MAX_POINTS - FIRST_STEPS)))
    starts = np.r_[np.arange(head), np.arange(head, n, k)]
    loss = steps["train_loss"].to_numpy(dtype=float)
    finite = np.isfinite(loss)
    sums = np.add.reduceat(np.where(finite, loss, 0.0), starts)
    counts = np.add.reduceat(finite.astype(int), starts)
    last_steps = steps["step"].to_numpy()[np.r_[starts[1:], n] - 1]
    return [
        (int(step), float(total / count)) for step, total, count in zip(last_steps, sums, counts, strict=True) if count
    ]
