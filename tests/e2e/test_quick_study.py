"""`dvc repro` of a shrunk quick study in a copy of the repository, data served from 127.0.0.1."""

from __future__ import annotations

import csv

import pytest
from mlflow.tracking import MlflowClient

from tests.e2e.conftest import dvc

pytestmark = pytest.mark.e2e


CELLS = [f"{d}-sigmoid-{bn}-0.0-{s}" for d in ("cifar10", "fashion_mnist") for bn in ("off", "post") for s in (0, 1)]


def test_report_and_results_cover_every_cell(study):
    repo, _, _ = study
    html = (repo / "quick" / "reports" / "index.html").read_text()
    assert "bnbench: bnbench-quick" in html and "Not the published datasets" in html
    assert html.count('src="data:image/png;base64,') == 2 * 3 + 2  # 3 figures per dataset and 2 across them, inlined
    assert all(cell in html for cell in CELLS)
    with (repo / "quick" / "reports" / "results.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    assert sorted(
        f"{r['dataset']}-{r['activation']}-{r['bn']}-{float(r['dropout'])}-{r['seed']}" for r in rows
    ) == sorted(CELLS)
    assert all(0 <= float(r["test_accuracy"]) <= 1 and r["outcome"] == "completed" for r in rows)


def test_one_mlflow_run_per_cell_under_the_study(study):
    repo, _, _ = study
    client = MlflowClient(f"sqlite:///{repo / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("bnbench-quick")
    runs = client.search_runs([experiment.experiment_id], "tags.`bnbench.role` = 'cell'")
    assert sorted(r.data.tags["bnbench.cell"] for r in runs) == sorted(CELLS)
    parents = {r.data.tags["mlflow.parentRunId"] for r in runs}
    assert len(parents) == 1 and client.get_run(parents.pop()).data.tags["bnbench.role"] == "study"
    for run in runs:
        assert run.info.status == "FINISHED"
        name = run.data.tags["bnbench.cell"]
        assert f"{run.data.params['dataset']}-{run.data.params['activation']}-{run.data.params['bn']}" in name
        assert run.data.params["seed"] == name[-1] and run.data.params["train.epochs"] == "1"
        assert run.data.tags["bnbench.dvc_stage"] == f"quick/dvc.yaml:train@{name}"
        assert run.data.tags["bnbench.published_data"] == "false"
        assert "test_accuracy" in run.data.metrics
        curve = client.get_metric_history(run.info.run_id, "val_accuracy")
        assert [m.step for m in curve][0] == 0 and len(curve) == 3  # step 0 and two passes
        artifacts = {a.path for a in client.list_artifacts(run.info.run_id)}
        assert {"history.csv", "metrics.json", "curves.png"} <= artifacts


def test_second_repro_trains_nothing_and_status_is_clean(study):
    repo, env, _ = study
    again = dvc(repo, env, "repro", "quick/dvc.yaml")
    assert "Running stage" not in again.stdout
    assert "up to date" in dvc(repo, env, "status", "quick/dvc.yaml").stdout


def test_dvc_metrics_and_plots_work(study):
    repo, env, _ = study
    metrics = dvc(repo, env, "metrics", "show", "--json").stdout
    assert "test_accuracy" in metrics
    dvc(repo, env, "plots", "show", "--out", str(repo / "plots"))
    assert (repo / "plots" / "index.html").is_file()
