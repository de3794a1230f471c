"""Train and measure one cell in memory: the model, the validation schedule, the test pass.

A library: no files, no tracking. `pipeline.run_cell` wraps it with data, outputs
and MLflow; the `train` stage and any runner call that.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass

import keras
import numpy as np
import pandas as pd

from pipeline.convergence import history_metrics
from pipeline.data.prepared import PreparedData
from pipeline.models import build_model, model_spec
from pipeline.optimizers import build_optimizer
from pipeline.params import CellSettings
from pipeline.seeding import seed_everything

EVAL_BATCH_SIZE = 512  # inference only: larger batches, same numbers
WARMUP_STEPS = 10  # steps excluded from throughput: graph tracing and compilation happen here
_CLIP = 1e-7  # the probability clip Keras applies in its cross-entropy


@dataclass
class CellResult:
    history: pd.DataFrame  # one row per validation pass, the first at step 0
    summary: dict[str, object]
    model: keras.Model


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


def train_cell(
    settings: CellSettings,
    data: PreparedData,
    on_eval: Callable[[dict], None] = lambda row: None,
    clock: Callable[[], float] = time.perf_counter,
) -> CellResult:
    """Train one cell from scratch and measure it; touches no files.

    The test set is used exactly once, after training, and not at all after a
    divergence, which ends training early with the outcome "diverged" instead of
    an exception. `clock` times the training steps (seconds, monotonic).
    """
    train = settings.train
    seed_everything(settings.seed)
    spec = model_spec(settings)
    model = build_model(spec, data.input_shape, data.num_classes)
    # jit_compile=False: XLA's MaxPool gradient is not deterministic on GPU.
    model.compile(
        optimizer=build_optimizer(train.optimizer),
        loss="sparse_categorical_crossentropy",
        metrics=["accuracy"],
        jit_compile=False,
    )
    schedule = ValidationSchedule(data, train.batch_size, train.evals_per_epoch, on_eval, clock)
    model.fit(
        data.train.images,
        data.train.labels,
        batch_size=train.batch_size,
        epochs=train.epochs,
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
    budget = schedule.steps_per_epoch * train.epochs
    summary = {
        "outcome": "completed" if schedule.diverged_at is None else "diverged",
        "diverged_at_step": schedule.diverged_at,
        "steps_per_epoch": schedule.steps_per_epoch,
        "budget_steps": budget,
        "steps_trained": schedule.step,
        "train_seconds": float(sum(schedule.step_seconds)),
        "throughput_images_per_s": throughput_images_per_s(schedule.step_seconds, schedule.step_images, WARMUP_STEPS),
        "throughput_warmup_steps": WARMUP_STEPS,
        **history_metrics(history, budget),
        "test_accuracy": test[1] if test else None,
        "test_loss": test[0] if test else None,
        "parameters": int(model.count_params()),
    }
    return CellResult(history=history, summary=summary, model=model)
