"""One cell on a few hundred generated samples, through the same functions the stage uses."""

from __future__ import annotations

import json
import math

import keras
import numpy as np
import pandas as pd
import pytest

from pipeline.cell import training as train
from pipeline.cell.models import ModelSpec, build_model
from pipeline.cell.outputs import CellOutputs, write_cell_outputs
from pipeline.cell.training import train_cell
from pipeline.data.prepared import load_prepared
from pipeline.study.schema import CellSettings
from tests.helpers import write_tiny_prepared

CELL = {"dataset": "fashion_mnist", "activation": "relu", "bn": "pre", "dropout": 0.0, "seed": 0}


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return load_prepared(write_tiny_prepared(tmp_path_factory.mktemp("fmnist")))  # 300 train (10 steps of 32), 100 val


def _settings(cell: dict = CELL, **overrides) -> CellSettings:
    """A cell's settings: its axes, and a small training budget with `overrides` applied."""
    train_settings = {
        "architecture": "seed_cnn", "optimizer": {"name": "rmsprop", "learning_rate": 0.001},
        "epochs": 2, "batch_size": 32, "evals_per_epoch": 3, "bn_momentum": 0.99, "bn_epsilon": 0.001,
    }  # fmt: skip
    return CellSettings.model_validate({**cell, "train": {**train_settings, **overrides}})


class SegmentClock:
    """A clock under which the first training segment (step 1, with the compilation) takes 5 s and every later one 1 s.

    Training reads the clock exactly twice per segment, at its start and its end.
    """

    def __init__(self):
        self.calls = 0
        self.now = 0.0

    def __call__(self) -> float:
        self.calls += 1
        if self.calls % 2 == 0:
            self.now += 5.0 if self.calls == 2 else 1.0
        return self.now


def test_one_cell_trains_and_measures(data, tmp_path):
    seen = []
    result = train_cell(_settings(), data, on_eval=seen.append, clock=SegmentClock())
    history, summary, steps = result.history, result.summary, result.steps
    pd.testing.assert_frame_equal(pd.DataFrame(seen), history)  # every evaluation reaches the tracking hook
    # 10 steps per epoch (300 / 32), 3 passes each, and early passes after steps 1 and 2
    assert history["step"].tolist() == [0, 1, 2, 4, 7, 10, 14, 17, 20]
    assert history["epoch"].tolist() == pytest.approx([0, 0.1, 0.2, 0.4, 0.7, 1.0, 1.4, 1.7, 2.0])
    # one segment per evaluation: step 1 (5 s) is compile time, each later segment 1 s of training time
    assert history["seconds"].tolist() == pytest.approx([0, 0, 1, 2, 3, 4, 5, 6, 7])
    assert summary["compile_seconds"] == pytest.approx(5.0) and summary["train_seconds"] == pytest.approx(7.0)
    # the compile step's 32 images are left out; the last batch of each epoch holds 300 - 9 * 32 = 12
    assert summary["throughput_images_per_s"] == pytest.approx((600 - 32) / 7.0)
    assert summary["throughput_warmup_steps"] == 1
    # the backend it trained on, and XLA where it compiles (pipeline/cell/backend.py): always on JAX, never when
    # determinism is asked for on TensorFlow
    assert summary["backend"] == keras.config.backend()
    assert result.model.jit_compile is (keras.config.backend() == "jax")
    assert summary["outcome"] == "completed" and summary["diverged_at_step"] is None
    assert summary["steps_trained"] == summary["budget_steps"] == 20
    # one loss per step, finite; a history row's train_loss is the mean of the steps since the previous row
    assert steps["step"].tolist() == list(range(1, 21)) and np.isfinite(steps["train_loss"]).all()
    per_step = steps["train_loss"].to_numpy()
    assert history["train_loss"].iloc[3] == pytest.approx(per_step[2:4].mean())
    assert history["train_loss"].iloc[-1] == pytest.approx(per_step[17:20].mean())
    # per-layer gradient norms at every evaluation, and the accuracy with re-estimated BN statistics
    grads = [c for c in history.columns if c.startswith("grad_norm/")]
    assert grads == [f"grad_norm/{n}" for n in ("conv1", "conv2", "conv3", "conv4", "dense1", "output")]
    assert (history[grads].to_numpy() > 0).all()
    assert history["val_accuracy_recomputed_bn"].between(0, 1).all()
    best = history["val_accuracy"].idxmax()
    assert summary["best_val_accuracy"] == history.loc[best, "val_accuracy"]
    assert summary["best_val_step"] == history.loc[best, "step"]
    assert summary["final_val_accuracy"] == history["val_accuracy"].iloc[-1]
    assert summary["final_val_loss"] == history["val_loss"].iloc[-1]
    paths = write_cell_outputs(tmp_path, CellOutputs({"cell": "cell", **summary}, history, steps))
    assert [p.name for p in paths] == ["metrics.json", "history.csv", "steps.csv", "curves.png"]
    written = json.loads(paths[0].read_text())
    assert written["test_accuracy"] == summary["test_accuracy"] and written["outcome"] == "completed"
    assert pd.read_csv(paths[1])["step"].tolist() == history["step"].tolist()
    assert pd.read_csv(paths[2])["train_loss"].to_numpy() == pytest.approx(per_step, rel=1e-5)


def test_a_cell_without_bn_has_no_recomputed_accuracy(data):
    history = train_cell(_settings({**CELL, "bn": "off"}, epochs=1, gradient_probe=0), data).history
    assert "val_accuracy_recomputed_bn" not in history and not any(c.startswith("grad_norm") for c in history)


def test_probe_every_takes_the_probes_at_every_kth_evaluation_and_the_last(data):
    every = train_cell(_settings(), data).history
    sparse = train_cell(_settings(probe_every=3), data).history
    # evaluations 0..8 at steps 0, 1, 2, 4, 7, 10, 14, 17, 20: probes at the 0th, 3rd, 6th and the last
    probed = sparse["step"][sparse["grad_norm/conv1"].notna()].tolist()
    assert probed == [0, 4, 14, 20]
    assert sparse["step"][sparse["val_accuracy_recomputed_bn"].notna()].tolist() == probed
    # the probes change nothing: the same validation curve, and the same probe values where both took them
    pd.testing.assert_series_equal(sparse["val_accuracy"], every["val_accuracy"])
    at = every["step"].isin(probed).to_numpy()
    for column in ("grad_norm/conv1", "grad_norm/output", "val_accuracy_recomputed_bn"):
        assert sparse.loc[at, column].to_numpy() == pytest.approx(every.loc[at, column].to_numpy())


def test_steps_per_execution_runs_the_same_steps(data):
    one = train_cell(_settings(), data)
    # 3 steps per call: segments of 1, 1, 2, 3 and 4 steps, and epochs of 10, end mid-call
    three = train_cell(_settings(steps_per_execution=3), data)
    assert three.model.steps_per_execution == 3
    untimed = [c for c in one.history.columns if c != "seconds"]
    pd.testing.assert_frame_equal(three.history[untimed], one.history[untimed])
    pd.testing.assert_frame_equal(three.steps, one.steps)
    assert three.summary["test_accuracy"] == one.summary["test_accuracy"]


@pytest.mark.parametrize(
    ("steps_per_epoch", "evals_per_epoch", "epochs", "early", "expected"),
    [
        (10, 3, 2, True, [1, 2, 4, 7, 10, 14, 17, 20]),
        (10, 3, 2, False, [4, 7, 10, 14, 17, 20]),
        (34, 4, 1, True, [1, 2, 4, 9, 17, 26, 34]),  # 8 is left out: 16 would pass the first regular step, 9
        (100, 4, 2, True, [1, 2, 4, 8, 25, 50, 75, 100, 125, 150, 175, 200]),
        (3, 5, 1, True, [1, 2, 3]),  # more passes than steps: every step, once
    ],
)
def test_evaluation_steps_double_early_then_stay_regular(steps_per_epoch, evals_per_epoch, epochs, early, expected):
    assert train.evaluation_steps(steps_per_epoch, evals_per_epoch, epochs, early) == expected


def test_step_losses_are_each_steps_own_loss_not_the_running_mean(data):
    # With a zero learning rate the weights stay put, so each step's loss is the model's loss on that batch.
    keras.utils.set_random_seed(0)
    model = build_model(ModelSpec("mlp", "relu", "off", 0.0, 0.99, 0.001), data.input_shape, data.num_classes)
    metric = train.StepLosses(capacity=10)
    model.compile(optimizer=keras.optimizers.SGD(0.0), loss="sparse_categorical_crossentropy", metrics=[metric])
    images, labels = data.train.images[:70], data.train.labels[:70]
    model.fit(images, labels, batch_size=32, epochs=1, shuffle=False, verbose=0)
    probs = model.predict(images, verbose=0)
    expected = [
        -np.mean(np.log(np.clip(probs[np.arange(a, b), labels[a:b]], 1e-7, 1.0)))
        for a, b in ((0, 32), (32, 64), (64, 70))
    ]
    assert metric.read(3) == pytest.approx(expected, rel=1e-4)
    assert abs(expected[1] - np.mean(expected[:2])) > 1e-3  # the running mean would differ from the step's own loss


def test_each_epoch_visits_a_new_permutation_of_the_training_set(data):
    # One image per step and a learning rate too small to move a weight (1e-30 times a gradient is below a float32
    # weight's last digit): each step's loss is the fixed model's loss on that step's one image, so an epoch's
    # step losses are the training set's per-image losses in the order the epoch visited the images.
    settings = _settings(
        {**CELL, "bn": "off"}, architecture="mlp", optimizer={"name": "sgd", "learning_rate": 1e-30},
        batch_size=1, epochs=3, evals_per_epoch=1, gradient_probe=0, bn_probe=0,
    )  # fmt: skip
    result = train_cell(settings, data)
    images, labels = data.train.images, data.train.labels
    probs = result.model.predict(images, verbose=0)
    per_image = keras.ops.convert_to_numpy(keras.losses.sparse_categorical_crossentropy(labels, probs))
    losses = result.steps["train_loss"].to_numpy()
    epochs = losses.reshape(3, len(labels))
    for epoch in epochs:  # every image once per epoch
        assert np.sort(epoch) == pytest.approx(np.sort(per_image), rel=1e-4, abs=1e-6)
    assert not np.allclose(epochs[0], per_image, rtol=1e-4, atol=1e-6)  # shuffled, not in the stored order
    for a, b in ((0, 1), (0, 2), (1, 2)):  # and in another order each epoch
        assert not np.allclose(epochs[a], epochs[b], rtol=1e-4, atol=1e-6), (a, b)


def test_test_split_is_evaluated_once_after_training(data, monkeypatch):
    seen = []

    def spy(model, images, labels):
        seen.append((images, labels))
        return evaluate(model, images, labels)

    evaluate = train.evaluate
    monkeypatch.setattr(train, "evaluate", spy)
    result = train_cell(_settings(epochs=1), data)
    *validations, last = seen
    assert len(validations) == len(result.history) == 6  # steps 0, 1, 2, 4, 7, 10
    assert all(images is data.val.images and labels is data.val.labels for images, labels in validations)
    assert last[0] is data.test.images and last[1] is data.test.labels
    loss, accuracy = evaluate(result.model, data.test.images, data.test.labels)
    assert (result.summary["test_loss"], result.summary["test_accuracy"]) == (loss, accuracy)


def test_same_seed_same_curve_other_seed_other_curve(data):
    cell = {"dataset": "fashion_mnist", "activation": "sigmoid", "bn": "post", "dropout": 0.5, "seed": 7}
    runs = [
        train_cell(_settings(c, epochs=1), data).history["val_loss"].tolist() for c in (cell, cell, {**cell, "seed": 8})
    ]
    assert runs[0] == runs[1]
    assert runs[0][0] != runs[2][0]  # another seed, another initial model


def _nan_learning_rate(settings: CellSettings) -> CellSettings:
    # model_copy does not validate: the schema would refuse a NaN rate, as it should.
    optimizer = settings.train.optimizer.model_copy(update={"learning_rate": math.nan})
    return settings.model_copy(update={"train": settings.train.model_copy(update={"optimizer": optimizer})})


def test_divergence_is_an_outcome_not_a_crash(data, tmp_path):
    # A NaN learning rate turns every weight into NaN at the first update (IEEE 754: NaN * g is NaN
    # for every gradient g, zero included), so this cell diverges by construction on any machine.
    sigmoid_off = {**CELL, "activation": "sigmoid", "bn": "off"}
    settings = _nan_learning_rate(_settings(sigmoid_off, optimizer={"name": "sgd", "learning_rate": 0.01}))
    result = train_cell(settings, data)
    summary, history = result.summary, result.history
    assert summary["outcome"] == "diverged"
    # seen at the latest at the first evaluation after the first update (step 1), where weights are checked
    assert summary["diverged_at_step"] == 1
    assert summary["steps_trained"] == summary["diverged_at_step"] < summary["budget_steps"]
    assert history["step"].tolist() == [0, summary["diverged_at_step"]]
    assert math.isfinite(history["val_accuracy"].iloc[0])  # the untrained model was sound
    assert history[["val_accuracy", "val_loss", "train_accuracy"]].iloc[-1].isna().all()
    assert len(result.steps) == summary["diverged_at_step"]  # no step loss recorded after the divergence
    for key in ("final_val_accuracy", "final_val_loss", "test_accuracy", "test_loss"):
        assert summary[key] is None, key
    assert summary["best_val_accuracy"] == history["val_accuracy"].iloc[0]
    write_cell_outputs(tmp_path, CellOutputs({"cell": "diverged", **summary}, history, result.steps))
    written = json.loads((tmp_path / "metrics.json").read_text(), parse_constant=lambda c: pytest.fail(f"bare {c}"))
    assert written["outcome"] == "diverged" and written["test_accuracy"] is None
    assert written["diverged_at_step"] == summary["diverged_at_step"]


def _measurements(data, model):
    none = data.train.images[:0]
    return train.Measurements(model, data, 10, none, data.train.labels[:0], none, on_eval=lambda row: None)


def test_nan_weights_are_divergence_even_when_outputs_look_finite(data, monkeypatch):
    # A clipped loss or output can hide NaN weights, so the weights themselves are checked at each evaluation.
    monkeypatch.setattr(train, "evaluate", lambda model, images, labels: (1.0, 0.5))
    model = build_model(ModelSpec("mlp", "relu", "off", 0.0, 0.99, 0.001), data.input_shape, data.num_classes)
    measured = _measurements(data, model)
    assert measured.validate(None) and measured.diverged_at is None and measured.rows[0]["val_accuracy"] == 0.5
    kernel = model.layers[1].kernel
    kernel.assign(keras.ops.where(keras.ops.arange(kernel.shape[1]) == 0, math.nan, kernel.value))
    assert measured.add_segment(np.array([2.3, 2.2]), 1.0, 64, compile_step=False)
    assert not measured.validate(0.1)
    assert measured.diverged_at == 2 and measured.rows[-1]["val_accuracy"] is None


def test_a_nan_loss_stops_training_at_that_step(data):
    model = build_model(ModelSpec("mlp", "relu", "off", 0.0, 0.99, 0.001), data.input_shape, data.num_classes)
    measured = _measurements(data, model)
    measured.validate(None)
    assert measured.add_segment(np.array([2.3]), 5.0, 32, compile_step=True)
    assert not measured.add_segment(np.array([2.2, math.nan, 2.0, 1.0]), 4.0, 128, compile_step=False)
    assert measured.diverged_at == 3 and measured.step == 3
    assert [row["step"] for row in measured.rows] == [0, 3] and measured.rows[-1]["val_accuracy"] is None
    assert measured.step_losses[:2] == [2.3, 2.2] and math.isnan(measured.step_losses[2])
    # the time of the diverged segment counts up to the divergence: 2 of its 4 steps
    assert measured.compile_seconds == 5.0 and measured.seconds == pytest.approx(2.0)


def test_an_infinite_loss_is_divergence_too(data):
    model = build_model(ModelSpec("mlp", "relu", "off", 0.0, 0.99, 0.001), data.input_shape, data.num_classes)
    measured = _measurements(data, model)
    measured.validate(None)
    assert not measured.add_segment(np.array([2.3, math.inf]), 1.0, 64, compile_step=True)
    assert measured.diverged_at == 2


class FixedOutputs:
    """Stands in for a model whose predictions are known exactly."""

    def __init__(self, probs):
        self.probs = np.asarray(probs, dtype=np.float32)

    def predict(self, images, batch_size, verbose):
        return self.probs


def test_evaluation_scores_finite_outputs_and_refuses_any_nan():
    labels = np.array([0, 1, 1])
    loss, accuracy = train.evaluate(FixedOutputs([[0.9, 0.1], [0.2, 0.8], [0.6, 0.4]]), None, labels)
    assert accuracy == pytest.approx(2 / 3) and loss == pytest.approx(-np.mean(np.log([0.9, 0.8, 0.4])))
    assert train.evaluate(FixedOutputs([[0.9, 0.1], [math.nan, math.nan], [0.6, 0.4]]), None, labels) is None
    assert train.evaluate(FixedOutputs([[0.9, 0.1], [0.2, math.inf], [0.6, 0.4]]), None, labels) is None
