"""The runner (pipeline/runner/) on the shrunk quick study, against a sequential `dvc repro` of the same study.

The runner's copy is a clone of the sequential copy's repository with the same working-tree edits
(the shrunk study), so both train from the same commit: every output of every cell must match,
byte for byte, but for the fields that time the training.

The runner runs twice: first with one cell failing by construction (the tests' fault hook makes
that cell's `pipeline.train.main` raise in its worker), then again, which trains only that cell
and finishes the study.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient
from ruamel.yaml import YAML

from pipeline.runner.record import log_path
from tests.e2e.test_quick_study import CELLS
from tests.helpers import QUICK_STUDY, assert_same_cell_outputs, clone_with_edits, dvc, failing_env

pytestmark = pytest.mark.e2e

FAILING = f"{QUICK_STUDY}/dvc.yaml:train@fashion_mnist-sigmoid-post-0.0-1"
# Float results depend on the CPU threads TensorFlow splits an op's reductions over (found here: a
# fresh `python -m pipeline.train` with TF_NUM_INTRAOP_THREADS=1 gives the runner's 1-thread-per-slot
# outputs exactly, and with the default 2 threads dvc repro's; the last float32 digits of losses
# differ between the two). A warm worker changes nothing; the thread count does, so the comparison
# gives each slot the cores' count of threads, as dvc repro's stage has.
THREADS = str(len(os.sched_getaffinity(0)))


def _runner(repo: Path, env: dict) -> subprocess.CompletedProcess:
    # --threads: as many CPU threads per slot as TensorFlow gives a stage under dvc repro (the cores).
    command = [sys.executable, "-m", "pipeline.runner", f"{QUICK_STUDY}/dvc.yaml", "--slots", "2", "--threads", THREADS]
    return subprocess.run(command, cwd=repo, env=env, capture_output=True, text=True)


def _lock(repo: Path) -> dict:
    return YAML(typ="safe").load((repo / QUICK_STUDY / "dvc.lock").read_text())["stages"]


@pytest.fixture(scope="module")
def runner_copy(study, tmp_path_factory):
    sequential, env, _ = study
    repo = tmp_path_factory.mktemp("runner") / "repo"
    clone_with_edits(sequential, repo)  # the shrunk study and its regenerated pipeline, on the same commit
    env = {**env, "PYTHONPATH": str(repo)}
    first = _runner(repo, failing_env(env, "pipeline.train:main", env={"DVC_STAGE": FAILING}))
    after_first = {
        "lock": set(_lock(repo)),
        "log": log_path(repo, FAILING).read_text(),  # the second run writes the cell's log anew
        "status": json.loads(dvc(repo, env, "status", "--json", f"{QUICK_STUDY}/dvc.yaml").stdout),
    }
    second = _runner(repo, env)
    yield sequential, repo, env, first, after_first, second


def test_a_failed_cell_does_not_stop_the_others(runner_copy):
    _, repo, _, first, after, _ = runner_copy
    assert first.returncode == 1, first.stdout + first.stderr
    log = log_path(repo, FAILING)
    assert str(log) in first.stderr  # named at the end
    assert log.is_file() and "a fault planted by the tests" in after["log"]
    # every other cell is recorded in dvc.lock; the failed one and the report (downstream of it) are not
    cells = {f"train@{c}" for c in CELLS}
    assert after["lock"] == {"train-code", "prepare@cifar10", "prepare@fashion_mnist", *cells - {FAILING.split(":")[1]}}
    assert set(after["status"]) == {FAILING, f"{QUICK_STUDY}/dvc.yaml:report"}


def test_the_second_run_trains_the_rest_and_dvc_ends_as_after_repro(runner_copy):
    sequential, repo, env, _, _, second = runner_copy
    assert second.returncode == 0, second.stdout + second.stderr
    assert "1 of 8 cells out of date" in second.stdout
    assert "up to date" in dvc(repo, env, "status", f"{QUICK_STUDY}/dvc.yaml").stdout
    again = dvc(repo, env, "repro", f"{QUICK_STUDY}/dvc.yaml")
    assert "Running stage" not in again.stdout
    # dvc.lock: the same stages, each with the same command, dependencies and params as dvc repro wrote
    ours, theirs = _lock(repo), _lock(sequential)
    assert set(ours) == set(theirs)

    def inputs(entry: dict) -> dict:  # but the cells' outputs, which the report depends on: they hold timings
        deps = [d for d in entry["deps"] if d["path"] != "results/cells"]
        return {**{k: v for k, v in entry.items() if k != "outs"}, "deps": deps}

    for name, entry in ours.items():
        assert inputs(entry) == inputs(theirs[name]), name
        if name.startswith("prepare@"):  # deterministic outputs: the same hashes too
            assert entry["outs"] == theirs[name]["outs"]
    # DVC's .gitignore entries for the outputs: the same lines (their order is the order cells finished)
    for ignore in sequential.glob(f"{QUICK_STUDY}/**/.gitignore"):
        mine = repo / ignore.relative_to(sequential)
        assert sorted(mine.read_text().splitlines()) == sorted(ignore.read_text().splitlines())


def test_every_cell_output_matches_the_sequential_run_but_timing(runner_copy):
    sequential, repo, _, _, _, _ = runner_copy
    for cell in CELLS:
        assert_same_cell_outputs(*(r / QUICK_STUDY / "results" / "cells" / cell for r in (repo, sequential)))


def test_cells_trained_in_two_slots_on_one_cpu_say_they_shared_it_and_dvc_repro_s_did_not(runner_copy):
    sequential, repo, _, _, _, _ = runner_copy
    for cell in CELLS:
        ours, theirs = (
            json.loads((r / QUICK_STUDY / "results" / "cells" / cell / "metrics.json").read_text())
            for r in (repo, sequential)
        )
        assert (ours["device_shared"], theirs["device_shared"]) == (True, False), cell


def test_one_finished_mlflow_run_per_cell(runner_copy):
    _, repo, _, _, _, _ = runner_copy
    client = MlflowClient(f"sqlite:///{repo / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("bnbench-quick")
    runs = client.search_runs([experiment.experiment_id], "tags.`bnbench.role` = 'cell'")
    assert sorted(r.data.tags["bnbench.cell"] for r in runs) == sorted(CELLS)
    assert {r.info.status for r in runs} == {"FINISHED"}
    assert {r.data.tags["bnbench.dvc_stage"] for r in runs} == {f"{QUICK_STUDY}/dvc.yaml:train@{c}" for c in CELLS}
    parents = client.search_runs([experiment.experiment_id], "tags.`bnbench.role` = 'study'")
    assert len(parents) == 1 and {r.data.tags["mlflow.parentRunId"] for r in runs} == {parents[0].info.run_id}
