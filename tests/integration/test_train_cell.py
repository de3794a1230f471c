"""One cell on a few hundred generated samples, through the same functions the stage uses."""

from __future__ import annotations

import json
import math

import pytest

from pipeline.cells import Cell
from pipeline.data.fashion_mnist import read_fashion_mnist
from pipeline.data.prepared import channel_stats, load_prepared, split_dataset, write_prepared
from pipeline.params import TrainParams
from pipeline.train import train_cell, write_cell_outputs
from tests.fake_data import write_fashion_mnist


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("fmnist")
    write_fashion_mnist(root, train=400, test=100)
    raw = read_fashion_mnist(root)
    splits = split_dataset(raw, val_fraction=0.25, seed=0)
    mean, std = channel_stats(splits["train"].images)
    meta = {"mean": mean, "std": std, "class_names": raw.class_names, "data_digest": "d", "published_data": False}
    write_prepared(root / "prepared", splits, meta)
    return load_prepared(root / "prepared")


def _settings(**overrides) -> TrainParams:
    base = {
        "architecture": "seed_cnn", "optimizer": {"name": "rmsprop", "learning_rate": 0.001},
        "epochs": 2, "batch_size": 32, "evals_per_epoch": 3, "bn_momentum": 0.99, "bn_epsilon": 0.001,
    }  # fmt: skip
    return TrainParams.model_validate({**base, **overrides})


def test_one_cell_trains_and_measures(data, tmp_path):
    seen = []
    result = train_cell(_settings(), Cell("fashion_mnist", "relu", "pre", 0.0, 0), data, on_eval=seen.append)
    history, summary = result.history, result.summary
    assert len(history) == 1 + 2 * 3 == len(seen)  # step 0, then 3 passes per epoch
    assert history["step"].tolist() == [0, 4, 7, 10, 14, 17, 20]  # 10 steps per epoch (300 / 32)
    assert history["epoch"].iloc[-1] == 2.0 and history["seconds"].is_monotonic_increasing
    assert summary["outcome"] == "completed" and summary["steps_trained"] == summary["budget_steps"] == 20
    assert 0 <= summary["test_accuracy"] <= 1 and summary["best_val_accuracy"] >= summary["final_val_accuracy"] - 1e-9
    assert summary["throughput_images_per_s"] > 0
    assert history["val_accuracy"].iloc[-1] > 0.2, "the synthetic classes are learnable"
    paths = write_cell_outputs(result, tmp_path, title="cell")
    assert all(p.stat().st_size > 0 for p in paths)


def test_same_seed_same_curve_other_seed_other_curve(data):
    cell = Cell("fashion_mnist", "sigmoid", "post", 0.5, 7)
    runs = [
        train_cell(_settings(epochs=1), c, data).history["val_loss"].tolist()
        for c in (cell, cell, Cell(**{**cell.as_dict(), "seed": 8}))
    ]
    assert runs[0] == runs[1]
    assert runs[0] != runs[2]


def test_divergence_is_an_outcome_not_a_crash(data, tmp_path):
    settings = _settings(epochs=1, optimizer={"name": "sgd", "learning_rate": 1e12})
    result = train_cell(settings, Cell("fashion_mnist", "relu", "off", 0.0, 0), data)
    assert result.summary["outcome"] == "diverged"
    assert result.summary["diverged_at_step"] is not None
    write_cell_outputs(result, tmp_path, title="diverged")
    written = json.loads((tmp_path / "metrics.json").read_text(), parse_constant=lambda c: pytest.fail(f"bare {c}"))
    assert written["outcome"] == "diverged" and written["test_loss"] is None
    assert result.summary["steps_trained"] < result.summary["budget_steps"] or math.isnan(
        result.summary["final_val_loss"]
    )
