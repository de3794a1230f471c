"""The group engine against the one-cell path, on Keras' JAX backend (run there by tests/integration/test_jax.py).

What must hold for a member of a group (pipeline/cell/group.py), whatever shares its group:
- bitwise: its initial weights, optimizer state and seed-generator states; its epochs' permutations;
  its dropout and augmentation draws (the seed-generator states after a step, and JAX's draws under
  vmap, which are those of each key alone);
- within a stated tolerance: its per-step losses over 50 steps, against the one-cell path and against
  itself in a group of one (the stacked convolutions sum in another order, so floats differ in the
  last bits and training carries that along: LOSS_TOLERANCE, with the largest difference measured
  in docs/performance.md);
- exactly: where a diverged member's history ends, its outcome, the engine it records, and one
  tracked run per member, FINISHED, or FAILED for all when the group fails.
"""

from __future__ import annotations

import contextlib
import math

import jax
import keras
import numpy as np
import pytest

pytestmark = pytest.mark.skipif(
    keras.config.backend() != "jax", reason="the group engine trains Keras on JAX: test_jax.py runs this file there"
)

from pipeline.cell import group as group_engine  # noqa: E402 - JAX only
from pipeline.cell.training import set_up_cell, train_cell  # noqa: E402
from pipeline.data.prepared import load_prepared  # noqa: E402
from pipeline.study.schema import CellSettings  # noqa: E402
from tests.helpers import write_tiny_prepared  # noqa: E402

EPOCHS = 5  # 50 steps of 32 on the 300 training images
# Per-step loss, absolute, at these small learning rates (the losses are about 2.3): on a 2-core x86_64 CPU
# the largest difference over the 50 steps was 2.5e-3 between a member and its one-cell run, 1.2e-3 between
# a member in a group of five and alone, and 2.8e-2 over 68 steps in benchmarks/group_engine.py; a member
# trained at another member's rate differed by 1.6 (docs/performance.md).
LOSS_TOLERANCE = 5e-2
FIRST_STEP_TOLERANCE = 1e-5  # relative: the same weights, batch and draws; only the summation order differs


def _settings(seed: int, learning_rate: float = 1e-4, initializer: str | None = None, **train) -> CellSettings:
    """The seed CNN with BN and dropout, evaluated once per epoch without the probes (the one-cell path's
    Measurements take them, unchanged by the engine: tests/integration/test_probes.py)."""
    settings = {
        "architecture": "seed_cnn", "optimizer": {"name": "rmsprop", "learning_rate": learning_rate},
        "kernel_initializer": initializer, "epochs": EPOCHS, "batch_size": 32, "evals_per_epoch": 1,
        "early_evals": False, "gradient_probe": 0, "bn_probe": 0, "bn_momentum": 0.99, "bn_epsilon": 0.001,
        **train,
    }  # fmt: skip
    cell = {"dataset": "fashion_mnist", "activation": "relu", "bn": "pre", "dropout": 0.5, "seed": seed}
    return CellSettings.model_validate({**cell, "train": settings})


# Five members that differ in seed, learning rate and initializer, as a study's seeds and sweep rates do
MEMBERS = [_settings(0), _settings(1), _settings(2, 3e-5), _settings(3, initializer="he_normal"), _settings(4, 3e-5)]
AUGMENTED = {"augmentation": {"horizontal_flip": True, "zoom": 0.1, "shear_degrees": 0.2}}


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return load_prepared(write_tiny_prepared(tmp_path_factory.mktemp("fmnist")))  # 300 train: 10 steps of 32


@pytest.fixture(scope="module")
def batches_seen():
    return {}


@pytest.fixture(scope="module")
def trained(data, batches_seen):
    """The five members one by one on the one-cell path, as a group of five, and the third alone in a group of one."""
    record = group_engine._run_segment

    def recording(program, state, images, labels, picked, *rest):
        for member, indices in enumerate(picked):
            batches_seen.setdefault(member, []).append(indices.copy())
        return record(program, state, images, labels, picked, *rest)

    singles = [train_cell(settings, data) for settings in MEMBERS]
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(group_engine, "_run_segment", recording)
        five = group_engine.train_group(MEMBERS, data)
    alone = group_engine.train_group([MEMBERS[2]], data)
    return singles, five, alone


def _values(variables) -> list[np.ndarray]:
    return [keras.ops.convert_to_numpy(v) for v in variables]


def test_a_members_initial_state_is_bitwise_the_one_cell_paths(data):
    cells = [set_up_cell(settings, data, lambda row: None, None) for settings in MEMBERS]
    stacked = group_engine._Group(cells).state
    for member in reversed(range(len(MEMBERS))):  # set up again alone, in another order
        alone = set_up_cell(MEMBERS[member], data, lambda row: None, None).model
        alone.optimizer.build(alone.trainable_variables)
        own = [
            _values(alone.trainable_variables),
            _values(alone.non_trainable_variables),
            _values(alone.optimizer.variables),
        ]
        for part, values in zip(stacked, own, strict=True):
            assert all(np.array_equal(np.asarray(s[member]), v) for s, v in zip(part, values, strict=True))


def test_each_member_visits_its_own_seeds_permutations(trained, batches_seen, data):
    n = len(data.train.labels)
    for member, settings in enumerate(MEMBERS):
        order = np.random.default_rng(settings.seed)
        visited = np.concatenate(batches_seen[member])
        expected = np.concatenate([order.permutation(n) for _ in range(EPOCHS)])
        assert np.array_equal(visited, expected)


def test_the_first_steps_draws_are_the_one_cell_paths(data):
    # The dropout and augmentation layers draw from their seed generators' states: after a first step, a member's
    # states are those of its one-cell model after the same step, and JAX draws under vmap what each key draws alone.
    keras.backend.clear_session()  # as a runner worker does before each task, and a stage's fresh process is
    settings = [
        CellSettings.model_validate({**s.model_dump(), "train": {**s.train.model_dump(), **AUGMENTED}})
        for s in MEMBERS[:3]
    ]
    cells = [set_up_cell(s, data, lambda row: None, None) for s in settings]
    group = group_engine._Group(cells)
    program = group_engine._step_program(cells[0].model)
    images = keras.ops.convert_to_tensor(data.train.images)
    labels = keras.ops.convert_to_tensor(data.train.labels.astype("int32"))
    picked = [cell.batch_indices(1, 1, None)[1] for cell in cells]
    group.state, losses, _ = group_engine._run_segment(program, group.state, images, labels, picked, 32, 1, 10)
    seed_states = [i for i, v in enumerate(cells[0].model.non_trainable_variables) if "seed_generator" in v.path]
    drawing = (keras.layers.Dropout, keras.layers.RandomShear, keras.layers.RandomZoom, keras.layers.RandomFlip)
    assert len(seed_states) == sum(isinstance(layer, drawing) for layer in cells[0].model.layers) > 3
    for member, s in enumerate(settings):
        alone = set_up_cell(s, data, lambda row: None, None)
        batch = alone.batch_indices(1, 1, None)[1]
        alone.model.fit(
            data.train.images[batch], data.train.labels[batch], batch_size=32, epochs=1, verbose=0, shuffle=False
        )
        for i in seed_states:
            after = keras.ops.convert_to_numpy(alone.model.non_trainable_variables[i])
            assert np.array_equal(np.asarray(group.state[1][i][member]), after)
        assert losses[0, member] == pytest.approx(alone.step_losses.read(1)[0], rel=FIRST_STEP_TOLERANCE)
    keys = jax.numpy.stack([group.state[1][seed_states[0]][m] for m in range(3)])
    ones = keras.ops.ones((8, 16))
    batched = jax.vmap(lambda key: keras.random.dropout(ones, 0.5, seed=key))(keys)
    for member in range(3):
        assert np.array_equal(
            np.asarray(batched[member]), np.asarray(keras.random.dropout(ones, 0.5, seed=keys[member]))
        )


def test_per_step_losses_agree_with_the_one_cell_path_over_50_steps(trained):
    singles, five, _ = trained
    for single, member in zip(singles, five, strict=True):
        assert len(member.steps) == len(single.steps) == 10 * EPOCHS
        difference = np.abs(member.steps["train_loss"].to_numpy() - single.steps["train_loss"].to_numpy())
        assert difference.max() <= LOSS_TOLERANCE, difference.max()


def test_a_members_results_do_not_depend_on_who_shares_its_group(trained):
    _, five, [alone] = trained
    difference = np.abs(alone.steps["train_loss"].to_numpy() - five[2].steps["train_loss"].to_numpy())
    assert difference.max() <= LOSS_TOLERANCE, difference.max()
    assert list(alone.history["step"]) == list(five[2].history["step"])


def test_each_member_records_the_engine_and_its_groups_size(trained):
    singles, five, [alone] = trained
    assert {(m.summary["engine"], m.summary["group_size"]) for m in five} == {("group", 5)}
    assert (alone.summary["engine"], alone.summary["group_size"]) == ("group", 1)
    assert singles[0].summary["engine"] == "one-cell"
    assert all(m.summary["outcome"] == "completed" and m.summary["test_accuracy"] is not None for m in five)


def _nan_rate(settings: CellSettings) -> CellSettings:
    # model_copy does not validate: the schema refuses a NaN rate, as it should. A NaN rate turns every weight
    # of its member NaN at the first update, so its second step's loss is NaN: divergence by construction.
    optimizer = settings.train.optimizer.model_copy(update={"learning_rate": math.nan})
    return settings.model_copy(update={"train": settings.train.model_copy(update={"optimizer": optimizer})})


def test_a_diverged_member_ends_where_the_one_cell_path_ends_it_and_the_others_go_on(data):
    # three evaluations in the epoch: segments go on after the divergence at step 2, and must leave its history alone
    short = [_settings(s, epochs=1, architecture="mlp", evals_per_epoch=3) for s in (0, 1)]
    short[1] = _nan_rate(short[1])
    group = group_engine.train_group(short, data)
    alone = [train_cell(settings, data) for settings in short]
    assert group[1].summary["outcome"] == alone[1].summary["outcome"] == "diverged"
    assert group[1].summary["diverged_at_step"] == alone[1].summary["diverged_at_step"] == 2
    assert list(group[1].history["step"]) == list(alone[1].history["step"])
    assert group[1].summary["test_accuracy"] is None  # the test set is not used after a divergence
    assert group[0].summary["outcome"] == "completed" and group[0].summary["steps_trained"] == 10
    difference = np.abs(group[0].steps["train_loss"].to_numpy() - alone[0].steps["train_loss"].to_numpy())
    assert difference.max() <= LOSS_TOLERANCE


class RecordingTracker:
    """A Tracker that keeps each run's end status instead of writing to MLflow."""

    def __init__(self, ended: list):
        self.ended = ended

    def check(self) -> None:
        pass

    def end_stale_runs(self, cell, lr_policy) -> None:
        pass

    @contextlib.contextmanager
    def open_run(self, cell, settings, data_meta, device, lr_policy):
        run = _RecordingRun()
        status = "FAILED"
        try:
            yield run
            status = "FINISHED"
        finally:
            self.ended.append((cell.name, status, run.finished))


class _RecordingRun:
    finished = 0

    def log_eval(self, row):
        pass

    def log_steps(self, steps):
        pass

    def log_model(self, model):
        pass

    def finish(self, summary, target_metrics, artifacts):
        self.finished += 1


def _members(tmp_path, ended):
    from pipeline.cell.run import Member
    from pipeline.study.cells import Cell

    settings = [_settings(seed, epochs=1, architecture="mlp") for seed in (0, 1)]
    cells = [Cell((("dataset", "fashion_mnist"), ("seed", s.seed))) for s in settings]
    return [
        Member(c, s, "fixed", tmp_path / c.name, RecordingTracker(ended)) for c, s in zip(cells, settings, strict=True)
    ]


def test_one_finished_run_per_member_and_a_failed_group_fails_them_all(tmp_path, monkeypatch):
    from pipeline.cell.run import run_group
    from pipeline.study.params import load_params
    from tests.helpers import REPO

    params = load_params(REPO / "params.yaml")
    data_dir = write_tiny_prepared(tmp_path / "data")
    ended: list = []
    summaries = run_group(params, _members(tmp_path / "ok", ended), data_dir, tmp_path / "checkpoints")
    assert [status for _, status, finished in ended] == ["FINISHED", "FINISHED"]
    assert [finished for _, _, finished in ended] == [1, 1]
    assert all(s["device_shared"] is True and s["engine"] == "group" for s in summaries)
    assert all((tmp_path / "ok" / s["cell"] / "metrics.json").is_file() for s in summaries)

    def broken(*args, **kwargs):
        raise RuntimeError("the device went away")

    monkeypatch.setattr(group_engine, "train_group", broken)
    ended.clear()
    with pytest.raises(RuntimeError):
        run_group(params, _members(tmp_path / "failed", ended), data_dir, tmp_path / "checkpoints")
    assert [status for _, status, _ in ended] == ["FAILED", "FAILED"]
    assert not (tmp_path / "failed").exists()  # no member's outputs
