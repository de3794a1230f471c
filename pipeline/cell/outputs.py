"""A cell's output folder, written by the train stage and read by the report.

metrics.json  the cell (name, axes, effective settings), its outcome and summary metrics
history.csv   one row per evaluation, several per epoch (denser early): losses, accuracies, gradient norms
steps.csv     one row per optimizer step: step, train_loss (that step's mini-batch loss)
curves.png    accuracy and loss against epochs, for a look at one cell
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from pipeline.errors import UserError

METRICS, HISTORY, STEPS, CURVES = "metrics.json", "history.csv", "steps.csv", "curves.png"


@dataclass(frozen=True)
class CellOutputs:
    summary: dict  # the contents of metrics.json
    history: pd.DataFrame
    steps: pd.DataFrame  # step, train_loss

    @property
    def name(self) -> str:
        return self.summary["cell"]


def _strict_json(summary: dict) -> str:
    # NaN/inf (a diverged cell's loss) become null: strict JSON for every reader.
    clean = {k: None if isinstance(v, float) and not math.isfinite(v) else v for k, v in summary.items()}
    return json.dumps(clean, indent=2, sort_keys=True, allow_nan=False) + "\n"


def _plot_curves(history: pd.DataFrame, title: str, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (acc_ax, loss_ax) = plt.subplots(1, 2, figsize=(9, 3.2), constrained_layout=True)
    for split in ("train", "val"):
        acc_ax.plot(history["epoch"], history[f"{split}_accuracy"], label=split)
        loss_ax.plot(history["epoch"], history[f"{split}_loss"], label=split)
    acc_ax.set(xlabel="epoch", ylabel="accuracy", title=title)
    loss_ax.set(xlabel="epoch", ylabel="loss")
    acc_ax.legend()
    fig.savefig(path, dpi=80, metadata={"Software": None})  # no version stamp: same bytes
    plt.close(fig)


def write_cell_outputs(out_dir: Path, outputs: CellOutputs) -> list[Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = [out_dir / METRICS, out_dir / HISTORY, out_dir / STEPS, out_dir / CURVES]
    paths[0].write_text(_strict_json(outputs.summary), encoding="utf-8")
    outputs.history.to_csv(paths[1], index=False, float_format="%.6g")
    outputs.steps.to_csv(paths[2], index=False, float_format="%.6g")
    _plot_curves(outputs.history, outputs.name, paths[3])
    return paths


def read_cell_outputs(out_dir: Path) -> CellOutputs:
    try:
        summary = json.loads((out_dir / METRICS).read_text(encoding="utf-8"))
        history = pd.read_csv(out_dir / HISTORY)
        steps = pd.read_csv(out_dir / STEPS)
    except (OSError, ValueError) as error:
        raise UserError(
            f"{out_dir}: unreadable cell outputs ({error}); delete the folder and run `dvc repro`"
        ) from None
    if "cell" not in summary:
        raise UserError(f"{out_dir / METRICS}: written by an older bnbench (no cell name); run `dvc repro` again")
    return CellOutputs(summary, history, steps)


def find_cell_outputs(cells_dir: Path) -> list[Path]:
    """Every folder under `cells_dir` that holds a cell's metrics."""
    return sorted(path.parent for path in cells_dir.glob(f"*/{METRICS}"))
