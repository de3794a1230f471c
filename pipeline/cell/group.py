"""Train same-shape cells as one compiled program (Keras on JAX): the group engine.

One cell at a time, a small CNN leaves a GPU idle: each step is a few kernels of microseconds behind
a fixed cost of dispatch, host copies and launches (docs/performance.md). A group trains several
cells in one program instead. Each member is set up exactly as the one-cell path sets it up
(pipeline/cell/training.py `set_up_cell`: seeded, built, compiled, validated at step 0), so its
initial weights, its epochs' permutations and its dropout and augmentation seeds are the one-cell
path's. Their variables are then stacked along a new leading axis, and one step of the whole group
is `jax.vmap` over Keras' stateless API: `model.stateless_call` (the forward pass, updating BN's
moving statistics and the layers' seed-generator states) and `optimizer.stateless_apply` (the
update, the learning rate being one of the optimizer's variables). The model and optimizer code
stay the one definition in models.py and optimizers.py.

What members may differ in (`group_key`): the seed, the learning rate and the kernel initializer,
which only change the values of variables. Everything that changes the program (architecture,
activation, BN placement, dropout rate, optimizer kind and constants, batch size, budget, the
evaluation plan) is the same within a group. A cell that fits no group, and every cell on
TensorFlow, trains on the one-cell path.

On the device: the training images and labels (copied once) and each step's batches, gathered there
from the members' index arrays (one small copy per segment). One host sync per segment reads the
members' per-step losses and correct counts. Evaluations, the probes and the test pass run
member by member on the member's own Keras model, with the group's values written into it: the
one-cell path's code, unchanged.

A member whose loss turns non-finite ends where the one-cell path ends it (its history's last row at
that step); the group carries its values along without reading them again (its lane of the vmap is
independent of the others'), so nobody else's numbers change.

Seconds: a member's `train_seconds` is the group's wall time over its segments, shared by
`group_size` cells; `finish_cell` records the engine and the size, and the member's run marks its
device shared (pipeline/report/timing.py leaves such timings out of verdicts in seconds).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

import jax
import jax.numpy as jnp
import keras
import numpy as np

from pipeline.cell.grouping import group_key
from pipeline.cell.training import (
    CellResult,
    CellSetup,
    Checkpoints,
    capture_state,
    finish_cell,
    set_up_cell,
)
from pipeline.data.prepared import PreparedData
from pipeline.study.schema import CellSettings

ENGINE = "group"


def _stack(per_member: Sequence[Sequence]) -> list[jax.Array]:
    """[member][variable] values -> [variable] arrays with the members along a new first axis."""
    return [jnp.stack([jnp.asarray(values[i]) for values in per_member]) for i in range(len(per_member[0]))]


def _values(variables) -> list[jax.Array]:
    return [v.value for v in variables]


def _assign(variables, stacked: list[jax.Array], member: int) -> None:
    for variable, values in zip(variables, stacked, strict=True):
        variable.assign(values[member])


def _group_step(model: keras.Model) -> Callable:
    """One optimizer step of every member: vmap of the one-cell step over the stacked variables and batches."""
    loss_of = keras.losses.SparseCategoricalCrossentropy()  # what compile("sparse_categorical_crossentropy") applies

    def step(trainable, non_trainable, optimizer, x, y):
        def loss(trainable):
            y_pred, updated = model.stateless_call(trainable, non_trainable, x, training=True)
            return loss_of(y, y_pred), (updated, y_pred)

        (_, (non_trainable, y_pred)), grads = jax.value_and_grad(loss, has_aux=True)(trainable)
        trainable, optimizer = model.optimizer.stateless_apply(optimizer, grads, trainable)
        # the step's loss as the one-cell path records it (training.StepLosses), and its correct predictions
        recorded = jnp.mean(keras.losses.sparse_categorical_crossentropy(y, y_pred)).astype("float32")
        correct = jnp.sum(jnp.argmax(y_pred, axis=-1) == y)
        return trainable, non_trainable, optimizer, recorded, correct

    return jax.vmap(step)


def _step_program(model: keras.Model) -> Callable:
    """One compiled group step: (state, images, labels, indices, i) -> (state, losses, correct) for step i of a segment.

    The batch is gathered on the device from `indices` ([steps, members, batch], copied once per
    segment), so a step sends nothing from the host but its number. Steps are dispatched from Python:
    XLA's CPU backend ran the same step inside a `lax.fori_loop` twenty times slower (measured,
    docs/performance.md), and JAX's asynchronous dispatch keeps the device busy between them anyway.
    """
    group_step = _group_step(model)

    def run(state, images, labels, indices, i):
        picked = indices[i]
        trainable, non_trainable, optimizer, losses, correct = group_step(*state, images[picked], labels[picked])
        return (trainable, non_trainable, optimizer), losses, correct

    return jax.jit(run, donate_argnums=(0,))


class _Group:
    """The members' stacked variables on the device, and what writes them back into each member's model."""

    def __init__(self, cells: list[CellSetup]):
        self.cells = cells
        for cell in cells:
            cell.model.optimizer.build(cell.model.trainable_variables)  # its slots exist after a first step otherwise
        self.state = (
            _stack([_values(c.model.trainable_variables) for c in cells]),
            _stack([_values(c.model.non_trainable_variables) for c in cells]),
            _stack([_values(c.model.optimizer.variables) for c in cells]),
        )

    def write_back(self, member: int, optimizer: bool = False) -> None:
        """The member's values into its own Keras model (and its optimizer's, for a checkpoint)."""
        model = self.cells[member].model
        trainable, non_trainable, optimizer_values = self.state
        _assign(model.trainable_variables, trainable, member)
        _assign(model.non_trainable_variables, non_trainable, member)
        if optimizer:
            _assign(model.optimizer.variables, optimizer_values, member)


def _same_start(cells: list[CellSetup]) -> bool:
    """Whether every member starts at the same step (all fresh, or all resumed from the same epoch)."""
    return len({(cell.measured.step, cell.sound) for cell in cells}) == 1


def train_group(
    settings: Sequence[CellSettings],
    data: PreparedData,
    on_evals: Sequence[Callable[[dict], None]] | None = None,
    clock: Callable[[], float] = time.perf_counter,
    checkpoints: Sequence[Checkpoints | None] | None = None,
) -> list[CellResult]:
    """Train cells that share a `group_key` as one program; one CellResult per cell, in order.

    As `train_cell` for each member: the test set used once, after training, and not after a
    divergence; with `checkpoints`, each epoch's end saved for every member. The members resume only
    together: when their checkpoints do not hold the same step, every member starts afresh.
    """
    keys = {group_key(s) for s in settings}
    if len(keys) != 1:
        raise ValueError("a group's cells differ in more than seed, learning rate and initializer")
    on_evals = list(on_evals or [lambda row: None] * len(settings))
    saved = list(checkpoints or [None] * len(settings))
    cells = [set_up_cell(s, data, on_eval, c) for s, on_eval, c in zip(settings, on_evals, saved, strict=True)]
    if not _same_start(cells):
        cells = [set_up_cell(s, data, on_eval, None) for s, on_eval in zip(settings, on_evals, strict=True)]
    _train(cells, saved, clock)
    return [finish_cell(cell, engine=ENGINE, group_size=len(cells)) for cell in cells]


def _train(cells: list[CellSetup], checkpoints: list[Checkpoints | None], clock: Callable[[], float]) -> None:
    lead = cells[0]
    group = _Group(cells)
    program = _step_program(lead.model)
    images = jnp.asarray(lead.data.train.images)
    labels = jnp.asarray(lead.data.train.labels.astype(np.int32))
    batch = lead.settings.train.batch_size
    active = [cell.sound for cell in cells]
    permutations: list[np.ndarray | None] = [None] * len(cells)
    for first, last in lead.segments:
        picked = []
        for member, cell in enumerate(cells):
            permutations[member], indices = cell.batch_indices(first, last, permutations[member])
            picked.append(indices)
        steps = last - first + 1
        began = clock()
        group.state, losses, correct = _run_segment(
            program, group.state, images, labels, picked, batch, steps, lead.steps_per_epoch
        )
        seconds = clock() - began  # the losses were read back: the device has finished
        for member, cell in enumerate(cells):
            if not active[member]:
                continue  # diverged: its lane goes on, unread
            group.write_back(member)
            accuracy = float(correct[:, member].sum()) / len(picked[member])
            active[member] = cell.after_segment(last, losses[:, member], seconds, len(picked[member]), accuracy)
            if active[member] and checkpoints[member] is not None and cell.at_epoch_end(last):
                group.write_back(member, optimizer=True)
                checkpoints[member].save(capture_state(cell.model, cell.order, cell.measured))
        if not any(active):
            break
    for member in range(len(cells)):
        if active[member]:
            group.write_back(member)


def _run_segment(program, state, images, labels, picked: list[np.ndarray], batch: int, steps: int, longest: int):
    """Trains one segment's steps; the last may be smaller (an epoch's remainder: one more compilation, once).

    The index array always has `longest` rows (the rows past the segment's are never read), so that
    every segment runs the one compiled step. Returns the new state and the per-step losses and
    correct counts, [steps, members], read to the host in one sync at the end.
    """
    full = len(picked[0]) // batch
    losses, correct = [], []
    if full:
        rows = np.zeros((longest, len(picked), batch), np.int32)
        rows[:full] = np.stack([p[: full * batch].reshape(full, batch) for p in picked], axis=1)
        indices = jnp.asarray(rows)
        for i in range(full):
            state, step_losses, step_correct = program(state, images, labels, indices, np.int32(i))
            losses.append(step_losses)
            correct.append(step_correct)
    if full < steps:
        rest = jnp.asarray(np.stack([p[full * batch :] for p in picked])[None])
        state, step_losses, step_correct = program(state, images, labels, rest, np.int32(0))
        losses.append(step_losses)
        correct.append(step_correct)
    return state, np.asarray(jnp.stack(losses)).astype(float), np.asarray(jnp.stack(correct))
