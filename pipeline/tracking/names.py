"""What MLflow shows of a run: its name, and the keys its metrics go under.

A cell's run name leads with what differs between the study's cells, so that the runs table, which
cuts long names short, still tells them apart: `relu·post·d0.0·s1 · cifar10`. Axes with one value in
the study are left out (the run's params and tags carry every axis); the seed stays, since it is what
tells the repeats of one configuration apart; the dataset comes last.

Metric keys carry a prefix before '/', which MLflow's UI turns into one section of charts per prefix,
in alphabetical order: the training curves first (`curves/`), then the per-layer gradient norms
(`gradients/`), the evaluation's epoch and seconds (`progress/`), and one point per cell for every
number measured once (`summary/`: test accuracy, times to the targets, parameter count, budget).
"""

from __future__ import annotations

from pipeline.study.axes import format_value
from pipeline.study.cells import Cell
from pipeline.study.schema import LEARNING_RATE, Params

STEP_LOSS_METRIC = "curves/train_loss_step"  # the per-step training loss, one value per optimizer step
CURVES, GRADIENTS, PROGRESS, SUMMARY = "curves/", "gradients/", "progress/", "summary/"
HISTORY_GRADIENTS = "grad_norm/"  # how a cell's history names a layer's gradient norm (pipeline/cell/training.py)
PROGRESS_COLUMNS = ("epoch", "seconds")  # where an evaluation fell, rather than what it measured

# Values that read as numbers need their axis beside them; activations and BN placements read alone.
AXIS_PREFIXES = {"dropout": "d", "seed": "s", LEARNING_RATE: "lr"}
NAME_SEPARATOR, DATASET_SEPARATOR = "·", " · "


def curve_key(column: str) -> str:
    """The MLflow key of a history column: `val_accuracy` -> `curves/val_accuracy`, `grad_norm/conv1` -> `gradients/conv1`."""
    if column.startswith(HISTORY_GRADIENTS):
        return GRADIENTS + column[len(HISTORY_GRADIENTS) :]
    if column in PROGRESS_COLUMNS:
        return PROGRESS + column
    return CURVES + column


def summary_key(name: str) -> str:
    """The MLflow key of a number measured once per cell: `test_accuracy` -> `summary/test_accuracy`."""
    return SUMMARY + name


def _axis_part(key: str, value: object) -> str:
    prefix = AXIS_PREFIXES.get(key, "" if "." not in key else key.rsplit(".", 1)[-1] + "=")
    return f"{prefix}{format_value(value)}"


def varied_axes(params: Params, lr_policy: str = "fixed") -> set[str]:
    """The axes with more than one value in the study; a sweep's learning rate too, when it tries several."""
    varied = {key for key, values in params.matrix.items() if len(set(map(str, values))) > 1}
    if lr_policy == "sweep" and params.sweep is not None and len(params.sweep.learning_rates) > 1:
        varied.add(LEARNING_RATE)
    return varied


def run_name(params: Params, cell: Cell, lr_policy: str = "fixed") -> str:
    """`relu·post·d0.0·s1 · cifar10`: the axes that differ, the seed, then the dataset; `· sweep` or `· tuned` after."""
    varied = varied_axes(params, lr_policy)
    parts = [_axis_part(k, v) for k, v in cell.axes if k != "dataset" and (k in varied or k == "seed")]
    name = NAME_SEPARATOR.join(parts) + DATASET_SEPARATOR + cell.dataset
    return name if lr_policy == "fixed" else name + DATASET_SEPARATOR + lr_policy
