"""The quick study run by compose: pipeline container, MLflow server container, mounted repository.

Checked from the host, as a user would look: the runs on the server, the report and DVC's state in
the repository, who owns the files, and how the server is exposed.
"""

from __future__ import annotations

import csv
import json
import re
import subprocess
import sys

import pytest
from mlflow.tracking import MlflowClient

from tests.container.conftest import CELLS, IMAGE, run

pytestmark = [pytest.mark.e2e, pytest.mark.container]  # e2e too: `-m "not e2e"` is the fast suite


def test_without_its_server_the_pipeline_stops_with_the_fix_and_keeps_finished_stages(stack):
    done = stack.unreachable
    assert done.returncode != 0
    assert "bnbench: the MLflow tracking server at http://mlflow:5000 is unreachable" in done.stdout
    assert "docker compose up -d mlflow" in done.stdout
    # A dataset's fetch and prepare finished before its first cell stopped; the real run did not redo them.
    finished = re.findall(r"Running stage '((?:fetch|studies/quick/dvc.yaml:prepare)@\w+)'", done.stdout)
    assert len(finished) >= 2 and not any(f"Running stage '{stage}'" in stack.study.stdout for stage in finished)


def test_the_study_ran_without_a_permission_problem(stack):
    lines = stack.study.stdout.splitlines()
    assert [line for line in lines if "Permission denied" in line or line.startswith("Traceback")] == []


def test_one_finished_run_per_cell_on_the_server_under_the_study(stack):
    client = MlflowClient(stack.mlflow_url)
    experiment = client.get_experiment_by_name("bnbench-quick")
    runs = client.search_runs([experiment.experiment_id])
    cells = [r for r in runs if r.data.tags.get("bnbench.role") == "cell"]
    assert sorted(r.data.tags["bnbench.cell"] for r in cells) == sorted(CELLS)
    assert all(r.info.status == "FINISHED" for r in runs)
    (parent,) = {r.data.tags["mlflow.parentRunId"] for r in cells}
    assert client.get_run(parent).data.tags["bnbench.role"] == "study" and len(runs) == len(CELLS) + 1
    for cell in cells:
        assert cell.data.tags["bnbench.dvc_stage"] == f"studies/quick/dvc.yaml:train@{cell.data.tags['bnbench.cell']}"
        # step 0, the early passes after steps 1 and 2, and the epoch's two regular passes (steps 6 and 12)
        assert len(client.get_metric_history(cell.info.run_id, "curves/val_accuracy")) == 5
        # Artifacts went through the server into its volume, not into the repository.
        assert {"history.csv", "metrics.json", "curves.png"} <= {
            a.path for a in client.list_artifacts(cell.info.run_id)
        }
    assert not (stack.repo / "mlflow.db").exists() and not (stack.repo / "mlruns").exists()


def test_the_report_is_in_the_mounted_repository(stack):
    html = (stack.repo / "studies" / "quick" / "reports" / "index.html").read_text()
    assert "bnbench: bnbench-quick" in html and all(cell in html for cell in CELLS)
    with (stack.repo / "studies" / "quick" / "reports" / "results.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == len(CELLS) and all(r["outcome"] == "completed" for r in rows)


def test_every_file_left_in_the_repository_and_caches_belongs_to_the_host_user(stack):
    assert stack.uid != 0 or stack.gid != 0
    assert stack.checked_paths > 100  # the repository, its outputs, DVC's cache, the downloads
    assert (stack.repo / ".dvc" / "cache" / "files").is_dir() and any(stack.cache.rglob("*.tar.gz"))
    assert stack.foreign_owned == []


def test_dvc_status_is_clean_from_the_host(stack):
    done = subprocess.run(
        [sys.executable, "-m", "dvc", "status", "studies/quick/dvc.yaml"],
        cwd=stack.repo,
        env=stack.env | {"PYTHONPATH": str(stack.repo)},  # the copy's stages, as in the container
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0 and "Data and pipelines are up to date." in done.stdout, done.stdout + done.stderr


def test_server_is_healthy_non_root_and_published_on_loopback_only(stack):
    container = stack.compose("ps", "--quiet", "mlflow").stdout.strip()
    (info,) = json.loads(run(["docker", "inspect", container], env=stack.env).stdout)
    assert info["State"]["Health"]["Status"] == "healthy"
    bindings = [b for port in info["HostConfig"]["PortBindings"].values() for b in port]
    assert bindings and all(b["HostIp"] == "127.0.0.1" for b in bindings)
    assert stack.compose("exec", "-T", "mlflow", "id", "-u").stdout.strip() == "1000"
    assert info["Config"]["Image"] == IMAGE  # the project's own image, no second one


def test_an_unknown_image_variant_is_refused_with_the_fix(stack):
    done = stack.compose("build", "--build-arg", "VARIANT=tpu", "mlflow", timeout=900)
    assert done.returncode != 0 and "VARIANT=tpu: use gpu (the default) or cpu" in done.stdout + done.stderr
