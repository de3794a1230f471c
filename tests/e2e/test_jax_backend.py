"""The quick study, shrunk to two cells, with `KERAS_BACKEND=jax dvc repro`: the same pipeline on Keras' JAX backend.

What a user meets: the report builds, every cell's metrics.json, MLflow run and the report's provenance
say the cells trained on JAX.
"""

from __future__ import annotations

import csv
import json
import os
import sys
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from tests.helpers import QUICK_STUDY, dvc, require_extra, serve_directory, shrink_quick_study
from tools.fake_data import write_mirror
from tools.repo_copy import copy_repo

pytestmark = pytest.mark.e2e

CELLS = ["fashion_mnist-sigmoid-off-0.0-0", "fashion_mnist-sigmoid-post-0.0-0"]


@pytest.fixture(scope="module")
def jax_study(tmp_path_factory):
    require_extra("jax", "jax")
    root = tmp_path_factory.mktemp("jax")
    repo = root / "repo"
    copy_repo(repo)
    shrink_quick_study(repo, dataset=["fashion_mnist"], seed=[0])
    checksums = write_mirror(root / "mirror", cifar_per_batch=10, cifar_test=10, fmnist_train=500, fmnist_test=200)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "DVC_", "BNBENCH_", "KERAS_", "XLA_"))}
    with serve_directory(root / "mirror") as mirror_url:
        env.update(
            KERAS_BACKEND="jax",
            BNBENCH_DATA_MIRROR=mirror_url,
            BNBENCH_DATA_CHECKSUMS=str(checksums),
            BNBENCH_CACHE_DIR=str(root / "download-cache"),
            PYTHONPATH=str(repo),
            PATH=f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}",
        )
        dvc(repo, env, "repro", f"{QUICK_STUDY}/dvc.yaml")
    return repo


def test_every_cell_trained_on_jax_and_says_so(jax_study):
    cells = jax_study / QUICK_STUDY / "results" / "cells"
    assert sorted(p.name for p in cells.iterdir()) == CELLS
    for cell in CELLS:
        summary = json.loads((cells / cell / "metrics.json").read_text())
        assert summary["backend"] == "jax" and summary["device"].startswith("jax: ")
        assert summary["outcome"] == "completed" and summary["settings"]["train"]["deterministic"] is True
        assert summary["steps_trained"] == summary["budget_steps"]


def test_the_report_builds_and_names_the_backend(jax_study):
    reports = jax_study / QUICK_STUDY / "reports"
    html = (reports / "index.html").read_text()
    assert all(cell in html for cell in CELLS)
    assert '<td class="key">Keras backend</td><td class="key">jax</td>' in html
    with (reports / "results.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    assert sorted(r["cell"] for r in rows) == CELLS and {r["backend"] for r in rows} == {"jax"}


def test_each_mlflow_run_records_the_backend(jax_study):
    client = MlflowClient(f"sqlite:///{jax_study / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("bnbench-quick")
    runs = client.search_runs([experiment.experiment_id], "tags.`bnbench.role` = 'cell'")
    assert sorted(r.data.tags["bnbench.cell"] for r in runs) == CELLS
    for run in runs:
        assert run.info.status == "FINISHED"
        assert run.data.tags["bnbench.backend"] == "jax" and run.data.params["train.deterministic"] == "True"
