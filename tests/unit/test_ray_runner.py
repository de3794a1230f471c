"""The Ray runner's parts that need no cluster: what travels to a node and back, resources, the refusals."""

from __future__ import annotations

from pathlib import Path

import pytest

from pipeline.errors import UserError
from pipeline.provenance import COMMIT_ENV, git_commit
from pipeline.runner.__main__ import main, ray_slot_config
from pipeline.runner.ray_cluster import (
    bundle,
    cell_resources,
    check_head_reachable,
    check_tracking,
    stage_inputs,
    task_environment,
    unbundle,
)
from pipeline.runner.stages import load_stages
from pipeline.runner.worker import SlotConfig
from pipeline.tracking.settings import TrackingSettings, read_tracking_settings
from tests.helpers import REPO, free_port


def test_a_stage_s_outputs_travel_as_bytes_and_land_where_they_were(tmp_path):
    cell = tmp_path / "results" / "cells" / "a"
    (cell / "sub").mkdir(parents=True)
    (cell / "metrics.json").write_text("{}")
    (cell / "sub" / "curves.png").write_bytes(b"\x89PNG\x00")
    (tmp_path / "chosen.json").write_text("[]")
    files = bundle(tmp_path, [cell, tmp_path / "chosen.json", tmp_path / "missing"])
    assert files == {
        "results/cells/a/metrics.json": b"{}",
        "results/cells/a/sub/curves.png": b"\x89PNG\x00",
        "chosen.json": b"[]",
    }
    unbundle(tmp_path / "elsewhere", files)
    assert bundle(tmp_path / "elsewhere", [tmp_path / "elsewhere"]) == files


def test_a_cell_ships_the_outputs_of_other_stages_it_reads_and_no_code():
    stages = load_stages(REPO)
    quick = REPO / "studies" / "quick"
    inputs = stage_inputs(stages, "studies/quick/dvc.yaml:train@cifar10-sigmoid-off-0.0-0")
    assert inputs == (quick / "data" / "prepared" / "cifar10",)
    tuned = next(a for a in stages if a.startswith("tuned@"))
    assert {p.name for p in stage_inputs(stages, tuned)} == {"chosen.json", tuned.split("@")[1].split("-")[0]}


def test_cluster_runs_need_a_tracking_server_every_node_reaches(tmp_path):
    for environ in ({}, {"MLFLOW_TRACKING_URI": "sqlite:///mlflow.db"}, {"MLFLOW_TRACKING_URI": "file:///tmp/mlruns"}):
        with pytest.raises(UserError, match="mlflow server.*MLFLOW_TRACKING_URI=http"):
            check_tracking(read_tracking_settings(tmp_path, environ))
    check_tracking(read_tracking_settings(tmp_path, {"MLFLOW_TRACKING_URI": "http://10.0.0.5:5000"}))


def test_a_ray_cell_s_environment_caps_threads_and_memory_and_carries_the_driver_s_settings(monkeypatch):
    monkeypatch.setenv("KERAS_BACKEND", "jax")
    monkeypatch.setenv("MLFLOW_TRACKING_TOKEN", "t")
    monkeypatch.setenv("BNBENCH_DEVICE", "gpu")
    monkeypatch.setenv("HOME_ONLY_HERE", "no")
    server = TrackingSettings("http://h:5000", Path("spool"))
    env = task_environment(ray_slot_config(slots=4, gpu_memory_mb=None, threads=3), server, "abc")
    assert env["TF_NUM_INTRAOP_THREADS"] == env["OMP_NUM_THREADS"] == "3"
    assert env["XLA_PYTHON_CLIENT_PREALLOCATE"] == "false" and env["XLA_PYTHON_CLIENT_MEM_FRACTION"] == "0.225"
    assert env["TF_FORCE_GPU_ALLOW_GROWTH"] == "true" and "CUDA_VISIBLE_DEVICES" not in env  # Ray assigns GPUs
    assert env["KERAS_BACKEND"] == "jax" and env["MLFLOW_TRACKING_TOKEN"] == "t" and env["BNBENCH_DEVICE"] == "gpu"
    assert env["MLFLOW_TRACKING_URI"] == "http://h:5000" and env[COMMIT_ENV] == "abc"
    assert "HOME_ONLY_HERE" not in env
    capped = task_environment(ray_slot_config(slots=2, gpu_memory_mb=4000, threads=None), server, "abc")
    assert "TF_FORCE_GPU_ALLOW_GROWTH" not in capped and "XLA_PYTHON_CLIENT_MEM_FRACTION" not in capped
    assert ray_slot_config(slots=1, gpu_memory_mb=None, threads=None) == SlotConfig(1, (), None, None)


def test_the_driver_s_commit_names_the_code_where_there_is_no_checkout(monkeypatch):
    monkeypatch.setenv(COMMIT_ENV, "0123abc-dirty")
    assert git_commit() == "0123abc-dirty"


def test_ray_mode_refuses_local_devices_and_a_local_store(monkeypatch):
    monkeypatch.chdir(REPO)
    with pytest.raises(UserError, match="--devices is for local slots"):
        main(["studies/quick/dvc.yaml", "--ray", "auto", "--devices", "0,1"])
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    with pytest.raises(UserError, match="the tracking store is sqlite:.*mlflow server"):
        main(["studies/quick/dvc.yaml", "--ray", "auto"])


@pytest.mark.parametrize("address", ["127.0.0.1:{port}", "127.0.0.1", "127.0.0.1:x"])
def test_a_head_that_does_not_answer_is_named_in_seconds(address):
    with pytest.raises(UserError, match="no Ray head answers there.*ray start --head"):
        check_head_reachable(address.format(port=free_port()), timeout_s=2)


class _Cluster:
    """What cell_resources reads of Ray: the cluster's resources and its nodes'."""

    def __init__(self, *nodes: dict):
        self._nodes = nodes

    def cluster_resources(self) -> dict:
        return {"GPU": sum(n.get("GPU", 0) for n in self._nodes)}

    def nodes(self) -> list[dict]:
        return [{"Alive": True, "Resources": n} for n in self._nodes]


def test_ray_cells_share_a_device_where_a_gpu_or_a_node_s_cpus_hold_several():
    config = ray_slot_config(slots=1, gpu_memory_mb=None, threads=2)
    assert cell_resources(_Cluster({"CPU": 2}, {"CPU": 2}), config, 1)[1:] == (2, False)  # a cell per node
    assert cell_resources(_Cluster({"CPU": 4}), config, 1)[1:] == (2, True)  # two cells on one node's CPUs
    gpus = _Cluster({"CPU": 16, "GPU": 2})
    assert cell_resources(gpus, config, 1)[1:] == (2, False)  # a GPU each
    assert cell_resources(gpus, ray_slot_config(slots=4, gpu_memory_mb=None, threads=2), 4)[1:] == (8, True)
