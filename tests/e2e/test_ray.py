"""The runner's Ray mode on a real two-node Ray cluster and a real MLflow server, against a sequential `dvc repro`.

The test starts, on this machine, a Ray head node and a second node (`ray start`, each in its own
session folder, its own free ports, 2 CPUs and a small object store) and an `mlflow server` on
127.0.0.1. Each cell asks for as many CPUs as a node has, so two cells train at once only with one
on each node; the nodes the cells ran on are recorded and checked. Ray itself advertises the
machine's address rather than 127.0.0.1 (it replaces a loopback --node-ip-address) and listens on
all interfaces; the cluster lives as long as the module's tests and is stopped by its processes.

The driver runs in a clone of the sequential run's copy (same commit, same shrunk study): first with
one cell failing by construction, then again. What must hold is what holds after `dvc repro`.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import psutil
import pytest
from mlflow.tracking import MlflowClient
from ruamel.yaml import YAML

from pipeline.runner.record import log_path
from tests.e2e.test_quick_study import CELLS
from tests.helpers import (
    QUICK_STUDY,
    assert_same_cell_outputs,
    clone_with_edits,
    dvc,
    failing_env,
    free_port,
    mlflow_server,
    require_extra,
    wait_until,
    with_fault_hook,
)

pytestmark = pytest.mark.e2e

FAILING = f"{QUICK_STUDY}/dvc.yaml:train@cifar10-sigmoid-off-0.0-1"
# As many threads per cell as a stage gets under dvc repro (the cores): float results depend on it.
THREADS = len(os.sched_getaffinity(0))
NODES = 2
OBJECT_STORE_BYTES = 100 * 1024 * 1024


def _stop(temp_dir: str, gcs_port: int) -> None:
    """Stop this cluster's processes, and only them: those naming its session folder or its GCS, and their children.

    (`ray stop` would stop every Ray cluster of the machine.)
    """
    me = os.getpid()
    found: dict[int, psutil.Process] = {}
    for process in psutil.process_iter(["cmdline"]):
        args = " ".join(process.info["cmdline"] or [])
        if process.pid != me and (temp_dir in args or f":{gcs_port} " in f"{args} "):
            for p in [process, *process.children(recursive=True)]:
                found[p.pid] = p
    for process in found.values():
        try:
            process.terminate()
        except psutil.NoSuchProcess:
            pass
    _, alive = psutil.wait_procs(list(found.values()), timeout=5)
    for process in alive:
        try:
            process.kill()
        except psutil.NoSuchProcess:
            pass


def _ray_start(args: list[str], env: dict, temp_dir: str) -> None:
    ports = {
        "--node-manager-port": free_port(),
        "--object-manager-port": free_port(),
        "--dashboard-agent-listen-port": free_port(),
        "--dashboard-agent-grpc-port": free_port(),
        "--runtime-env-agent-port": free_port(),
        "--metrics-export-port": free_port(),
    }
    command = [
        str(Path(sys.executable).parent / "ray"), "start", *args, "--node-ip-address", "127.0.0.1",
        "--num-cpus", str(THREADS), "--object-store-memory", str(OBJECT_STORE_BYTES), "--temp-dir", temp_dir,
        "--disable-usage-stats", *(str(x) for pair in ports.items() for x in pair),
    ]  # fmt: skip
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, f"ray start failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"


def _alive_nodes(address: str, env: dict) -> int:
    script = "import ray; ray.init(address=%r, logging_level='ERROR'); print(sum(n['Alive'] for n in ray.nodes()))"
    done = subprocess.run([sys.executable, "-c", script % address], env=env, capture_output=True, text=True)
    return int(done.stdout.split()[-1]) if done.returncode == 0 and done.stdout.split() else 0


@pytest.fixture(scope="module")
def ray_cluster():
    """A head node and a second node on this machine; yields the head's address."""
    require_extra("ray", "cluster")
    temp_dir = tempfile.mkdtemp(prefix="ray", dir="/tmp")  # short: Ray's socket paths live under it
    gcs_port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "BNBENCH_", "DVC_", "RAY_"))}
    env["RAY_USAGE_STATS_ENABLED"] = "0"
    env = with_fault_hook(env)  # a cell fails by construction where a job's environment plants the fault
    address = f"127.0.0.1:{gcs_port}"
    try:
        head = ["--head", "--port", gcs_port, "--include-dashboard=false", "--dashboard-port", free_port()]
        _ray_start([*map(str, head), "--ray-client-server-port", str(free_port())], env, temp_dir)
        _ray_start(["--address", address], env, temp_dir)
        wait_until(lambda: _alive_nodes(address, env) == NODES, f"{NODES} Ray nodes", timeout=120)
        yield address
    finally:
        _stop(temp_dir, gcs_port)


@pytest.fixture(scope="module")
def tracking_server(tmp_path_factory):
    with mlflow_server(tmp_path_factory.mktemp("mlflow-server")) as url:
        yield url


def _runner(repo: Path, env: dict, address: str) -> subprocess.CompletedProcess:
    command = [
        sys.executable, "-m", "pipeline.runner", f"{QUICK_STUDY}/dvc.yaml", "--ray", address,
        "--threads", str(THREADS),
    ]  # fmt: skip
    return subprocess.run(command, cwd=repo, env=env, capture_output=True, text=True, timeout=1200)


def _lock(repo: Path) -> dict:
    return YAML(typ="safe").load((repo / QUICK_STUDY / "dvc.lock").read_text())["stages"]


@pytest.fixture(scope="module")
def ray_copy(study, ray_cluster, tracking_server, tmp_path_factory):
    sequential, env, _ = study
    repo = tmp_path_factory.mktemp("ray") / "repo"
    clone_with_edits(sequential, repo)
    env = {**env, "PYTHONPATH": str(repo), "MLFLOW_TRACKING_URI": tracking_server}
    first = _runner(repo, failing_env(env, "pipeline.train:main", env={"DVC_STAGE": FAILING}), ray_cluster)
    assert (repo / ".bnbench" / "runner-summary.json").is_file(), first.stdout[-4000:] + first.stderr[-4000:]
    after_first = {
        "lock": set(_lock(repo)),
        "log": log_path(repo, FAILING).read_text() if log_path(repo, FAILING).is_file() else "",
        "status": json.loads(dvc(repo, env, "status", "--json", f"{QUICK_STUDY}/dvc.yaml").stdout),
        "summary": json.loads((repo / ".bnbench" / "runner-summary.json").read_text()),
    }
    second = _runner(repo, env, ray_cluster)
    yield sequential, repo, env, first, after_first, second, tracking_server


def test_the_cells_ran_on_both_nodes_from_the_shipped_code(ray_copy):
    _, _, _, first, after, _, _ = ray_copy
    assert first.returncode == 1, first.stdout[-3000:] + first.stderr[-3000:]
    results = [r for run in after["summary"]["rounds"] for r in run["results"]]
    trained = [r for r in results if r["returncode"] == 0]
    assert len(trained) == len(CELLS) - 1
    assert len({r["extra"]["node_id"] for r in trained}) == NODES
    # imported from the tree Ray unpacked on the node, not from the driver's checkout
    assert all("runtime_resources/working_dir_files" in r["extra"]["code_dir"] for r in trained)


def test_a_failed_cell_is_reported_with_its_log_and_the_others_are_recorded(ray_copy):
    _, repo, _, first, after, _, _ = ray_copy
    assert str(log_path(repo, FAILING)) in first.stderr
    assert "a fault planted by the tests" in after["log"]  # the node's log of the cell, brought back to the driver
    cells = {f"train@{c}" for c in CELLS}
    assert after["lock"] == {"train-code", "prepare@cifar10", "prepare@fashion_mnist", *cells - {FAILING.split(":")[1]}}
    assert set(after["status"]) == {FAILING, f"{QUICK_STUDY}/dvc.yaml:report"}


def test_the_second_run_trains_the_rest_and_dvc_ends_as_after_repro(ray_copy):
    sequential, repo, env, _, _, second, _ = ray_copy
    assert second.returncode == 0, second.stdout[-3000:] + second.stderr[-3000:]
    assert "1 of 8 cells out of date" in second.stdout
    assert "up to date" in dvc(repo, env, "status", f"{QUICK_STUDY}/dvc.yaml").stdout
    assert "Running stage" not in dvc(repo, env, "repro", f"{QUICK_STUDY}/dvc.yaml").stdout
    ours, theirs = _lock(repo), _lock(sequential)
    assert set(ours) == set(theirs)
    for name, entry in ours.items():
        if name.startswith(("train@", "prepare@")):  # the same inputs and, for the cells, the same outputs
            assert {k: v for k, v in entry.items() if k != "outs"} == {
                k: v for k, v in theirs[name].items() if k != "outs"
            }, name
    assert (repo / QUICK_STUDY / "reports" / "index.html").is_file()


def test_every_cell_output_matches_the_sequential_run_but_timing(ray_copy):
    sequential, repo, _, _, _, _, _ = ray_copy
    for cell in CELLS:
        assert_same_cell_outputs(*(r / QUICK_STUDY / "results" / "cells" / cell for r in (repo, sequential)))


def test_one_finished_run_per_cell_on_the_tracking_server(ray_copy):
    _, repo, _, _, _, _, server = ray_copy
    client = MlflowClient(server)
    experiment = client.get_experiment_by_name("bnbench-quick")
    runs = client.search_runs([experiment.experiment_id], "tags.`bnbench.role` = 'cell'")
    assert sorted(r.data.tags["bnbench.cell"] for r in runs) == sorted(CELLS)
    assert {r.info.status for r in runs} == {"FINISHED"}
    assert {r.data.tags["bnbench.dvc_stage"] for r in runs} == {f"{QUICK_STUDY}/dvc.yaml:train@{c}" for c in CELLS}
    assert {r.data.tags["bnbench.backend"] for r in runs} == {"tensorflow"}
    parents = client.search_runs([experiment.experiment_id], "tags.`bnbench.role` = 'study'")
    assert len(parents) == 1 and {r.data.tags["mlflow.parentRunId"] for r in runs} == {parents[0].info.run_id}
    # the commit the driver ran, as the nodes have no .git: the same as in each cell's metrics.json
    written = json.loads((repo / QUICK_STUDY / "results" / "cells" / CELLS[0] / "metrics.json").read_text())
    assert written["git_commit"].startswith(
        subprocess.check_output(["git", "rev-parse", "HEAD"], cwd=repo, text=True).strip()
    )
    assert {r.data.tags["git_commit"] for r in runs} == {written["git_commit"]}
