"""The quick study, shrunk to two cells, with `KERAS_BACKEND=jax dvc repro`: the same pipeline on Keras' JAX backend.

What a user meets: the report builds, every cell's metrics.json, MLflow run and the report's provenance
say the cells trained on JAX.
"""

from __future__ import annotations

import csv
import json
import os
import subprocess
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


# -- then two more seeds through the runner's group engine: only the new cells train, in groups ---------

NEW_CELLS = [f"fashion_mnist-sigmoid-{bn}-0.0-{seed}" for bn in ("off", "post") for seed in (1, 2)]


@pytest.fixture(scope="module")
def grouped(jax_study):
    """The same repository after `bnbench run --engine group` with seeds 1 and 2 added to the study."""
    repo = jax_study
    before = {cell: (repo / QUICK_STUDY / "results" / "cells" / cell / "metrics.json").read_bytes() for cell in CELLS}
    shrink_quick_study(repo, dataset=["fashion_mnist"], seed=[0, 1, 2])
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "DVC_", "BNBENCH_", "KERAS_", "XLA_"))}
    env.update(
        KERAS_BACKEND="jax", PYTHONPATH=str(repo), PATH=f"{Path(sys.executable).parent}{os.pathsep}{env['PATH']}"
    )
    command = [sys.executable, "-m", "pipeline.cli", "run", f"{QUICK_STUDY}/dvc.yaml", "--engine", "group"]
    done = subprocess.run(command, cwd=repo, env=env, capture_output=True, text=True, timeout=1200)
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-4000:]
    status = dvc(repo, env, "status", "--json", f"{QUICK_STUDY}/dvc.yaml")
    return repo, before, done.stdout, json.loads(status.stdout)


def test_a_new_seed_trains_only_its_cells_and_they_train_in_groups(grouped):
    repo, before, output, status = grouped
    cells = repo / QUICK_STUDY / "results" / "cells"
    assert sorted(p.name for p in cells.iterdir()) == sorted(CELLS + NEW_CELLS)
    assert {cell: (cells / cell / "metrics.json").read_bytes() for cell in CELLS} == before  # not retrained
    assert "2 group(s) of up to 64" in output
    for cell in NEW_CELLS:  # off and post differ in their program: one group each, seeds 1 and 2
        summary = json.loads((cells / cell / "metrics.json").read_text())
        assert (summary["engine"], summary["group_size"], summary["device_shared"]) == ("group", 2, True)
        assert summary["outcome"] == "completed" and summary["steps_trained"] == summary["budget_steps"]
    assert status == {}  # dvc status: every stage up to date, the report rebuilt with the new cells


def test_each_grouped_cell_has_one_finished_run_tagged_with_its_own_stage(grouped):
    repo = grouped[0]
    client = MlflowClient(f"sqlite:///{repo / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("bnbench-quick")
    runs = client.search_runs([experiment.experiment_id], "tags.`bnbench.role` = 'cell'")
    assert sorted(r.data.tags["bnbench.cell"] for r in runs) == sorted(CELLS + NEW_CELLS)
    for run in runs:
        assert run.info.status == "FINISHED"
        assert run.data.tags["bnbench.dvc_stage"].endswith(f"train@{run.data.tags['bnbench.cell']}")
    html = (repo / QUICK_STUDY / "reports" / "index.html").read_text()
    assert all(cell in html for cell in NEW_CELLS)
