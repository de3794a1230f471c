"""Stage `train`: train and evaluate one matrix cell.

Reads:  <data>/ as written by prepare; params `train` (architecture, optimizer, budget)
        and `targets` (only for the MLflow summary; the report recomputes them).
Writes: <out>/metrics.json (outcome and summary metrics), <out>/history.csv (one row
        per validation pass, several per epoch) and <out>/curves.png; logs the same
        to MLflow as a child run of the study.
Run:    python -m pipeline.train --data data/prepared/cifar10 --dataset cifar10 \
            --activation relu --bn post --dropout 0 --seed 0 --out results/cells/<name>
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import keras
import numpy as np
import pandas as pd

from pipeline.cells import Cell, expand_matrix
from pipeline.convergence import validation_auc
from pipeline.data.prepared import PreparedData, load_prepared
from pipeline.device import check_device
from pipeline.errors import UserError, run_cli
from pipeline.models import ModelSpec, build_model
from pipeline.params import OptimizerParams, TrainParams, load_params
from pipeline.provenance import git_commit
from pipeline.seeding import seed_everything

EVAL_BATCH_SIZE = 512  # inference only: larger batches, same numbers
WARMUP_STEPS = 10  # steps excluded from throughput: graph tracing and compilation happen here
_CLIP = 1e-7  # the probability clip Keras applies in its cross-entropy


@dataclass
class CellResult:
    history: pd.DataFrame  # one row per validation pass, the first at step 0
    summary: dict[str, object]
    model: keras.Model


def build_optimizer(settings: OptimizerParams) -> keras.optimizers.Optimizer:
    if settings.name == "sgd":
        return keras.optimizers.SGD(settings.learning_rate, momentum=settings.momentum, nesterov=settings.nesterov)
    if settings.name == "rmsprop":
        return keras.optimizers.RMSprop(settings.learning_rate, momentum=settings.momentum)
    return keras.optimizers.Adam(settings.learning_rate)


def evaluate(model: keras.Model, images: np.ndarray, labels: np.ndarray) -> tuple[float, float] | None:
    """(loss, accuracy) in inference mode: BN uses its moving statistics, dropout is off.

    None when the model's outputs are not all finite: a broken model has no accuracy
    (an argmax over NaN probabilities would invent class 0). Uses predict, not
    evaluate, so that a pass in the middle of an epoch leaves the running training
    metrics alone.
    """
    probs = model.predict(images, batch_size=EVAL_BATCH_SIZE, verbose=0)
    if not np.isfinite(probs).all():
        return None
    picked = np.clip(probs[np.arange(len(labels)), labels], _CLIP, 1.0)
    loss = float(-np.mean(np.log(picked)))
    accuracy = float(np.mean(np.argmax(probs, axis=1) == labels))
    return loss, accuracy


def weights_are_finite(model: keras.Model) -> bool:
    """Whether every weight, BN's moving statistics included, is a finite number.

    Checked on the weights themselves, not only on the loss: a clipped loss can stay
    finite while the weights are already NaN.
    """
    return all(bool(keras.ops.all(keras.ops.isfinite(weight))) for weight in model.weights)


def throughput_images_per_s(step_seconds: list[float], step_images: list[int], warmup_steps: int) -> float | None:
    """Training images per second after the first `warmup_steps` steps (tracing and compilation).

    None when training stopped before any step past the warm-up.
    """
    seconds = sum(step_seconds[warmup_steps:])
    if seconds <= 0:
        return None
    return sum(step_images[warmup_steps:]) / seconds


def eval_steps_in_epoch(steps_per_epoch: int, evals_per_epoch: int) -> set[int]:
    """Steps (1-based, within an epoch) after which validation runs; always includes the last."""
    count = min(evals_per_epoch, steps_per_epoch)
    return {math.ceil(steps_per_epoch * k / count) for k in range(1, count + 1)}


class ValidationSchedule(keras.callbacks.Callback):
    """Validates several times per epoch, times the training steps and stops at divergence.

    Divergence (a NaN/inf training loss, non-finite weights, or non-finite outputs on
    the validation set) ends training. It is recorded as a last history row at the
    step it was seen, with no accuracy: none is invented after it.
    """

    def __init__(
        self,
        data: PreparedData,
        batch_size: int,
        evals_per_epoch: int,
        on_eval: Callable[[dict], None],
        clock: Callable[[], float],
    ):
        super().__init__()
        self.data = data
        self.batch_size = batch_size
        self.steps_per_epoch = math.ceil(len(data.train.labels) / batch_size)
        self.eval_points = eval_steps_in_epoch(self.steps_per_epoch, evals_per_epoch)
        self.on_eval = on_eval
        self.clock = clock
        self.rows: list[dict] = []
        self.step_seconds: list[float] = []
        self.step_images: list[int] = []
        self.step = 0
        self.diverged_at: int | None = None
        self._step_began = 0.0

    def _record(self, train_loss: float | None, train_accuracy: float | None, measured) -> None:
        val_loss, val_accuracy = measured if measured is not None else (None, None)
        row = {
            "step": self.step,
            "epoch": self.step / self.steps_per_epoch,
            "seconds": float(sum(self.step_seconds)),
            "train_loss": train_loss,  # running mean over the epoch so far, as Keras reports it
            "train_accuracy": train_accuracy,
            "val_loss": val_loss,
            "val_accuracy": val_accuracy,
        }
        self.rows.append(row)
        self.on_eval(row)

    def mark_diverged(self, train_loss: float | None = None) -> None:
        self.diverged_at = self.step
        self.model.stop_training = True
        self._record(train_loss, None, None)

    def _validate(self, train_loss: float | None, train_accuracy: float | None) -> None:
        measured = evaluate(self.model, self.data.val.images, self.data.val.labels)
        if measured is None or not weights_are_finite(self.model):
            self.mark_diverged(train_loss)
            return
        self._record(train_loss, train_accuracy, measured)

    def on_train_begin(self, logs=None):
        self._validate(None, None)

    def on_train_batch_begin(self, batch, logs=None):
        self._step_began = self.clock()

    def on_train_batch_end(self, batch, logs=None):
        loss = float(logs["loss"])  # reading the value also waits for the step to finish
        self.step_seconds.append(self.clock() - self._step_began)
        # The last batch of an epoch holds what is left of the training set.
        self.step_images.append(min(self.batch_size, len(self.data.train.labels) - batch * self.batch_size))
        self.step += 1
        if not math.isfinite(loss):
            self.mark_diverged(loss)
        elif (batch + 1) in self.eval_points:
            self._validate(loss, float(logs["accuracy"]))


def _finite_or_none(value: float) -> float | None:
    return float(value) if value is not None and math.isfinite(value) else None


def train_cell(
    settings: TrainParams,
    cell: Cell,
    data: PreparedData,
    on_eval: Callable[[dict], None] = lambda row: None,
    clock: Callable[[], float] = time.perf_counter,
) -> CellResult:
    """Train one cell from scratch and measure it; touches no files.

    The test set is used exactly once, after training, and not at all after a
    divergence, which ends training early with the outcome "diverged" instead of
    an exception. `clock` times the training steps (seconds, monotonic).
    """
    seed_everything(cell.seed)
    spec = ModelSpec(
        architecture=settings.architecture,
        activation=cell.activation,
        bn=cell.bn,
        dropout=cell.dropout,
        bn_momentum=settings.bn_momentum,
        bn_epsilon=settings.bn_epsilon,
    )
    model = build_model(spec, data.input_shape, data.num_classes)
    # jit_compile=False: XLA's MaxPool gradient is not deterministic on GPU.
    model.compile(
        optimizer=build_optimizer(settings.optimizer),
        loss="sparse_categorical_crossentropy",
        metrics=["accuracy"],
        jit_compile=False,
    )
    schedule = ValidationSchedule(data, settings.batch_size, settings.evals_per_epoch, on_eval, clock)
    model.fit(
        data.train.images,
        data.train.labels,
        batch_size=settings.batch_size,
        epochs=settings.epochs,
        shuffle=True,
        verbose=0,
        callbacks=[schedule],
    )
    test = None
    if schedule.diverged_at is None:
        test = evaluate(model, data.test.images, data.test.labels)
        if test is None:  # finite on validation, not on the test set: still no accuracy to report
            schedule.mark_diverged()
    history = pd.DataFrame(schedule.rows)
    budget = schedule.steps_per_epoch * settings.epochs
    best = history["val_accuracy"].idxmax() if history["val_accuracy"].notna().any() else None
    summary = {
        **cell.as_dict(),
        "outcome": "completed" if schedule.diverged_at is None else "diverged",
        "diverged_at_step": schedule.diverged_at,
        "steps_per_epoch": schedule.steps_per_epoch,
        "budget_steps": budget,
        "steps_trained": schedule.step,
        "train_seconds": float(sum(schedule.step_seconds)),
        "throughput_images_per_s": throughput_images_per_s(schedule.step_seconds, schedule.step_images, WARMUP_STEPS),
        "throughput_warmup_steps": WARMUP_STEPS,
        # Best before any divergence: those evaluations were of a sound model.
        "best_val_accuracy": float(history.loc[best, "val_accuracy"]) if best is not None else None,
        "best_val_step": int(history.loc[best, "step"]) if best is not None else None,
        # The last validation pass: null for a diverged cell.
        "final_val_accuracy": _finite_or_none(history["val_accuracy"].iloc[-1]),
        "final_val_loss": _finite_or_none(history["val_loss"].iloc[-1]),
        "val_auc": validation_auc(history, budget),
        "test_accuracy": test[1] if test else None,
        "test_loss": test[0] if test else None,
        "parameters": int(model.count_params()),
        "data_digest": data.meta["data_digest"],
        "published_data": data.meta["published_data"],
    }
    return CellResult(history=history, summary=summary, model=model)


def plot_curves(history: pd.DataFrame, title: str, path: Path) -> None:
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
    fig.savefig(path, dpi=80, metadata={"Software": None})
    plt.close(fig)


def write_cell_outputs(result: CellResult, out_dir: Path, title: str) -> list[Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = [out_dir / "metrics.json", out_dir / "history.csv", out_dir / "curves.png"]
    # NaN/inf (a diverged cell's loss) become null: strict JSON for every reader.
    summary = {k: None if isinstance(v, float) and not math.isfinite(v) else v for k, v in result.summary.items()}
    paths[0].write_text(json.dumps(summary, indent=2, sort_keys=True, allow_nan=False) + "\n", encoding="utf-8")
    result.history.to_csv(paths[1], index=False, float_format="%.6g")
    plot_curves(result.history, title, paths[2])
    return paths


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--params", type=Path, default=Path("params.yaml"))
    parser.add_argument("--data", type=Path, required=True, help="prepared dataset directory")
    parser.add_argument("--dataset", required=True)
    parser.add_argument("--activation", required=True)
    parser.add_argument("--bn", required=True)
    parser.add_argument("--dropout", type=float, required=True)
    parser.add_argument("--seed", type=int, required=True)
    parser.add_argument("--out", type=Path, required=True)
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    from pipeline import tracking  # MLflow only where it is used: train_cell stays importable without it

    args = parse_args(argv)
    params = load_params(args.params)
    cell = Cell(args.dataset, args.activation, args.bn, args.dropout, args.seed)
    if cell not in expand_matrix(params.matrix):
        raise UserError(f"cell {cell.name} is not in the matrix of {args.params}")
    if not (args.data / "meta.json").is_file():
        raise UserError(f"{args.data}: no prepared data; run `dvc repro prepare@{args.dataset}` first")
    tracking.check_reachable(tracking.tracking_uri())  # seconds now, not after the training
    device = check_device()
    data = load_prepared(args.data)
    with tracking.track_cell(params, cell, data.meta, device) as run:
        result = train_cell(params.train, cell, data, on_eval=run.log_eval)
        result.summary.update(device=device, git_commit=git_commit())
        paths = write_cell_outputs(result, args.out, title=cell.name)
        run.finish(result, paths)
    s = result.summary
    if s["outcome"] == "diverged":
        print(f"train: {cell.name}: diverged at step {s['diverged_at_step']}, {s['train_seconds']:.0f} s")
    else:
        print(
            f"train: {cell.name}: completed, val {s['final_val_accuracy']:.3f}, "
            f"test {s['test_accuracy']:.3f}, {s['train_seconds']:.0f} s"
        )
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main))
