"""Per-run scalars and page text from the histories' diagnostic columns.

history.csv may carry, per evaluation, `grad_norm/<layer>` (the L2 norm of the training
loss's gradient with respect to each Conv/Dense kernel, in layer order: conv1, conv2,
dense1, ..., output) and, for BN cells, `val_accuracy_recomputed_bn` (validation
accuracy with BN statistics re-estimated on training images). Outputs of an older
bnbench have neither: every scalar is then None, never an error.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from pipeline.report.tables import value_text
from pipeline.study.cells import Cell, axis_label

GRAD_PREFIX = "grad_norm/"
OUTPUT_LAYER = "output"  # the softmax classifier: not a hidden layer
RECOMPUTED = "val_accuracy_recomputed_bn"
MOVING = "val_accuracy"
# Above this |recomputed - moving| validation accuracy at the last evaluation, the moving statistics are said to lag.
BN_GAP_TOLERANCE = 0.02

GRAD_RATIO = "grad_norm_first_over_last"
FINAL_RECOMPUTED = "final_val_accuracy_recomputed_bn"
MAX_BN_GAP = "max_bn_statistics_gap"


def gradient_layers(history: pd.DataFrame) -> list[str]:
    """The layers with a recorded kernel gradient norm, in depth order (the history's column order)."""
    return [c[len(GRAD_PREFIX) :] for c in history.columns if c.startswith(GRAD_PREFIX)]


def _finite(value) -> float | None:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def grad_norm_first_over_last(history: pd.DataFrame) -> float | None:
    """Median over the evaluations after step 0 of |grad conv1/dense1 kernel| / |grad last hidden kernel|.

    First and last hidden layer: the first and the last Conv/Dense layer before the softmax
    output. Far below 1: the first layers learn orders of magnitude slower (vanishing
    gradients). Evaluations where either norm is missing, non-finite or the last one is 0
    are left out; None without two hidden layers' norms or without any such evaluation.
    """
    hidden = [layer for layer in gradient_layers(history) if layer != OUTPUT_LAYER]
    if len(hidden) < 2:
        return None
    later = history[history["step"] > 0]
    first = pd.to_numeric(later[GRAD_PREFIX + hidden[0]], errors="coerce").to_numpy(dtype=float)
    last = pd.to_numeric(later[GRAD_PREFIX + hidden[-1]], errors="coerce").to_numpy(dtype=float)
    usable = np.isfinite(first) & np.isfinite(last) & (last > 0)
    if not usable.any():
        return None
    return float(np.median(first[usable] / last[usable]))


def bn_statistics_gaps(history: pd.DataFrame) -> pd.DataFrame:
    """step, gap: recomputed minus moving-statistics validation accuracy, at each evaluation that has both."""
    if RECOMPUTED not in history.columns:
        return pd.DataFrame({"step": pd.Series(dtype=int), "gap": pd.Series(dtype=float)})
    gap = pd.to_numeric(history[RECOMPUTED], errors="coerce") - pd.to_numeric(history[MOVING], errors="coerce")
    keep = np.isfinite(gap.to_numpy(dtype=float))
    return pd.DataFrame({"step": history["step"][keep].astype(int), "gap": gap[keep]}).reset_index(drop=True)


def final_val_accuracy_recomputed_bn(history: pd.DataFrame) -> float | None:
    """The recomputed-statistics accuracy of the last evaluation: None for BN off and for a diverged run."""
    if RECOMPUTED not in history.columns or history.empty:
        return None
    return _finite(history[RECOMPUTED].iloc[-1])


def max_bn_statistics_gap(history: pd.DataFrame) -> float | None:
    """Max over evaluations of (recomputed - moving) validation accuracy; None for BN off (no recomputed column)."""
    gaps = bn_statistics_gaps(history)
    return float(gaps["gap"].max()) if len(gaps) else None


def run_diagnostics(history: pd.DataFrame) -> dict[str, float | None]:
    """The per-run scalars results.csv gets from the diagnostic columns."""
    return {
        GRAD_RATIO: grad_norm_first_over_last(history),
        FINAL_RECOMPUTED: final_val_accuracy_recomputed_bn(history),
        MAX_BN_GAP: max_bn_statistics_gap(history),
    }


def _run_label(cell: Cell, axes: list[str]) -> str:
    return ", ".join(
        f"BN {cell[a]}" if a == "bn" else f"{axis_label(a)} {value_text(cell[a])}" for a in axes if a != "dataset"
    )


def bn_gap_explanation(
    histories: dict[Cell, pd.DataFrame], axes: list[str], tolerance: float = BN_GAP_TOLERANCE
) -> str | None:
    """What the numbers say about moving vs recomputed BN statistics in these runs; None without BN runs that have both.

    The largest gap over all runs and evaluations (with its step and run) and, at each run's last
    evaluation with both values, whether |recomputed - moving| exceeds `tolerance`.
    """
    peak: tuple[float, int, Cell] | None = None
    finals: list[tuple[float, int, Cell]] = []
    for cell, history in histories.items():
        gaps = bn_statistics_gaps(history)
        if gaps.empty:
            continue
        top = int(gaps["gap"].to_numpy().argmax())
        if peak is None or gaps["gap"].iloc[top] > peak[0]:
            peak = (float(gaps["gap"].iloc[top]), int(gaps["step"].iloc[top]), cell)
        finals.append((float(gaps["gap"].iloc[-1]), int(gaps["step"].iloc[-1]), cell))
    if peak is None:
        return None
    largest = (
        f"the largest gap (recomputed − moving) in any run was {peak[0]:+.3f} at step {peak[1]} "
        f"({_run_label(peak[2], axes)})"
    )
    lagging = [f for f in finals if f[0] > tolerance]
    ahead = [f for f in finals if f[0] < -tolerance]
    n = len(finals)
    if lagging:
        worst = max(lagging, key=lambda f: f[0])
        if (worst[1], worst[2]) == (peak[1], peak[2]):
            largest = "no evaluation of any run had a larger gap"
        return (
            f"The moving statistics lag: at the last evaluation, recomputed statistics score more than {tolerance:g} "
            f"higher in {len(lagging)} of {n} BN runs (up to {worst[0]:+.3f}, at step {worst[1]}, "
            f"{_run_label(worst[2], axes)}); {largest}. Validation accuracy with moving statistics understates "
            "what these networks learned."
        )
    if ahead:
        worst = min(ahead, key=lambda f: f[0])
        return (
            f"Recomputed statistics score lower: at the last evaluation, more than {tolerance:g} below the moving "
            f"statistics in {len(ahead)} of {n} BN runs (down to {worst[0]:+.3f}, {_run_label(worst[2], axes)}); "
            f"{largest}."
        )
    closest = max(finals, key=lambda f: abs(f[0]))
    return (
        f"Moving and recomputed statistics agree within {tolerance:g} at the last evaluation of all {n} BN runs "
        f"(largest final gap {closest[0]:+.3f}); {largest}."
    )
