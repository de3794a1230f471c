"""What a study ran, in words read from its runs: data, input scaling, augmentation, budget, training settings.

Every answer on a page holds for these conditions only, so the page states them where the answers
begin: the images in each split (as each run recorded them), how the inputs were scaled, the
augmentation, the budget in steps, and the training settings that are not axes.
"""

from __future__ import annotations

import pandas as pd

from pipeline.report.collect import DATA_SIZES
from pipeline.report.tables import value_text

LEARNING_RATE = "train.optimizer.learning_rate"
SCALING_WORDS = {
    "standardize": "standardized inputs (the training split's per-channel mean and std)",
    "unit_range": "inputs scaled to [0, 1] (pixels / 255)",
    "l2_axis1": "inputs as keras.utils.normalize(x, axis=1) (each image's columns to unit L2 norm)",
    "raw": "raw 0-255 pixels",
}
EPSILON_WORDS = {"in_sqrt": "", "after_sqrt": " with Keras 2's epsilon, lr·g / (√a + ε)"}


def _values(results: pd.DataFrame, column: str) -> str:
    """The distinct values of a column, in their own order (0.001 before 0.01, 32 before 128)."""
    return ", ".join(value_text(v) for v in sorted(results[column].dropna().unique()))


def _span(values: pd.Series) -> str:
    """ "1400", or "700–1400" where runs differ (a batch-size or epochs axis)."""
    low, high = int(values.min()), int(values.max())
    return f"{low}" if low == high else f"{low}–{high}"


def _sizes(runs: pd.DataFrame) -> str | None:
    """ "45,000 / 5,000 / 10,000": a dataset's training, validation and test images; None where not recorded."""
    if not all(c in runs and runs[c].notna().all() for c in DATA_SIZES):
        return None
    return " / ".join(f"{int(runs[c].max()):,}" for c in DATA_SIZES)


def data_text(results: pd.DataFrame) -> str:
    """The images per split of each dataset as the runs recorded them, and the input scaling."""
    sizes = {dataset: _sizes(runs) for dataset, runs in results.groupby("dataset", sort=False)}
    if any(sizes.values()):
        counts = " and ".join(f"{d} {n or '(not recorded)'}" for d, n in sizes.items())
        counts += " training / validation / test images"
    else:
        counts = "image counts not recorded by these runs"
    scaling = ", ".join(SCALING_WORDS.get(s, s) for s in sorted(results["input_scaling"].dropna().unique()))
    return f"{counts}, {scaling}"


def augmentation_text(results: pd.DataFrame) -> str:
    words = []
    if results.get("train.augmentation.horizontal_flip", pd.Series(dtype=bool)).fillna(False).astype(bool).any():
        words.append("horizontal flips")
    for column, what, unit in (
        ("train.augmentation.shear_degrees", "shear", "°"),
        ("train.augmentation.zoom", "zoom", ""),
    ):
        if column in results and (results[column].fillna(0) > 0).any():
            words.append(f"{what} ±{_values(results, column)}{unit}")
    return "augmentation: " + (", ".join(words) if words else "none")


def setup_text(results: pd.DataFrame, axes: list[str]) -> str:
    """The conditions every answer holds under: data, scaling, augmentation, settings that are no axes, budget."""

    def setting(column: str, label: str) -> str:
        return f"{label} per cell (an axis)" if column in axes else f"{label} {_values(results, column)}"

    budgets = ", ".join(
        f"{d} {_span(group['budget_steps'])} steps" for d, group in results.groupby("dataset", sort=False)
    )
    placement = "train.optimizer.epsilon_placement"
    epsilon = (
        "".join(EPSILON_WORDS.get(v, "") for v in results[placement].dropna().unique()) if placement in results else ""
    )
    return (
        f"{data_text(results)}; {augmentation_text(results)}; "
        f"{setting('train.architecture', 'architecture')}, {setting('train.optimizer.name', 'optimizer')}{epsilon}, "
        f"{setting(LEARNING_RATE, 'learning rate')}, {setting('train.bn_momentum', 'BN momentum')}, "
        f"{setting('train.epochs', 'epochs')}, {setting('train.batch_size', 'batch size')} ({budgets})"
    )
