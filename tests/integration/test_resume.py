"""A cell interrupted after an epoch resumes from its checkpoint and ends exactly as if never stopped (CPU).

In this process: training stopped by construction right after an epoch's checkpoint, then resumed by a
new model, against an uninterrupted run. In real processes (`python -m pipeline.train`, the train
stage's command): SIGKILL after the first epoch's checkpoint, SIGTERM after the second's, then a run
that finishes; MLflow ends with the killed run KILLED, the terminated one FAILED, one FINISHED run.
Only the timing fields may differ.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys

import keras
import numpy as np
import pandas as pd
import pytest
from mlflow.tracking import MlflowClient
from ruamel.yaml import YAML

from pipeline.cell.checkpoints import CHECKPOINTS_DIR, FileCheckpoint
from pipeline.cell.outputs import CellOutputs, write_cell_outputs
from pipeline.cell.training import TrainingState, train_cell
from pipeline.data.prepared import load_prepared
from pipeline.study.cells import cell_settings, find_cell
from pipeline.study.params import load_params
from pipeline.study.schema import CellSettings
from tests.helpers import REPO, kill_group, pause_env, start_group, wait_for, write_tiny_prepared

# What times the training: the only fields a resumed cell may have otherwise.
TIMING = {"compile_seconds", "train_seconds", "throughput_images_per_s"}
RESUME = {"resumed_from_step", "timing_comparable"}
STEPS_PER_EPOCH = 10  # 300 training images in batches of 32


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    return write_tiny_prepared(tmp_path_factory.mktemp("resume-data"))  # 300 train, 100 val


class Interrupted(Exception):
    pass


class StopAfterEpoch:
    """Checkpoints that stop the training right after saving epoch `epoch`: an interruption by construction."""

    def __init__(self, inner: FileCheckpoint, epoch: int):
        self.inner, self.epoch = inner, epoch

    def load(self) -> TrainingState | None:
        return self.inner.load()

    def save(self, state: TrainingState) -> None:
        self.inner.save(state)
        if state.step == self.epoch * STEPS_PER_EPOCH:
            raise Interrupted


def _settings(cell: dict, **train) -> CellSettings:
    base = {
        "optimizer": {"name": "rmsprop", "learning_rate": 0.001}, "batch_size": 32, "evals_per_epoch": 2,
        "bn_momentum": 0.9, "bn_epsilon": 0.001, "gradient_probe": 32, "bn_probe": 64,
    }  # fmt: skip
    return CellSettings.model_validate({**cell, "train": {**base, **train}})


def _fresh_keras() -> None:
    # Layer names (the history's grad_norm/<layer> columns) come from Keras' global counters, as in a new process.
    keras.backend.clear_session()


def _without(summary: dict, keys: set[str]) -> dict:
    return {k: v for k, v in summary.items() if k not in keys}


@pytest.mark.parametrize(
    "settings",
    [
        pytest.param(
            _settings(
                {"dataset": "fashion_mnist", "activation": "relu", "bn": "pre", "dropout": 0.25, "seed": 4},
                architecture="seed_cnn",
                epochs=2,
                augmentation={"horizontal_flip": True},
            ),
            id="cnn-bn-dropout-augmentation",
        ),  # fmt: skip
        pytest.param(
            _settings(
                {"dataset": "fashion_mnist", "activation": "sigmoid", "bn": "post", "dropout": 0.5, "seed": 1},
                architecture="mlp",
                epochs=2,
                optimizer={"name": "adam", "learning_rate": 0.003},
            ),
            id="mlp-bn-dropout-adam",
        ),  # fmt: skip
    ],
)
def test_a_resumed_cell_ends_as_an_uninterrupted_one(prepared, tmp_path, settings):
    data = load_prepared(prepared)
    _fresh_keras()
    reference = train_cell(settings, data)
    store = FileCheckpoint(tmp_path / "checkpoint", key="cell")
    _fresh_keras()
    with pytest.raises(Interrupted):
        train_cell(settings, data, checkpoints=StopAfterEpoch(store, epoch=1))
    assert store.load().step == STEPS_PER_EPOCH
    _fresh_keras()
    seen: list[dict] = []
    resumed = train_cell(settings, data, on_eval=seen.append, checkpoints=store)

    assert resumed.summary["resumed_from_step"] == STEPS_PER_EPOCH and resumed.summary["timing_comparable"] is False
    assert reference.summary["resumed_from_step"] is None and reference.summary["timing_comparable"] is True
    assert _without(resumed.summary, TIMING | RESUME) == _without(reference.summary, TIMING | RESUME)
    pd.testing.assert_frame_equal(resumed.steps, reference.steps)
    pd.testing.assert_frame_equal(resumed.history.drop(columns="seconds"), reference.history.drop(columns="seconds"))
    pd.testing.assert_frame_equal(pd.DataFrame(seen), resumed.history)  # the restored rows reach the tracking hook too
    # every variable: weights, BN moving statistics, seed-generator states, the optimizer's slots and step
    for ours, theirs in (
        (resumed.model.variables, reference.model.variables),
        (resumed.model.optimizer.variables, reference.model.optimizer.variables),
    ):
        assert len(ours) == len(theirs)
        for a, b in zip(ours, theirs, strict=True):
            np.testing.assert_array_equal(keras.ops.convert_to_numpy(a), keras.ops.convert_to_numpy(b), a.path)


# -- real processes: the train stage's command, killed and terminated ------------------------------

CELL = "fashion_mnist-relu-post-0.5-0"  # BN and dropout


def _overlay(root) -> list:
    overlay = {
        "study": {"name": "resume-test"},
        "matrix": {"dataset": ["fashion_mnist"], "activation": ["relu"], "bn": ["post"], "dropout": [0.5], "seed": [0]},
        "train": {"architecture": "mlp", "epochs": 3, "evals_per_epoch": 2, "gradient_probe": 32, "bn_probe": 64},
    }  # fmt: skip
    YAML().dump(overlay, root / "overlay.yaml")
    return [REPO / "params.yaml", root / "overlay.yaml"]


def _train_command(params_files, prepared, out) -> list[str]:
    params = [arg for path in params_files for arg in ("--params", str(path))]
    return [sys.executable, "-m", "pipeline.train", *params, "--cell", CELL, "--data", str(prepared), "--out", str(out)]


def _runs(client: MlflowClient) -> list:
    experiment = client.get_experiment_by_name("resume-test")
    if experiment is None:
        return []
    return client.search_runs([experiment.experiment_id], "tags.`bnbench.role` = 'cell'", order_by=["start_time ASC"])


def test_killed_then_terminated_cell_resumes_in_a_new_process(prepared, tmp_path):
    params_files = _overlay(tmp_path)
    out = tmp_path / "results" / CELL
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "DVC_", "BNBENCH_"))},
        "DVC_ROOT": str(tmp_path),  # the checkpoints go under <root>/.bnbench/checkpoints
        "MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path / 'mlflow.db'}",
        "PYTHONPATH": str(REPO),
    }
    command = _train_command(params_files, prepared, out)
    client = MlflowClient(env["MLFLOW_TRACKING_URI"])
    folder = tmp_path / CHECKPOINTS_DIR / "resume-test" / "fixed" / CELL
    saving = "pipeline.cell.checkpoints:FileCheckpoint.save"

    # 1: SIGKILL while it saves epoch 2 (epoch 1's checkpoint is on disk): its MLflow run stays RUNNING
    marker = tmp_path / "paused-1"
    first = start_group(command, REPO, pause_env(env, marker, saving, call=2), tmp_path / "first.log")
    wait_for(marker.exists, "the pause before epoch 2's checkpoint", first)
    kill_group(first)
    (checkpoint,) = folder.glob("*.npz")
    assert [r.info.status for r in _runs(client)] == ["RUNNING"]

    # 2: resumes from epoch 1; SIGTERM while it saves epoch 3: the run ends FAILED, the stage exits 143
    marker = tmp_path / "paused-2"
    second = start_group(command, REPO, pause_env(env, marker, saving, call=2), tmp_path / "second.log")
    wait_for(marker.exists, "the pause before epoch 3's checkpoint", second)
    assert kill_group(second, signal.SIGTERM) == 143, (tmp_path / "second.log").read_text()[-3000:]
    assert "stopped by signal SIGTERM" in (tmp_path / "second.log").read_text()
    assert [r.info.status for r in _runs(client)] == ["KILLED", "FAILED"]  # the first marked as the second began
    assert not out.exists()

    # 3: resumes from epoch 2 and finishes
    done = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    runs = _runs(client)
    assert [r.info.status for r in runs] == ["KILLED", "FAILED", "FINISHED"]
    assert not folder.exists()  # deleted once the outputs were written
    summary = json.loads((out / "metrics.json").read_text())
    assert summary["resumed_from_step"] == 2 * STEPS_PER_EPOCH and summary["timing_comparable"] is False
    assert runs[-1].data.metrics["summary/resumed_from_step"] == 2 * STEPS_PER_EPOCH
    # the finished run holds the whole curve: the rows restored from the checkpoint were logged again
    history = pd.read_csv(out / "history.csv")
    logged = client.get_metric_history(runs[-1].info.run_id, "curves/val_accuracy")
    assert sorted(m.step for m in logged) == history["step"].tolist()

    # the same cell never interrupted, in this process: the same outputs but for the timing
    params = load_params(*params_files)
    _fresh_keras()
    reference = train_cell(cell_settings(params, find_cell(params, CELL, "test")), load_prepared(prepared))
    written = write_cell_outputs(
        tmp_path / "reference", CellOutputs({"cell": CELL, **reference.summary}, reference.history, reference.steps)
    )
    theirs = json.loads(written[0].read_text())
    assert {k: summary[k] for k in theirs if k not in TIMING | RESUME} == _without(theirs, TIMING | RESUME)
    assert (out / "steps.csv").read_bytes() == written[2].read_bytes()
    pd.testing.assert_frame_equal(history.drop(columns="seconds"), pd.read_csv(written[1]).drop(columns="seconds"))
