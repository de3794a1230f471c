"""A new study with a new axis, by params alone: an overlay, the generator, `dvc repro`.

In the e2e copy of the repository (data already fetched there), a study under
studies/ makes the learning rate a third value axis. No code changes: it trains,
logs to MLflow and reports with the axis everywhere a cell is named or grouped.
"""

from __future__ import annotations

import csv
import json
import re
import subprocess
import sys

import pytest
from mlflow.tracking import MlflowClient

from tests.helpers import dvc, regenerate_pipeline

pytestmark = pytest.mark.e2e
OVERLAY = """\
study:
  name: bnbench-lr
prepare:
  max_train_examples: 400
  max_test_examples: 200
matrix:
  dataset: [fashion_mnist]
  activation: [relu]
  bn: ["off", post]
  dropout: [0.0]
  seed: [0]
  train.optimizer.learning_rate: [0.01, 0.001]
train:
  epochs: 1
  evals_per_epoch: 2
sweep: null                    # the learning rate is an axis here, not chosen by a sweep
"""
CELLS = {
    f"fashion_mnist-relu-{bn}-0.0-0-learning_rate_{lr}": (bn, lr) for bn in ("off", "post") for lr in ("0.01", "0.001")
}


@pytest.fixture(scope="module")
def lr_study(study):
    repo, env, _ = study
    folder = repo / "studies" / "lr"
    folder.mkdir()
    (folder / "params.yaml").write_text(OVERLAY)
    regenerate_pipeline(repo)
    done = dvc(repo, env, "repro", "studies/lr/dvc.yaml")
    return repo, env, folder, done


def test_each_cell_is_a_stage_named_by_its_axes(lr_study):
    repo, env, folder, done = lr_study
    assert sorted(p.name for p in (folder / "results" / "cells").iterdir()) == sorted(CELLS)
    for name in CELLS:
        assert f"studies/lr/dvc.yaml:train@{name}'" in done.stdout
    assert "up to date" in dvc(repo, env, "status", "studies/lr/dvc.yaml").stdout


def test_each_cell_trained_with_its_own_learning_rate(lr_study):
    repo, _, folder, _ = lr_study
    client = MlflowClient(f"sqlite:///{repo / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("bnbench-lr")
    runs = client.search_runs([experiment.experiment_id], "tags.`bnbench.role` = 'cell'")
    assert sorted(r.data.tags["bnbench.cell"] for r in runs) == sorted(CELLS)
    for run in runs:
        bn, lr = CELLS[run.data.tags["bnbench.cell"]]
        assert run.data.params["train.optimizer.learning_rate"] == run.data.tags["train.optimizer.learning_rate"] == lr
        assert run.data.params["bn"] == bn and run.info.status == "FINISHED"
        written = json.loads(
            (folder / "results" / "cells" / run.data.tags["bnbench.cell"] / "metrics.json").read_text()
        )
        assert written["settings"]["train"]["optimizer"]["learning_rate"] == float(lr)
        assert written["axes"]["train.optimizer.learning_rate"] == float(lr)


def test_the_report_groups_by_the_new_axis(lr_study):
    _, _, folder, _ = lr_study
    with (folder / "reports" / "results.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    assert {(r["bn"], r["train.optimizer.learning_rate"]) for r in rows} == set(CELLS.values())
    html = (folder / "reports" / "index.html").read_text()
    assert '<th class="key">learning_rate</th>' in html  # a column of the per-configuration table
    assert all(name in html for name in CELLS)
    # DVC's curves tell the configurations apart by the axes that vary: the new one among them
    with (folder.parents[1] / "curves" / "lr_fashion_mnist.csv").open() as handle:
        labels = {r["configuration"] for r in csv.DictReader(handle)}
    assert labels == {f"bn={bn} learning_rate={lr}" for bn, lr in CELLS.values()}


def test_an_overlay_that_gains_a_section_is_caught_then_regenerated(lr_study):
    repo, env, folder, _ = lr_study
    overlay = folder / "params.yaml"
    overlay.write_text(OVERLAY + "report:\n  confidence: 0.9\n")  # a section the generated stages do not name yet
    stale = subprocess.run(
        [sys.executable, "-m", "dvc", "repro", "studies/lr/dvc.yaml"], cwd=repo, env=env, capture_output=True, text=True
    )
    said = stale.stderr + stale.stdout
    # refused by the first stage, before any other stage ran, with the command that regenerates
    assert stale.returncode != 0 and "out of date with the params: studies/lr/dvc.yaml" in said
    assert "uv run python -m pipeline.dvcfile" in said
    assert re.findall(r"Running stage '([^']+)'", stale.stdout) == ["preflight"]
    regenerate_pipeline(repo)
    again = dvc(repo, env, "repro", "studies/lr/dvc.yaml")
    # only the page is rebuilt, now at the overlay's confidence level
    assert "Running stage 'studies/lr/dvc.yaml:train@" not in again.stdout
    assert "Running stage 'studies/lr/dvc.yaml:report'" in again.stdout
    assert "Intervals: 90% paired bootstrap" in (folder / "reports" / "index.html").read_text()
