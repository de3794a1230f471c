"""Cell outputs written by hand, with effects planted exactly, for the report's tests.

A fabricated cell has the files a trained cell leaves (metrics.json, history.csv),
with validation accuracy crossing each target at a chosen step, or never, and, when
asked, per-layer gradient norms and a recomputed-BN-statistics accuracy planted exactly.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
from ruamel.yaml import YAML

from pipeline.study.axes import CELL_AXES, set_dotted
from pipeline.study.cells import Cell
from pipeline.study.params import parse_params
from pipeline.study.schema import Params
from tests.helpers import REPO

EVAL_EVERY = 1  # optimizer steps between validation passes: every step, so any step can be planted
BUDGET = 100  # optimizer steps per run


def _shipped() -> dict:
    return YAML(typ="safe", pure=True).load((REPO / "params.yaml").read_text())


def study_params(
    tmp_path: Path, extra_axes: dict[str, list] | None = None, sweep: dict | None = None, **matrix: list
) -> Params:
    """The shipped params.yaml with its matrix replaced by `matrix` (unnamed axes keep one value).

    `extra_axes` adds axes of `train` by their dotted keys, after the five cell axes;
    `sweep` gives the `sweep:` section; none by default (the shipped one is the main study's).
    """
    raw = _shipped()
    raw["matrix"] = {"dataset": ["cifar10"], "activation": ["relu"], "bn": ["off"], "dropout": [0.0], "seed": [0]}
    raw["matrix"].update(matrix)
    raw["matrix"].update(extra_axes or {})
    raw["sweep"] = sweep
    raw["targets"]["cifar10"] = {"val_accuracy": [0.5, 0.6, 0.7], "train_loss": []}
    return parse_params(raw, tmp_path / "params.yaml")


def _accuracy_through(crossings: dict[float, int | None], steps: np.ndarray, budget: int) -> np.ndarray:
    """Accuracy rising through each planted (step, target) point; a missed target stays out of reach."""
    points = sorted((step, target) for target, step in crossings.items() if step is not None)
    missed = [target for target, step in crossings.items() if step is None]
    ceiling = min(missed) - 0.05 if missed else max(crossings) + 0.05
    xs = [0] + [s for s, _ in points] + [max([budget] + [s for s, _ in points])]
    ys = [0.1] + [t for _, t in points] + [ceiling]
    accuracy = np.interp(steps, xs, ys)
    return np.minimum(accuracy, ceiling) if missed else accuracy


def plant_loss_drop(folder: Path, drop_at: int, before: float = 2.0, after: float = 0.1) -> None:
    """Per-step training loss `before` until `drop_at`, then `after`: its trailing mean crosses each level at a known step."""
    steps = pd.read_csv(folder / "steps.csv")
    steps["train_loss"] = [before if s <= drop_at else after for s in steps["step"]]
    steps.to_csv(folder / "steps.csv", index=False)


def write_cell(
    cells_dir: Path,
    *,
    dataset: str = "cifar10",
    activation: str = "relu",
    bn: str = "off",
    dropout: float = 0.0,
    seed: int = 0,
    crossings: dict[float, int | None],
    seconds_per_step: float = 0.1,
    test_accuracy: float | None = 0.7,
    diverged_at: int | None = None,
    extra_axes: dict[str, object] | None = None,
    budget: int = BUDGET,
    grad_norms: dict[str, float | Sequence[float]] | None = None,
    bn_gap: float | Sequence[float] | None = None,
    cell: Cell | None = None,
    settings_changes: dict[str, object] | None = None,
    lr_policy: str | None = None,
    summary_changes: dict[str, object] | None = None,
    recomputed_crossings: dict[float, int | None] | None = None,
) -> Path:
    """A cell whose validation accuracy first reaches each target of `crossings` at the step given (None: never).

    A diverged cell stops at `diverged_at`, with no accuracy after it and no test accuracy.
    `extra_axes` gives the cell's value on each axis of `train` the study adds.
    `grad_norms` (layer -> a value, or one per evaluation, steps 0, 1, ...) adds `grad_norm/<layer>`
    columns in the order given; `bn_gap` adds `val_accuracy_recomputed_bn` = val_accuracy + gap.
    `cell` gives every axis at once, in its order (a sweep cell: `<configuration>-learning_rate_<rate>-<seed>`),
    in place of the axis arguments; `settings_changes` sets training settings that are no axis
    (a sweep's `train.epochs`, a tuned cell's rate); `lr_policy` ("sweep", "tuned") and
    `summary_changes` (e.g. an exact `best_val_accuracy`) go into metrics.json as given.
    `recomputed_crossings` plants `val_accuracy_recomputed_bn` crossing each target where given, as
    `crossings` does for the moving-statistics accuracy.
    """
    if cell is None:
        axes = {
            "dataset": dataset,
            "activation": activation,
            "bn": bn,
            "dropout": dropout,
            "seed": seed,
            **(extra_axes or {}),
        }
        cell = Cell(tuple(axes.items()))
    else:
        axes, dataset = cell.as_dict(), cell.dataset
        extra_axes = {k: v for k, v in axes.items() if k not in CELL_AXES}
    settings = {"train": _shipped()["train"]}
    for key, value in {**(extra_axes or {}), **(settings_changes or {})}.items():
        set_dotted(settings, key, value)
    folder = cells_dir / cell.name
    folder.mkdir(parents=True)
    trained = diverged_at if diverged_at is not None else budget
    steps = np.arange(0, trained + 1, EVAL_EVERY)
    accuracy = _accuracy_through(crossings, steps, budget)
    history = pd.DataFrame(
        {
            "step": steps,
            "epoch": steps / 50,
            "seconds": steps * seconds_per_step,
            "train_loss": 1.0,
            "train_accuracy": accuracy,
            "val_loss": 2.0 - accuracy,
            "val_accuracy": accuracy,
        }
    )
    if bn_gap is not None:
        history["val_accuracy_recomputed_bn"] = accuracy + np.asarray(bn_gap, dtype=float)
    if recomputed_crossings is not None:
        history["val_accuracy_recomputed_bn"] = _accuracy_through(recomputed_crossings, steps, budget)
    for layer, norms in (grad_norms or {}).items():
        history[f"grad_norm/{layer}"] = np.broadcast_to(np.asarray(norms, dtype=float), steps.shape)
    if diverged_at is not None:  # the divergence row measures nothing of the broken model
        history.loc[
            history.index[-1], [c for c in history.columns if c.startswith(("grad_norm/", "val_accuracy_recomputed"))]
        ] = np.nan
    history.to_csv(folder / "history.csv", index=False)
    pd.DataFrame({"step": np.arange(1, trained + 1), "train_loss": 1.0}).to_csv(folder / "steps.csv", index=False)
    summary = {
        "cell": cell.name, "axes": axes, "settings": settings,
        "outcome": "diverged" if diverged_at is not None else "completed", "diverged_at_step": diverged_at,
        "steps_per_epoch": budget // 2, "budget_steps": budget, "steps_trained": trained,
        "train_seconds": trained * seconds_per_step, "throughput_images_per_s": 320.0 / seconds_per_step,
        "throughput_warmup_steps": 10, "best_val_accuracy": float(accuracy.max()),
        "final_val_accuracy": None if diverged_at is not None else float(accuracy[-1]), "final_val_loss": 1.0,
        "val_auc": 0.5, "test_accuracy": None if diverged_at is not None else test_accuracy, "test_loss": 1.0,
        "data_digest": f"digest-{dataset}", "published_data": True, "device": "cpu", "git_commit": "abc",
    }  # fmt: skip
    if lr_policy is not None:
        summary["lr_policy"] = lr_policy
    summary.update(summary_changes or {})
    (folder / "metrics.json").write_text(json.dumps(summary))
    return folder
