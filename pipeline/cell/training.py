"""Train and measure one cell in memory: the model, the evaluation schedule, the test pass.

A library: no files, no tracking. `pipeline.cell.run` wraps it with data, outputs
and MLflow; the `train` stage and any runner call that.

How a cell is measured
- Data order: each epoch visits the training set in a permutation drawn from
  `numpy.random.default_rng(seed)`, the same for every configuration with that seed;
  weight init and dropout masks come from the same seed (`seed_everything`).
- Training runs in segments, one `model.fit(epochs=1, shuffle=False)` per stretch
  between two evaluation points; a segment never crosses an epoch boundary, so each
  epoch's last batch holds what is left of the training set. No callback runs per
  step, so nothing waits for the device between the steps of a segment.
- Per-step training loss: a metric (`StepLosses`) recomputes each step's mini-batch
  sparse categorical cross-entropy from the step's labels and predictions (the
  compiled loss, without Keras' running mean) into a device-side buffer, read once
  after each segment. It is written to `CellResult.steps` (step, train_loss).
- Evaluation points (`evaluation_steps`): within each epoch, `evals_per_epoch` evenly
  spread steps, the epoch's last step included; with `early_evals`, also steps 1, 2,
  4, 8, ... of the first epoch while the doubled step still fits before the first
  regular point (2k <= first regular step), so convergence in the first steps is
  resolved. Step 1 always ends a segment of its own, evaluated or not.
- At each evaluation: validation loss/accuracy in inference mode (BN moving
  statistics). The probes, at step 0, at every `probe_every`-th evaluation after it and
  at the last planned one (`probes_at`; the rows between leave their columns empty):
  for BN cells `val_accuracy_recomputed_bn`, the accuracy with BN
  statistics re-estimated on a fixed training sample of `bn_probe` images
  (pipeline/cell/precise_bn.py); per-layer kernel gradient norms `grad_norm/<layer>` on a
  fixed probe batch of `gradient_probe` training images (pipeline/cell/gradients.py), both
  compiled once per cell; and
  in the row, `train_loss`/`train_accuracy` over the steps since the previous
  evaluation (training mode). None of these changes the model.
- Divergence: the first non-finite per-step loss (its step, from the buffer), or
  non-finite weights or validation outputs at an evaluation, ends training; a last
  history row at that step carries no accuracy, and nothing is measured after it.
- Timing (`clock`, read once before and once after each segment): the first
  segment, step 1 with the graph tracing and compilation, is `compile_seconds`;
  `train_seconds` and the history's `seconds` count the later segments only,
  evaluation excluded; throughput is their images over their time.
- Resuming (`checkpoints`, optional): at the end of each epoch, after its evaluation,
  the training state (`TrainingState`: every variable of the model and the optimizer,
  the data-order generator, what was measured so far) goes to `checkpoints.save`; a
  cell whose `checkpoints.load` returns a state goes on from it, replays its history
  rows to `on_eval`, and ends with the same history, steps and summary as a run that
  was never stopped (on CPU), but for the timing: its first segment after the resume
  compiles again, uncounted as such, so `resumed_from_step` is set and
  `timing_comparable` is false.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

import keras
import numpy as np
import pandas as pd

from pipeline.cell import backend
from pipeline.cell.convergence import history_metrics
from pipeline.cell.gradients import GradientNorms
from pipeline.cell.models import build_model, model_spec
from pipeline.cell.optimizers import build_optimizer
from pipeline.cell.precise_bn import PreciseBN, has_batch_norm
from pipeline.cell.seeding import seed_everything
from pipeline.data.prepared import PreparedData
from pipeline.study.schema import CellSettings

EVAL_BATCH_SIZE = 512  # inference only: larger batches, same numbers
COMPILE_STEPS = 1  # steps timed apart as compile_seconds: graph tracing and compilation happen in the first
_CLIP = 1e-7  # the probability clip Keras applies in its cross-entropy
_PROBE_STREAM = 1  # the probe sample is drawn from its own stream of the cell's seed, apart from the data order


@dataclass
class CellResult:
    history: pd.DataFrame  # one row per evaluation, the first at step 0
    steps: pd.DataFrame  # one row per optimizer step: step (1-based), train_loss of that step's mini-batch
    summary: dict[str, object]
    model: keras.Model


@dataclass
class TrainingState:
    """A cell's training at the end of an epoch: everything it needs to go on as if it had never stopped."""

    step: int  # optimizer steps done: a whole number of epochs
    # model.variables in order: weights, BN moving statistics, the seed-generator states of the
    # dropout and augmentation layers (their masks and draws go on where they stopped)
    model_variables: list[np.ndarray]
    optimizer_variables: list[np.ndarray]  # its step counter, learning rate and slots (RMSprop's velocities, ...)
    data_order: dict  # the state of the numpy generator that draws each epoch's permutation
    measured: dict  # Measurements.state(): history rows, per-step losses, step counters, time so far


class Checkpoints(Protocol):
    """Where a cell keeps its training state between epochs (pipeline/cell/checkpoints.py keeps it in a file)."""

    def load(self) -> TrainingState | None: ...

    def save(self, state: TrainingState) -> None: ...


class StepLosses(keras.metrics.Metric):
    """Each step's mini-batch loss, kept on the device: losses[i] is the i-th step since the last reset.

    Keras resets metrics at the start of every `fit` epoch, so with one segment per
    `fit(epochs=1)` call the buffer holds that segment's steps; `capacity` bounds a
    segment's length (the steps of an epoch).
    """

    def __init__(self, capacity: int, name: str = "step_losses", **kwargs):
        super().__init__(name=name, **kwargs)
        self.losses = self.add_variable(shape=(capacity,), initializer="zeros", dtype="float32", name="losses")
        self.count = self.add_variable(shape=(), initializer="zeros", dtype="int32", name="count")

    def update_state(self, y_true, y_pred, sample_weight=None):
        loss = keras.ops.mean(keras.losses.sparse_categorical_crossentropy(y_true, y_pred))
        # `.value`: the variables' tensors (JAX's traced, stateless ones under jit), not the Variable objects
        losses, count = self.losses.value, self.count.value
        at = keras.ops.reshape(count, (1,))
        self.losses.assign(keras.ops.slice_update(losses, at, keras.ops.reshape(keras.ops.cast(loss, "float32"), (1,))))
        self.count.assign(count + 1)

    def result(self):
        return keras.ops.cast(self.count, "float32")

    def reset_state(self):
        self.count.assign(0)

    def read(self, steps: int) -> np.ndarray:
        """The first `steps` losses since the last reset: one read from the device."""
        return keras.ops.convert_to_numpy(self.losses)[:steps].astype(float)


def evaluate(model: keras.Model, images: np.ndarray, labels: np.ndarray) -> tuple[float, float] | None:
    """(loss, accuracy) in inference mode: BN uses its moving statistics, dropout is off.

    None when the model's outputs are not all finite: a broken model has no accuracy
    (an argmax over NaN probabilities would invent class 0).
    """
    probs = model.predict(images, batch_size=EVAL_BATCH_SIZE, verbose=0)
    return _scored(probs, labels)


def _scored(probs: np.ndarray, labels: np.ndarray) -> tuple[float, float] | None:
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


def eval_steps_in_epoch(steps_per_epoch: int, evals_per_epoch: int) -> set[int]:
    """Steps (1-based, within an epoch) after which validation runs; always includes the last."""
    count = min(evals_per_epoch, steps_per_epoch)
    return {math.ceil(steps_per_epoch * k / count) for k in range(1, count + 1)}


def evaluation_steps(steps_per_epoch: int, evals_per_epoch: int, epochs: int, early: bool) -> list[int]:
    """Global steps (1-based) after which evaluation runs, in order.

    Regular: `eval_steps_in_epoch` in every epoch. Early (`early`): 1, 2, 4, ... while
    twice the step is still at most the first regular step, e.g. 1, 2 before 4, 7, 10.
    """
    regular = {
        epoch * steps_per_epoch + s
        for epoch in range(epochs)
        for s in eval_steps_in_epoch(steps_per_epoch, evals_per_epoch)
    }
    first = min(regular)
    doubling, k = set(), 1
    while early and 2 * k <= first:
        doubling.add(k)
        k *= 2
    return sorted(regular | doubling)


def probes_at(step: int, eval_steps: list[int], every: int) -> bool:
    """Whether the evaluation after `step` takes the probes: every `every`-th, counting step 0's as the 0th, and the last."""
    return step == eval_steps[-1] or (eval_steps.index(step) + 1) % every == 0


def _segments(eval_steps: list[int], steps_per_epoch: int) -> list[tuple[int, int]]:
    """(first, last) global steps of each segment: they end at step 1, at each evaluation and at each epoch's end."""
    ends = sorted({COMPILE_STEPS, *eval_steps, *range(steps_per_epoch, max(eval_steps) + 1, steps_per_epoch)})
    return [(start + 1, end) for start, end in zip([0, *ends[:-1]], ends, strict=True)]


def throughput_images_per_s(images: int, seconds: float) -> float | None:
    """Training images per second after the compile step; None when no time was measured after it."""
    return images / seconds if seconds > 0 else None


class Measurements:
    """What a cell measures as it trains: the history rows, the per-step losses, divergence and time."""

    def __init__(
        self,
        model: keras.Model,
        data: PreparedData,
        steps_per_epoch: int,
        probe_images: np.ndarray,
        probe_labels: np.ndarray,
        bn_images: np.ndarray,
        on_eval: Callable[[dict], None],
    ):
        self.model = model
        self.data = data
        self.steps_per_epoch = steps_per_epoch
        self.probe_images, self.probe_labels, self.bn_images = probe_images, probe_labels, bn_images
        self.on_eval = on_eval
        # the probes, each compiled once for this model (pipeline/cell/backend.py: compiled)
        self.precise_bn = PreciseBN(model) if has_batch_norm(model) and len(bn_images) else None
        self.gradient_norms = GradientNorms(model) if len(probe_images) else None
        self.rows: list[dict] = []
        self.step_losses: list[float] = []
        self.step = 0
        self.diverged_at: int | None = None
        self.seconds = 0.0  # training time after the compile step, evaluation excluded
        self.compile_seconds = 0.0
        self.images_after_compile = 0
        self._last_eval_step = 0

    def _since_last_eval(self) -> float | None:
        losses = self.step_losses[self._last_eval_step : self.step]
        return float(np.mean(losses)) if losses else None

    def _record(self, train_accuracy: float | None, extra: dict) -> None:
        row = {
            "step": self.step,
            "epoch": self.step / self.steps_per_epoch,
            "seconds": self.seconds,
            "train_loss": self._since_last_eval(),  # mean of the per-step losses since the previous evaluation
            "train_accuracy": train_accuracy,
            **extra,
        }
        self._last_eval_step = self.step
        self.rows.append(row)
        self.on_eval(row)

    def state(self) -> dict:
        """What was measured so far, for a checkpoint: plain numbers and lists."""
        return {
            "rows": [dict(row) for row in self.rows],
            "step_losses": list(self.step_losses),
            "step": self.step,
            "seconds": self.seconds,
            "compile_seconds": self.compile_seconds,
            "images_after_compile": self.images_after_compile,
            "last_eval_step": self._last_eval_step,
        }

    def restore(self, state: dict) -> None:
        self.rows = [dict(row) for row in state["rows"]]
        self.step_losses = [float(loss) for loss in state["step_losses"]]
        self.step = int(state["step"])
        self.seconds = float(state["seconds"])
        self.compile_seconds = float(state["compile_seconds"])
        self.images_after_compile = int(state["images_after_compile"])
        self._last_eval_step = int(state["last_eval_step"])

    def mark_diverged(self) -> None:
        self.diverged_at = self.step
        self._record(None, {"val_loss": None, "val_accuracy": None})

    def add_segment(self, losses: np.ndarray, seconds: float, images: int, compile_step: bool) -> bool:
        """Takes a segment's per-step losses and time; False (and a divergence row) at a non-finite loss."""
        bad = np.flatnonzero(~np.isfinite(losses))
        kept = losses if len(bad) == 0 else losses[: bad[0] + 1]
        share = len(kept) / len(losses)  # a diverged segment counts only its steps up to the divergence
        if compile_step:
            self.compile_seconds += seconds * share
        else:
            self.seconds += seconds * share
            self.images_after_compile += round(images * share)
        self.step_losses += kept.tolist()
        self.step += len(kept)
        if len(bad):
            self.mark_diverged()
            return False
        return True

    def validate(self, train_accuracy: float | None, probe: bool = True) -> bool:
        """One evaluation at the current step, with the probes if `probe`; False (and a divergence row) when the model is broken."""
        measured = evaluate(self.model, self.data.val.images, self.data.val.labels)
        if measured is None or not weights_are_finite(self.model):
            self.mark_diverged()
            return False
        extra: dict[str, object] = {"val_loss": measured[0], "val_accuracy": measured[1]}
        if probe:
            extra.update(self.probes())
        self._record(train_accuracy, extra)
        return True

    def probes(self) -> dict[str, object]:
        """The re-estimated-BN validation accuracy (BN cells) and the per-layer gradient norms, as history columns."""
        columns: dict[str, object] = {}
        if self.precise_bn is not None:
            probs = self.precise_bn.predict(self.bn_images, self.data.val.images, EVAL_BATCH_SIZE)
            recomputed = _scored(probs, self.data.val.labels)
            columns["val_accuracy_recomputed_bn"] = recomputed[1] if recomputed else None
        if self.gradient_norms is not None:
            norms = self.gradient_norms(self.probe_images, self.probe_labels)
            columns.update({f"grad_norm/{layer}": norm for layer, norm in norms.items()})
        return columns


def _probe_indices(seed: int, n: int, size: int) -> np.ndarray:
    """A fixed sample of training indices for the probes: the same at every evaluation of a cell."""
    return np.sort(np.random.default_rng([seed, _PROBE_STREAM]).permutation(n)[:size])


def capture_state(model: keras.Model, order: np.random.Generator, measured: Measurements) -> TrainingState:
    return TrainingState(
        step=measured.step,
        model_variables=[keras.ops.convert_to_numpy(v) for v in model.variables],
        optimizer_variables=[keras.ops.convert_to_numpy(v) for v in model.optimizer.variables],
        data_order=order.bit_generator.state,
        measured=measured.state(),
    )


def _assign(variables: list, values: list[np.ndarray], what: str) -> None:
    shapes = [tuple(v.shape) for v in variables]
    if shapes != [tuple(value.shape) for value in values]:
        raise ValueError(f"the checkpoint's {what} variables do not fit this cell's model")
    for variable, value in zip(variables, values, strict=True):
        variable.assign(value)


def restore_state(model: keras.Model, order: np.random.Generator, measured: Measurements, state: TrainingState) -> None:
    """Put a compiled, freshly built model, the data order and the measurements back where `state` left them."""
    model.optimizer.build(model.trainable_variables)  # its slots exist only after a first step otherwise
    _assign(model.variables, state.model_variables, "model")
    _assign(model.optimizer.variables, state.optimizer_variables, "optimizer")
    order.bit_generator.state = state.data_order
    measured.restore(state.measured)


@dataclass
class CellSetup:
    """A cell ready to train: its compiled model and everything it measures, from scratch or resumed."""

    settings: CellSettings
    data: PreparedData
    model: keras.Model
    step_losses: StepLosses
    measured: Measurements
    eval_steps: list[int]
    order: np.random.Generator  # draws each epoch's permutation of the training set
    steps_per_epoch: int
    saved: TrainingState | None  # the checkpoint it resumed from
    sound: bool  # False when the model was already broken at step 0: nothing is trained

    @property
    def segments(self) -> list[tuple[int, int]]:
        """The (first, last) steps still to train, in order."""
        if not self.sound:
            return []
        return [
            (first, last)
            for first, last in _segments(self.eval_steps, self.steps_per_epoch)
            if last > self.measured.step
        ]

    def batch_indices(self, first: int, last: int, permutation: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
        """The epoch's permutation (drawn anew at an epoch's first step) and the training indices of steps first..last."""
        batch = self.settings.train.batch_size
        epoch, within = divmod(first - 1, self.steps_per_epoch)
        if within == 0:
            permutation = self.order.permutation(len(self.data.train.labels))
        end = min(len(permutation), (last - epoch * self.steps_per_epoch) * batch)
        return permutation, permutation[within * batch : end]

    def after_segment(self, last: int, losses: np.ndarray, seconds: float, images: int, train_accuracy: float) -> bool:
        """Records a trained segment, and evaluates after it where planned; False once the cell has diverged."""
        if not self.measured.add_segment(losses, seconds, images, compile_step=last <= COMPILE_STEPS):
            return False
        train = self.settings.train
        return last not in self.eval_steps or self.measured.validate(
            train_accuracy, probe=probes_at(last, self.eval_steps, train.probe_every)
        )

    def at_epoch_end(self, last: int) -> bool:
        return last % self.steps_per_epoch == 0


def set_up_cell(
    settings: CellSettings,
    data: PreparedData,
    on_eval: Callable[[dict], None],
    checkpoints: Checkpoints | None,
) -> CellSetup:
    """Seed, build and compile the cell's model, and resume it from `checkpoints` or validate it at step 0."""
    train = settings.train
    backend.apply_determinism(train.deterministic)
    seed_everything(settings.seed)
    spec = model_spec(settings)
    model = build_model(spec, data.input_shape, data.num_classes)
    images, labels = data.train.images, data.train.labels
    n = len(labels)
    steps_per_epoch = math.ceil(n / train.batch_size)
    step_losses = StepLosses(capacity=steps_per_epoch)
    model.compile(
        optimizer=build_optimizer(train.optimizer),
        loss="sparse_categorical_crossentropy",
        metrics=["accuracy", step_losses],
        jit_compile=backend.jit_compile(train.deterministic),  # pipeline/cell/backend.py: XLA, where and why
        # TensorFlow runs this many steps per call of its compiled step, a loop in the graph: the same
        # steps in the same order, less Python per step (Keras' JAX trainer loops in Python either way)
        steps_per_execution=train.steps_per_execution,
    )
    probe = _probe_indices(settings.seed, n, train.gradient_probe)
    bn_sample = _probe_indices(settings.seed, n, train.bn_probe)
    measured = Measurements(model, data, steps_per_epoch, images[probe], labels[probe], images[bn_sample], on_eval)
    eval_steps = evaluation_steps(steps_per_epoch, train.evals_per_epoch, train.epochs, train.early_evals)
    order = np.random.default_rng(settings.seed)
    saved = checkpoints.load() if checkpoints is not None else None
    if saved is not None:
        restore_state(model, order, measured, saved)
        for row in measured.rows:  # the tracking hook gets the whole history, as in an uninterrupted run
            on_eval(row)
        sound = True  # a checkpoint is only taken of a sound model
    else:
        sound = measured.validate(None)
    return CellSetup(settings, data, model, step_losses, measured, eval_steps, order, steps_per_epoch, saved, sound)


def train_cell(
    settings: CellSettings,
    data: PreparedData,
    on_eval: Callable[[dict], None] = lambda row: None,
    clock: Callable[[], float] = time.perf_counter,
    checkpoints: Checkpoints | None = None,
) -> CellResult:
    """Train one cell and measure it, from scratch or from the state `checkpoints` holds; touches no files.

    The test set is used exactly once, after training, and not at all after a
    divergence, which ends training early with the outcome "diverged" instead of
    an exception. `clock` times the training segments (seconds, monotonic). With
    `checkpoints`, each epoch's end is saved there, and a saved state is resumed.
    """
    cell = set_up_cell(settings, data, on_eval, checkpoints)
    model, images, labels = cell.model, data.train.images, data.train.labels
    permutation = None
    for first, last in cell.segments:
        permutation, picked = cell.batch_indices(first, last, permutation)
        began = clock()
        fitted = model.fit(
            images[picked], labels[picked], batch_size=settings.train.batch_size, epochs=1, shuffle=False, verbose=0
        )
        seconds = clock() - began  # fit returns after its last step: the device has finished
        losses = cell.step_losses.read(last - first + 1)
        if not cell.after_segment(last, losses, seconds, len(picked), float(fitted.history["accuracy"][-1])):
            break
        if checkpoints is not None and cell.at_epoch_end(last):
            checkpoints.save(capture_state(model, cell.order, cell.measured))
    return finish_cell(cell, engine="one-cell")


def finish_cell(cell: CellSetup, engine: str, group_size: int = 1) -> CellResult:
    """The test pass (once, and not after a divergence) and the cell's summary, from its trained model."""
    measured, model, data, train = cell.measured, cell.model, cell.data, cell.settings.train
    test = None
    if measured.diverged_at is None:
        test = evaluate(model, data.test.images, data.test.labels)
        if test is None:  # finite on validation, not on the test set: still no accuracy to report
            measured.mark_diverged()
    history = pd.DataFrame(measured.rows)
    steps = pd.DataFrame(
        {
            "step": np.arange(1, len(measured.step_losses) + 1),
            "train_loss": np.asarray(measured.step_losses, dtype=float),
        }
    )
    budget = cell.steps_per_epoch * train.epochs
    summary = {
        "outcome": "completed" if measured.diverged_at is None else "diverged",
        "diverged_at_step": measured.diverged_at,
        "steps_per_epoch": cell.steps_per_epoch,
        "budget_steps": budget,
        "steps_trained": measured.step,
        "compile_seconds": measured.compile_seconds,
        "train_seconds": measured.seconds,
        "throughput_images_per_s": throughput_images_per_s(measured.images_after_compile, measured.seconds),
        "throughput_warmup_steps": COMPILE_STEPS,
        **history_metrics(history, budget),
        "test_accuracy": test[1] if test else None,
        "test_loss": test[0] if test else None,
        "parameters": int(model.count_params()),
        # A resumed cell's timing adds up two processes and counts its second compilation as training
        # time: its seconds and throughput are not comparable with an uninterrupted cell's.
        "resumed_from_step": cell.saved.step if cell.saved is not None else None,
        "timing_comparable": cell.saved is None,
        "backend": backend.name(),
        # one-cell: Keras' fit, one cell per program; group: pipeline/cell/group.py, `group_size`
        # cells in one program, whose seconds are the whole group's
        "engine": engine,
        "group_size": group_size,
    }
    return CellResult(history=history, steps=steps, summary=summary, model=model)
