"""What MLflow receives for a cell: metrics at their steps, and a parent run per study."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import threading

import pandas as pd
import pytest
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient
from ruamel.yaml import YAML

from pipeline.cell.convergence import target_metrics
from pipeline.study.cells import Cell, cell_settings, expand_matrix
from pipeline.study.params import load_params
from pipeline.tracking import runs as tracking
from pipeline.tracking.datasets import split_digest
from pipeline.tracking.parent import PARENT_TAG, settle
from pipeline.tracking.settings import read_tracking_settings
from pipeline.tracking.spool import RunSpool
from pipeline.tracking.step_losses import MAX_POINTS, step_loss_points
from pipeline.tracking.study_run import attach_report
from pipeline.tracking.sync import sync_run
from tests.helpers import REPO, free_port, write_tiny_prepared

QUICK = (REPO / "params.yaml", REPO / "studies" / "quick" / "params.yaml")

META = {"data_digest": "digest", "published_data": False}


@pytest.fixture
def store(tmp_path, monkeypatch):
    """A fresh SQLite store in tmp_path, with artifacts beside it."""
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    monkeypatch.setenv("DVC_ROOT", str(tmp_path))
    monkeypatch.setenv("DVC_STAGE", "train@test")
    monkeypatch.setenv("DVC_EXP_NAME", "rapt-gyps")
    return MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")


def _row(step: int, val_accuracy: float | None) -> dict:
    return {
        "step": step, "epoch": step / 10, "seconds": step * 0.5, "train_loss": None if step == 0 else 2.0,
        "train_accuracy": None if step == 0 else 0.3, "val_loss": 2.1, "val_accuracy": val_accuracy,
    }  # fmt: skip


def _cell(params, **axes) -> Cell:
    (cell,) = [c for c in expand_matrix(params) if all(c[k] == v for k, v in axes.items())]
    return cell


def _track(params, cell, rows, tmp_path, data_dir=None, meta=META) -> None:
    summary = {"outcome": "completed", "steps_trained": rows[-1]["step"], "test_accuracy": 0.5, "axes": {}}
    artifact = tmp_path / "metrics.json"
    artifact.write_text("{}")
    steps = pd.DataFrame({"step": range(1, 11), "train_loss": [2.5 - 0.1 * s for s in range(10)]})
    steps.loc[5, "train_loss"] = math.nan  # not a number: left out of MLflow
    times = target_metrics(pd.DataFrame(rows), params.targets_for(cell.dataset), steps, params.report.loss_window)
    with tracking.track_cell(
        read_tracking_settings(tmp_path), params, cell, cell_settings(params, cell), meta, "cpu", data_dir=data_dir
    ) as run:
        for row in rows:
            run.log_eval(row)
        run.log_steps(steps)
        run.finish(summary, times, [artifact])


def _cells(client, experiment_name):
    experiment = client.get_experiment_by_name(experiment_name)
    return client.search_runs([experiment.experiment_id], "tags.`bnbench.role` = 'cell'")


def test_metrics_are_logged_at_their_steps(store, tmp_path):
    quick = load_params(*QUICK)
    # with a third value axis: it must reach MLflow like the others
    params = quick.model_copy(update={"matrix": {**quick.matrix, "train.optimizer.learning_rate": [0.01, 0.002]}})
    cell = _cell(
        params, dataset="cifar10", activation="relu", bn="post", seed=0, **{"train.optimizer.learning_rate": 0.002}
    )
    rows = [_row(0, 0.1), _row(4, 0.35), _row(7, math.nan), _row(10, 0.45)]
    rows[1]["grad_norm/conv2d"] = 0.5  # a probe's column: a layer's gradient norm
    prepared = write_tiny_prepared(tmp_path / "data")
    meta = json.loads((prepared / "meta.json").read_text())
    _track(params, cell, rows, tmp_path, prepared, meta)
    (run,) = _cells(store, params.study.name)
    # the run's name leads with what differs between the study's cells (quick: activation, bn, seed; here the rate too; its dropout has one value)
    assert run.info.run_name == "relu·post·s0·lr0.002 · cifar10"
    # metrics in sections, the curves' first (MLflow's UI groups charts by the prefix before '/')
    sections = {key.split("/", 1)[0] for key in run.data.metrics}
    assert sections == {"curves", "gradients", "progress", "summary"}, run.data.metrics
    assert run.data.metrics["gradients/conv2d"] == 0.5
    # the training and validation splits, as MLflow datasets with the prepared data's digest in theirs
    inputs = {i.tags[0].value: i.dataset for i in run.inputs.dataset_inputs}
    assert sorted(inputs) == ["training", "validation"]
    assert inputs["training"].name == "fashion_mnist/train" and inputs["validation"].name == "fashion_mnist/val"
    assert inputs["training"].digest == split_digest(meta["data_digest"], "train") != inputs["validation"].digest
    assert json.loads(inputs["training"].profile)["features_shape"] == [300, 28, 28, 1]
    assert json.loads(inputs["validation"].profile)["targets_shape"] == [100]
    history = store.get_metric_history(run.info.run_id, "curves/val_accuracy")
    assert [(m.step, m.value) for m in history] == [(0, 0.1), (4, 0.35), (10, 0.45)]  # NaN left out
    assert [m.step for m in store.get_metric_history(run.info.run_id, "curves/train_loss")] == [4, 7, 10]
    assert [m.value for m in store.get_metric_history(run.info.run_id, "progress/epoch")] == [0, 0.4, 0.7, 1.0]
    # time to each of the study's targets (quick: 0.3 and 0.4 on cifar10), logged at the last step; interpolated:
    # 0.1 -> 0.35 over steps 0-4 crosses 0.3 at 3.2; 0.35 -> 0.45 over 4-10 (the NaN pass skipped) crosses 0.4 at 7 (3.5 s)
    assert run.data.metrics["summary/steps_to_acc30"] == pytest.approx(3.2)
    assert run.data.metrics["summary/seconds_to_acc40"] == pytest.approx(3.5)
    # each step's training loss at its own step, the NaN one left out
    per_step = store.get_metric_history(run.info.run_id, tracking.STEP_LOSS_METRIC)
    assert sorted((m.step, round(m.value, 6)) for m in per_step) == [
        (s + 1, round(2.5 - 0.1 * s, 6)) for s in range(10) if s != 5
    ]
    assert "summary/steps_to_acc50" not in run.data.metrics and run.data.metrics["summary/test_accuracy"] == 0.5
    assert [m.step for m in store.get_metric_history(run.info.run_id, "summary/test_accuracy")] == [10]
    assert run.data.tags["bnbench.dvc_stage"] == "train@test" and run.data.params["bn"] == "post"
    assert run.data.tags["bnbench.dvc_exp"] == "rapt-gyps"  # the experiment `dvc exp run` named
    # every axis is a param and a tag; every effective setting is a param under its dotted key
    assert all(run.data.tags[axis] == run.data.params[axis] == str(cell[axis]) for axis in params.matrix)
    assert run.data.params["train.optimizer.learning_rate"] == "0.002" and run.data.params["train.epochs"] == "2"
    assert run.data.tags["bnbench.cell"] == "cifar10-relu-post-0.0-0-learning_rate_0.002"
    assert run.data.tags["bnbench.backend"] == "tensorflow"  # the Keras backend this suite runs
    assert {a.path for a in store.list_artifacts(run.info.run_id)} == {"metrics.json"}


class GatedStore:
    """The cell's MLflow client, its calls held at `gate` until the test opens it, or refused while `down`.

    A call that the cell's own thread makes while the gate is shut (a store call on the training path)
    is counted and refused at once, so that such a fault fails its test without waiting.
    """

    def __init__(self, client: MlflowClient):
        self.client = client
        self.entered, self.gate = threading.Event(), threading.Event()
        self.down = False
        self.on_the_training_path = 0

    def __getattr__(self, name):
        call = getattr(self.client, name)

        def held(*args, **kwargs):
            if threading.current_thread() is threading.main_thread() and not self.gate.is_set():
                self.on_the_training_path += 1
                raise MlflowException("a store call on the training path")
            self.entered.set()
            assert self.gate.wait(timeout=300), "the test never opened the gate"
            if self.down:
                raise MlflowException("the store is down")
            return call(*args, **kwargs)

        return held


def _many_evals(count: int) -> list[dict]:
    return [{"step": 10 * k, "epoch": k / 4, "val_accuracy": k / 100, "val_loss": 2.0 - k / 100} for k in range(count)]


def test_log_calls_return_while_the_store_is_busy_and_the_end_delivers_everything(store, tmp_path):
    params = load_params(*QUICK)
    cell = _cell(params, dataset="cifar10", activation="relu", bn="off", seed=0)
    rows, steps = _many_evals(40), pd.DataFrame({"step": range(1, 3001), "train_loss": [1 / s for s in range(1, 3001)]})
    settings = read_tracking_settings(tmp_path)
    with tracking.track_cell(settings, params, cell, cell_settings(params, cell), META, "cpu") as run:
        gated = run.delivery.client = GatedStore(run.delivery.client)
        run.log_eval(rows[0])
        assert gated.on_the_training_path == 0
        assert gated.entered.wait(timeout=300)  # the delivery thread is in a store call, held
        for row in rows[1:]:
            run.log_eval(row)
        run.log_steps(steps)
        run.finish({"outcome": "completed", "steps_trained": 3000, "test_accuracy": 0.5}, {}, [])
        # every call returned; the held delivery has not reached the store
        assert gated.on_the_training_path == 0 and not store.get_metric_history(run.run_id, "curves/val_accuracy")
        gated.gate.set()
    logged = store.get_run(run.run_id)
    assert logged.info.status == "FINISHED" and logged.data.metrics["summary/test_accuracy"] == 0.5
    history = sorted((m.step, m.value) for m in store.get_metric_history(run.run_id, "curves/val_accuracy"))
    assert history == [(row["step"], row["val_accuracy"]) for row in rows]
    per_step = sorted((m.step, m.value) for m in store.get_metric_history(run.run_id, tracking.STEP_LOSS_METRIC))
    assert per_step == step_loss_points(steps) and len(per_step) <= MAX_POINTS
    assert not settings.spool_dir.joinpath(run.run_id).exists()


def test_a_store_failing_under_the_delivery_thread_leaves_all_in_the_spool_and_warns_once(store, tmp_path, capsys):
    params = load_params(*QUICK)
    cell = _cell(params, dataset="cifar10", activation="relu", bn="off", seed=0)
    rows, settings = _many_evals(5), read_tracking_settings(tmp_path)
    artifact = tmp_path / "steps.csv"
    artifact.write_text("step,train_loss\n1,2.5\n")
    with tracking.track_cell(settings, params, cell, cell_settings(params, cell), META, "cpu") as run:
        failing = run.delivery.client = GatedStore(run.delivery.client)
        failing.down = True
        failing.gate.set()
        for row in rows:
            run.log_eval(row)
        run.log_steps(pd.DataFrame({"step": [1], "train_loss": [2.5]}))
        run.finish({"outcome": "completed", "steps_trained": 40, "test_accuracy": 0.5}, {}, [artifact])
    ours = [line for line in capsys.readouterr().err.splitlines() if line.startswith("bnbench:")]  # (and MLflow's)
    assert len(ours) == 1 and ours[0].startswith(
        f"bnbench: warning: the MLflow tracking server at {store.tracking_uri}"
    )
    err = ours[0]
    assert "did not take all of run" in err and tracking.SYNC_COMMAND in err
    assert store.get_run(run.run_id).info.status == "RUNNING" and not store.get_run(run.run_id).data.metrics
    spool = RunSpool(settings.spool_dir / run.run_id)
    kinds = [next(key for key in entry if key != "id") for entry in spool.pending()]
    assert kinds[-2:] == ["end", "settle"] and "artifact" in kinds and kinds.count("metrics") >= len(rows) + 2
    assert spool.lock(wait=False)  # the cell let go of it: the sync may deliver it
    assert sync_run(spool, store.tracking_uri).endswith("ended FINISHED")
    logged = store.get_run(run.run_id)
    assert logged.info.status == "FINISHED" and logged.data.metrics[tracking.STEP_LOSS_METRIC] == 2.5
    assert [m.step for m in store.get_metric_history(run.run_id, "curves/val_accuracy")] == [r["step"] for r in rows]
    assert [a.path for a in store.list_artifacts(run.run_id)] == ["steps.csv"]


def test_cells_of_a_study_share_one_parent_and_other_settings_start_another(store, tmp_path):
    params = load_params(*QUICK)
    axes = {"dataset": "cifar10", "activation": "relu", "bn": "off"}
    for seed in (0, 1):
        _track(params, _cell(params, **axes, seed=seed), [_row(0, 0.1)], tmp_path)
    more_seeds = params.model_copy(update={"matrix": {**params.matrix, "seed": [0, 1, 2]}})
    _track(more_seeds, _cell(more_seeds, **axes, seed=2), [_row(0, 0.1)], tmp_path)
    longer = params.model_copy(update={"train": params.train.model_copy(update={"epochs": 3})})
    _track(longer, _cell(longer, **axes, seed=0), [_row(0, 0.1)], tmp_path)

    runs = _cells(store, params.study.name)
    parent_of = {
        (r.data.params["seed"], r.data.params["train.epochs"]): r.data.tags["mlflow.parentRunId"] for r in runs
    }
    assert len(parent_of) == 4
    # adding seeds extends a study; changing what every cell shares (the budget) is another study
    assert parent_of[("0", "2")] == parent_of[("1", "2")] == parent_of[("2", "2")] != parent_of[("0", "3")]
    for parent in set(parent_of.values()):
        run = store.get_run(parent)
        assert run.data.tags["bnbench.role"] == "study" and run.info.status == "RUNNING"  # until its report
    keys = {store.get_run(p).data.tags["bnbench.study_key"] for p in parent_of.values()}
    assert keys == {tracking.study_key(params), tracking.study_key(longer)}


def test_a_cell_that_finds_several_parents_joins_the_one_settling_keeps(store, tmp_path):
    """Racing creators can leave a study several parent runs; a cell that starts then joins the first of them.

    A cell settles its study when it ends (moving a child of another parent): what it joined is read while it runs.
    """
    params = load_params(*QUICK)
    key = tracking.study_key(params)
    experiment_id = store.create_experiment(params.study.name, artifact_location=(tmp_path / "mlruns").as_uri())
    # the first by (start time, run id) is neither the first nor the last created, nor the newest (a search's first)
    made = {}
    for start_ms in (2_000, 1_000, 3_000):
        tags = {"bnbench.role": "study", "bnbench.study_key": key}
        made[start_ms] = store.create_run(experiment_id, start_time=start_ms, tags=tags).info.run_id
    cell = _cell(params, dataset="cifar10", activation="relu", bn="off", seed=0)
    settings = read_tracking_settings(tmp_path)
    with tracking.track_cell(settings, params, cell, cell_settings(params, cell), META, "cpu") as run:
        joined = store.get_run(run.run_id).data.tags[PARENT_TAG]
    assert joined == made[1_000]
    # once it ended and settled its study: the one it joined is the one parent left, and it never moved
    kept = store.search_runs([experiment_id], "tags.`bnbench.role` = 'study'")
    assert [r.info.run_id for r in kept] == [joined]
    assert store.get_run(run.run_id).data.tags[PARENT_TAG] == joined
    settle(store, experiment_id, key)  # a later settling keeps it too
    assert [r.info.run_id for r in store.search_runs([experiment_id], "tags.`bnbench.role` = 'study'")] == [joined]


def test_the_report_ends_the_study_run_with_its_page_and_numbers(store, tmp_path, capsys):
    params = load_params(*QUICK)
    axes = {"dataset": "cifar10", "activation": "relu", "bn": "off"}
    for seed in (0, 1):
        _track(params, _cell(params, **axes, seed=seed), [_row(0, 0.1)], tmp_path)
    (first, second) = sorted(_cells(store, params.study.name), key=lambda r: r.info.start_time)
    out = tmp_path / "reports"
    out.mkdir()
    (out / "index.html").write_text("<html>the page</html>")
    (out / "findings.json").write_text('{"study": "bnbench-quick"}')
    dvc_metrics = tmp_path / "metrics" / "quick.json"  # the study's DVC metrics, beside the other studies'
    dvc_metrics.parent.mkdir()
    dvc_metrics.write_text(json.dumps({"bn-post-steps": {"cifar10": {"effect": 1.5, "n": 2, "verdict": "supported"}}}))
    run_id = attach_report(read_tracking_settings(tmp_path), params, out, dvc_metrics)
    assert run_id == first.data.tags[PARENT_TAG] == second.data.tags[PARENT_TAG]
    study = store.get_run(run_id)
    # the study's real span: from before its first cell started to the report's end
    assert study.info.status == "FINISHED"
    assert study.info.start_time <= first.info.start_time and study.info.end_time >= second.info.end_time
    assert {a.path for a in store.list_artifacts(run_id, "report")} == {
        "report/index.html",
        "report/findings.json",
        "report/quick.json",
    }
    assert study.data.metrics == {"findings/bn-post-steps/cifar10/effect": 1.5, "findings/bn-post-steps/cifar10/n": 2}
    assert study.data.tags["bnbench.dvc_stage"] == "train@test" and study.data.tags["bnbench.dvc_exp"] == "rapt-gyps"
    # another cell of the study (one more seed) opens it again, until the next report
    _track(params, _cell(params, **axes, seed=0), [_row(0, 0.1)], tmp_path)
    assert store.get_run(run_id).info.status == "RUNNING"
    assert "warning" not in capsys.readouterr().err


def test_a_report_whose_server_is_gone_is_kept_with_one_warning(tmp_path, capsys):
    params = load_params(*QUICK)
    out = tmp_path / "reports"
    out.mkdir()
    (out / "index.html").write_text("<html>the page</html>")
    dvc_metrics = tmp_path / "quick.json"
    dvc_metrics.write_text("{}")
    gone = read_tracking_settings(tmp_path, {"MLFLOW_TRACKING_URI": f"http://127.0.0.1:{free_port()}"})
    assert attach_report(gone, params, out, dvc_metrics) is None
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("bnbench: warning: the report is written, but not attached")
    assert "run the report stage again" in err and (out / "index.html").exists() and dvc_metrics.exists()


@pytest.mark.parametrize("log_model", [False, True])
def test_the_trained_model_is_logged_when_the_params_say_so(tmp_path, log_model):
    """The train stage's command, as DVC runs it: `train.log_model` decides whether the run keeps model.keras."""
    prepared = write_tiny_prepared(tmp_path / "data", train=200, test=50)
    overlay = {
        "study": {"name": "log-model-test"},
        "matrix": {"dataset": ["fashion_mnist"], "activation": ["relu"], "bn": ["post"], "dropout": [0.0], "seed": [0]},
        "train": {"architecture": "mlp", "epochs": 1, "evals_per_epoch": 1, "gradient_probe": 0, "bn_probe": 0},
    }  # fmt: skip
    if log_model:
        overlay["train"]["log_model"] = True
    YAML().dump(overlay, tmp_path / "overlay.yaml")
    cell, out, uri = "fashion_mnist-relu-post-0.0-0", tmp_path / "out", f"sqlite:///{tmp_path / 'mlflow.db'}"
    params = [a for f in (REPO / "params.yaml", tmp_path / "overlay.yaml") for a in ("--params", str(f))]
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "DVC_", "BNBENCH_"))},
        "DVC_ROOT": str(tmp_path),
        "MLFLOW_TRACKING_URI": uri,
    }
    command = [sys.executable, "-m", "pipeline.train", *params, "--cell", cell, "--data", str(prepared), "--out", str(out)]  # fmt: skip
    done = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    client = MlflowClient(uri)
    (run,) = _cells(client, "log-model-test")
    artifacts = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert run.data.params["train.log_model"] == str(log_model)
    assert ("model.keras" in artifacts) == log_model and {"metrics.json", "steps.csv"} <= artifacts  # every step's loss
    assert "model.keras" not in {p.name for p in out.iterdir()}  # the stage's outputs never hold it
    if log_model:  # the model itself: Keras loads it back, with the parameters the cell counted
        import keras

        path = client.download_artifacts(run.info.run_id, "model.keras", str(tmp_path / "downloaded"))
        model = keras.saving.load_model(path, compile=False)  # its training metric is the cell's own class
        assert model.count_params() == json.loads((out / "metrics.json").read_text())["parameters"]
