"""Validation curves with seed bands, as PNG bytes ready to inline in the page."""

from __future__ import annotations

import io

import matplotlib

matplotlib.use("Agg")  # files only, no display
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402

from pipeline.cells import Cell  # noqa: E402
from pipeline.report.stats import band  # noqa: E402

BN_COLORS = {"off": "#7f7f7f", "pre": "#1f77b4", "post": "#d62728"}


def plot_validation_curves(
    dataset: str, histories: dict[Cell, pd.DataFrame], targets: list[float], column: str = "val_accuracy"
) -> bytes:
    """One panel per activation x dropout; a line per BN placement (mean of seeds) with a min-max band."""
    cells = [c for c in histories if c.dataset == dataset]
    activations = sorted({c.activation for c in cells})
    dropouts = sorted({c.dropout for c in cells})
    fig, axes = plt.subplots(
        len(activations), len(dropouts), figsize=(max(6.4, 4.2 * len(dropouts)), 3.2 * len(activations)),
        squeeze=False, sharex=True, sharey=True, constrained_layout=True,
    )  # fmt: skip
    for row, activation in enumerate(activations):
        for col, dropout in enumerate(dropouts):
            ax = axes[row][col]
            for bn, color in BN_COLORS.items():
                runs = [
                    h
                    for c, h in histories.items()
                    if (c.dataset, c.activation, c.dropout, c.bn) == (dataset, activation, dropout, bn)
                ]
                if not runs:
                    continue
                curve = band(runs, column)
                ax.plot(curve["epoch"], curve["mean"], color=color, label=f"bn {bn} (n={len(runs)})")
                ax.fill_between(curve["epoch"], curve["low"], curve["high"], color=color, alpha=0.2, linewidth=0)
            for target in targets:
                ax.axhline(target, color="black", linewidth=0.6, linestyle=":")
            ax.set_title(f"{activation}, dropout {dropout:g}", fontsize=10)
            ax.grid(alpha=0.3)
            if row == len(activations) - 1:
                ax.set_xlabel("epoch")
            if col == 0:
                ax.set_ylabel(column.replace("_", " "))
    axes[0][0].legend(fontsize=8, loc="lower right")
    fig.suptitle(dataset, fontsize=11)
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=90, metadata={"Software": None})
    plt.close(fig)
    return buffer.getvalue()
