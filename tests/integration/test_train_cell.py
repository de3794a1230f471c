"""One cell on a few hundred generated samples, through the same functions the stage uses."""

from __future__ import annotations

import json
import math

import keras
import numpy as np
import pandas as pd
import pytest

from pipeline import training as train
from pipeline.cell_outputs import CellOutputs, write_cell_outputs
from pipeline.data.datasets import DATASETS
from pipeline.data.fashion_mnist import read_fashion_mnist
from pipeline.data.prepared import channel_stats, load_prepared, split_dataset, write_prepared
from pipeline.models import ModelSpec, build_model
from pipeline.params import CellSettings
from pipeline.training import WARMUP_STEPS, train_cell
from tools.fake_data import write_fashion_mnist

CELL = {"dataset": "fashion_mnist", "activation": "relu", "bn": "pre", "dropout": 0.0, "seed": 0}


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("fmnist")
    write_fashion_mnist(root, train=400, test=100)
    raw = read_fashion_mnist(root)
    splits = split_dataset(raw, val_fraction=0.25, seed=0)  # 300 train (10 steps of 32), 100 val
    mean, std = channel_stats(splits["train"].images)
    meta = {
        "mean": mean,
        "std": std,
        "class_names": list(DATASETS["fashion_mnist"].class_names),
        "data_digest": "d",
        "published_data": False,
    }
    write_prepared(root / "prepared", splits, meta)
    return load_prepared(root / "prepared")


def _settings(cell: dict = CELL, **overrides) -> CellSettings:
    """A cell's settings: its axes, and a small training budget with `overrides` applied."""
    train_settings = {
        "architecture": "seed_cnn", "optimizer": {"name": "rmsprop", "learning_rate": 0.001},
        "epochs": 2, "batch_size": 32, "evals_per_epoch": 3, "bn_momentum": 0.99, "bn_epsilon": 0.001,
    }  # fmt: skip
    return CellSettings.model_validate({**cell, "train": {**train_settings, **overrides}})


class SteppingClock:
    """A clock under which each warm-up step takes 1 s and every later step 0.01 s.

    The schedule reads the clock exactly twice per step, at its start and its end.
    """

    def __init__(self):
        self.calls = 0
        self.now = 0.0

    def __call__(self) -> float:
        self.calls += 1
        if self.calls % 2 == 0:
            self.now += 1.0 if self.calls // 2 <= WARMUP_STEPS else 0.01
        return self.now


def test_one_cell_trains_and_measures(data, tmp_path):
    seen = []
    result = train_cell(_settings(), data, on_eval=seen.append, clock=SteppingClock())
    history, summary = result.history, result.summary
    pd.testing.assert_frame_equal(pd.DataFrame(seen), history)  # every evaluation reaches the tracking hook
    assert history["step"].tolist() == [0, 4, 7, 10, 14, 17, 20]  # 10 steps per epoch (300 / 32), 3 passes each
    assert history["epoch"].tolist() == pytest.approx([0, 0.4, 0.7, 1.0, 1.4, 1.7, 2.0])
    # 10 warm-up steps of 1 s, then 0.01 s per step: training time at each evaluation
    assert history["seconds"].tolist() == pytest.approx([0, 4, 7, 10, 10.04, 10.07, 10.1])
    assert summary["outcome"] == "completed" and summary["diverged_at_step"] is None
    assert summary["steps_trained"] == summary["budget_steps"] == 20
    assert summary["train_seconds"] == pytest.approx(10.1)
    # the warm-up is left out: the second epoch's 300 images in 10 steps of 0.01 s
    assert summary["throughput_images_per_s"] == pytest.approx(300 / 0.1)
    best = history["val_accuracy"].idxmax()
    assert summary["best_val_accuracy"] == history.loc[best, "val_accuracy"]
    assert summary["best_val_step"] == history.loc[best, "step"]
    assert summary["final_val_accuracy"] == history["val_accuracy"].iloc[-1]
    assert summary["final_val_loss"] == history["val_loss"].iloc[-1]
    paths = write_cell_outputs(tmp_path, CellOutputs({"cell": "cell", **summary}, history))
    assert [p.name for p in paths] == ["metrics.json", "history.csv", "curves.png"]
    written = json.loads(paths[0].read_text())
    assert written["test_accuracy"] == summary["test_accuracy"] and written["outcome"] == "completed"
    assert pd.read_csv(paths[1])["step"].tolist() == history["step"].tolist()


def test_test_split_is_evaluated_once_after_training(data, monkeypatch):
    seen = []

    def spy(model, images, labels):
        seen.append((images, labels))
        return evaluate(model, images, labels)

    evaluate = train.evaluate
    monkeypatch.setattr(train, "evaluate", spy)
    result = train_cell(_settings(epochs=1), data)
    *validations, last = seen
    assert len(validations) == len(result.history) == 4
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
    # seen at the latest at the first validation after the first update (step 4), where weights are checked
    assert 1 <= summary["diverged_at_step"] <= 4
    assert summary["steps_trained"] == summary["diverged_at_step"] < summary["budget_steps"]
    assert history["step"].tolist() == [0, summary["diverged_at_step"]]
    assert math.isfinite(history["val_accuracy"].iloc[0])  # the untrained model was sound
    assert history[["val_accuracy", "val_loss", "train_accuracy"]].iloc[-1].isna().all()
    for key in ("final_val_accuracy", "final_val_loss", "test_accuracy", "test_loss"):
        assert summary[key] is None, key
    assert summary["best_val_accuracy"] == history["val_accuracy"].iloc[0]
    write_cell_outputs(tmp_path, CellOutputs({"cell": "diverged", **summary}, history))
    written = json.loads((tmp_path / "metrics.json").read_text(), parse_constant=lambda c: pytest.fail(f"bare {c}"))
    assert written["outcome"] == "diverged" and written["test_accuracy"] is None
    assert written["diverged_at_step"] == summary["diverged_at_step"]


def test_nan_weights_are_divergence_even_when_outputs_look_finite(data, monkeypatch):
    # A clipped loss or output can hide NaN weights, so the weights themselves are checked at each evaluation.
    monkeypatch.setattr(train, "evaluate", lambda model, images, labels: (1.0, 0.5))
    model = build_model(ModelSpec("mlp", "relu", "off", 0.0, 0.99, 0.001), data.input_shape, data.num_classes)
    schedule = train.ValidationSchedule(data, 32, 1, on_eval=lambda row: None, clock=SteppingClock())
    schedule.set_model(model)
    schedule.on_train_begin()
    assert schedule.diverged_at is None and schedule.rows[0]["val_accuracy"] == 0.5
    kernel = model.layers[1].kernel
    kernel.assign(keras.ops.where(keras.ops.arange(kernel.shape[1]) == 0, math.nan, kernel))
    schedule.on_train_batch_begin(0)
    schedule.on_train_batch_end(0, {"loss": 2.3, "accuracy": 0.1})
    schedule.on_train_batch_begin(9)
    schedule.on_train_batch_end(9, {"loss": 2.3, "accuracy": 0.1})  # the epoch's last step: a validation
    assert schedule.diverged_at == 2 and model.stop_training
    assert schedule.rows[-1]["val_accuracy"] is None


def test_a_nan_loss_stops_training_at_that_step(data):
    model = build_model(ModelSpec("mlp", "relu", "off", 0.0, 0.99, 0.001), data.input_shape, data.num_classes)
    schedule = train.ValidationSchedule(data, 32, 1, on_eval=lambda row: None, clock=SteppingClock())
    schedule.set_model(model)
    schedule.on_train_begin()
    for batch, loss in enumerate([2.3, 2.2, math.nan]):
        schedule.on_train_batch_begin(batch)
        schedule.on_train_batch_end(batch, {"loss": loss, "accuracy": 0.1})
    assert schedule.diverged_at == 3 and model.stop_training
    assert [row["step"] for row in schedule.rows] == [0, 3] and schedule.rows[-1]["val_accuracy"] is None


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
