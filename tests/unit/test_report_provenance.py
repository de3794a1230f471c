"""Where a report came from: the dvc.lock digest, links to MLflow runs, the tidy table."""

from __future__ import annotations

import hashlib
import json
import socket

import pytest
from ruamel.yaml import YAML

from pipeline.report.build import build_report
from pipeline.report.lockfile import lock_digest
from pipeline.report.mlflow_links import RunLinks, run_links
from pipeline.study.axes import flatten
from pipeline.tracking.settings import read_tracking_settings
from tests.fabricated_cells import study_params, write_cell
from tests.helpers import mlflow_server

LOCK = {
    "schema": "2.0",
    "stages": {
        "train@cifar10-relu-off-0.0-0": {"cmd": "python -m pipeline.train", "outs": [{"path": "x", "md5": "aa"}]},
        "report": {"cmd": "python -m pipeline.report", "outs": [{"path": "reports/index.html", "md5": "bb"}]},
    },
}


def _write_lock(path, lock):
    YAML(typ="safe", pure=True).dump(lock, path)
    return path


def test_lock_digest_covers_every_stage_but_the_report(tmp_path):
    digest = lock_digest(_write_lock(tmp_path / "dvc.lock", LOCK))
    upstream = {"schema": "2.0", "stages": {k: v for k, v in LOCK["stages"].items() if k != "report"}}
    by_hand = hashlib.sha256(json.dumps(upstream, sort_keys=True, separators=(",", ":")).encode()).hexdigest()
    assert digest.sha256 == by_hand and digest.stages == 1
    # The report's own entry (last run's, or none on the first run) does not change it ...
    first_run = {"schema": "2.0", "stages": {k: v for k, v in LOCK["stages"].items() if k != "report"}}
    assert lock_digest(_write_lock(tmp_path / "first.lock", first_run)).sha256 == digest.sha256
    # ... an upstream change does.
    changed = json.loads(json.dumps(LOCK))
    changed["stages"]["train@cifar10-relu-off-0.0-0"]["outs"][0]["md5"] = "cc"
    assert lock_digest(_write_lock(tmp_path / "changed.lock", changed)).sha256 != digest.sha256


def test_no_lock_file_is_said_plainly(tmp_path):
    digest = lock_digest(tmp_path / "dvc.lock")
    assert digest.sha256 is None and "outside `dvc repro`" in digest.note
    assert lock_digest(None).sha256 is None


def _study(tmp_path):
    params = study_params(tmp_path, bn=["off", "post"], seed=[0, 1])
    cells = tmp_path / "cells"
    for bn in ("off", "post"):
        for seed in (0, 1):
            write_cell(cells, bn=bn, seed=seed, crossings={0.5: 30, 0.6: 50, 0.7: None})
    return params, cells


def test_page_shows_the_lock_digest_and_results_are_one_row_per_run(tmp_path):
    params, cells = _study(tmp_path)
    lock = _write_lock(tmp_path / "dvc.lock", LOCK)
    html, results, _, _report_answers, _curves = build_report(params, cells, lock_path=lock, links=RunLinks())
    assert lock_digest(lock).sha256 in html
    assert len(results) == 4 and not results.duplicated(["dataset", "activation", "bn", "dropout", "seed"]).any()
    assert list(results.columns[:6]) == ["cell", "dataset", "activation", "bn", "dropout", "seed"]
    # then which learning rate the run had (the study's fixed one here; "tuned" where a sweep chose it)
    assert results.columns[6] == "lr_policy" and set(results["lr_policy"]) == {"fixed"}
    settings = [c for c in results.columns if c.startswith("train.")]
    # then every effective setting, once
    assert results.columns.get_loc(settings[0]) == 7 and len(settings) == len(
        flatten("train", params.train.model_dump())
    )
    assert set(results["train.architecture"]) == {params.train.architecture}
    assert '<details id="runs">' in html and "cifar10-relu-post-0.0-1" in html


def test_with_the_local_sqlite_store_each_run_links_to_the_ui_it_opens_in(tmp_path):
    from mlflow.tracking import MlflowClient

    from pipeline.tracking.runs import study_key

    params, cells = _study(tmp_path)
    local = read_tracking_settings(tmp_path, {})
    assert run_links(params, ["cifar10-relu-off-0.0-0"], local).note.startswith("The store sqlite:///")
    assert not (tmp_path / "mlflow.db").exists()  # looking for links creates no store
    client = MlflowClient(local.uri)
    experiment = client.create_experiment(params.study.name, artifact_location=local.artifact_location)
    tags = {"bnbench.role": "cell", "bnbench.study_key": study_key(params), "bnbench.cell": "cifar10-relu-off-0.0-0"}
    run = client.create_run(experiment, tags=tags).info.run_id
    client.set_terminated(run)
    links = run_links(params, ["cifar10-relu-off-0.0-0", "cifar10-relu-off-0.0-1"], local)
    # the page `uv run mlflow ui --backend-store-uri sqlite:///mlflow.db` serves, and that command beside
    assert links.by_cell == {"cifar10-relu-off-0.0-0": f"http://127.0.0.1:5000/#/experiments/{experiment}/runs/{run}"}
    assert "`uv run mlflow ui --backend-store-uri sqlite:///mlflow.db` serves" in links.note
    html, _, _, _report_answers, _curves = build_report(params, cells, links=links)
    assert f'href="http://127.0.0.1:5000/#/experiments/{experiment}/runs/{run}"' in html
    assert "uv run mlflow ui --backend-store-uri sqlite:///mlflow.db" in html
    # a UI elsewhere (another port, a proxy): the setting says where
    elsewhere = read_tracking_settings(tmp_path, {"BNBENCH_MLFLOW_UI_URL": "http://127.0.0.1:8080/"})
    assert (
        run_links(params, ["cifar10-relu-off-0.0-0"], elsewhere)
        .by_cell["cifar10-relu-off-0.0-0"]
        .startswith(f"http://127.0.0.1:8080/#/experiments/{experiment}/runs/")
    )


def test_an_unreachable_server_costs_the_links_not_the_report(tmp_path, monkeypatch):
    params, cells = _study(tmp_path)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # nothing listens here once closed
    server = read_tracking_settings(tmp_path, {"MLFLOW_TRACKING_URI": f"http://127.0.0.1:{port}"})
    html, _, _, _report_answers, _curves = build_report(params, cells, tracking=server)
    assert f"The MLflow server at http://127.0.0.1:{port} did not answer" in html and "#/experiments/" not in html


@pytest.mark.e2e
def test_each_run_links_to_its_page_on_a_tracking_server(tmp_path):
    from mlflow.tracking import MlflowClient

    from pipeline.tracking.runs import study_key

    params, cells = _study(tmp_path)
    with mlflow_server(tmp_path / "server") as uri:
        client = MlflowClient(uri)
        experiment = client.create_experiment(params.study.name)
        tags = {"bnbench.role": "cell", "bnbench.study_key": study_key(params)}
        mine = client.create_run(experiment, tags={**tags, "bnbench.cell": "cifar10-relu-off-0.0-0"})
        client.set_terminated(mine.info.run_id)
        other_study = client.create_run(experiment, tags={**tags, "bnbench.study_key": "else", "bnbench.cell": "x"})
        client.set_terminated(other_study.info.run_id)
        links = run_links(
            params,
            ["cifar10-relu-off-0.0-0", "cifar10-relu-off-0.0-1"],
            read_tracking_settings(tmp_path, {"MLFLOW_TRACKING_URI": uri}),
        )
        assert links.by_cell == {"cifar10-relu-off-0.0-0": f"{uri}/#/experiments/{experiment}/runs/{mine.info.run_id}"}
        html, _, _, _report_answers, _curves = build_report(params, cells, links=links)
        assert f'href="{uri}/#/experiments/{experiment}/runs/{mine.info.run_id}"' in html


def test_same_runs_same_page(tmp_path):
    params, cells = _study(tmp_path)
    lock = _write_lock(tmp_path / "dvc.lock", LOCK)
    first = build_report(params, cells, lock_path=lock, links=RunLinks())
    html, results, metrics, _answers, _curves = build_report(params, cells, lock_path=lock, links=RunLinks())
    assert html == first.html and results.equals(first.results) and metrics == first.metrics


def test_a_batch_size_axis_is_named_as_an_axis_with_each_budget(tmp_path):
    params = study_params(tmp_path, bn=["off", "post"], extra_axes={"train.batch_size": [128, 32, 64]})
    cells = tmp_path / "cells"
    for bn in ("off", "post"):
        for batch in (128, 32, 64):  # a bigger batch: fewer steps in the same epochs
            write_cell(cells, bn=bn, crossings={0.5: 10, 0.6: None, 0.7: None}, budget=6400 // batch,
                       extra_axes={"train.batch_size": batch})  # fmt: skip
    html, results, metrics, _answers, _curves = build_report(params, cells, links=RunLinks())
    assert "batch size per cell (an axis) (cifar10 50–200 steps)" in html
    assert "50–200 optimizer steps per run (25–100 per epoch, batch 32, 64, 128)" in html
    # DVC's overlaid curves tell the configurations apart by the axes that vary
    assert set(_curves["cifar10"]["configuration"]) == {
        f"bn={bn} batch_size={b}" for bn in ("off", "post") for b in (32, 64, 128)
    }
