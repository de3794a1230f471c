"""The runner's Ray mode: a study's stale cells as tasks on a Ray cluster (`python -m pipeline.runner ... --ray ADDRESS`).

The driver is the runner in the repository (pipeline/runner/__main__.py): it reproduces the upstream stages
with `dvc repro`, picks the stale cells with `dvc status`, records each finished cell with
`dvc commit --force` and runs the report, exactly as with local slots. Only the training moves to
the cluster, where a node has no access to the driver's workspace. What travels, and how:

- Code and params: the driver's working tree as git sees it (no .git, no .venv, nothing .gitignore'd,
  so no outputs) is the job's Ray `working_dir`: Ray packs it once, each node unpacks it, and a task
  imports `pipeline` from there. The nodes need only the project's locked environment (the same
  Python and packages, e.g. the same image).
- Inputs made by other stages (data/prepared/<dataset>, the sweep's chosen.json): read by the driver
  into bundles (path -> bytes), put into Ray's object store once each; a node fetches what its cells use.
- Each cell trains in a scratch copy of that tree on its node, through the stage's own entry point
  (pipeline/runner/worker.py's run_task), and the task returns the stage's outputs as bytes; the
  driver writes them into its workspace and commits them to DVC. Nothing is written on a node
  outside its scratch folder, which goes when the cell ends.
- Settings: the driver's KERAS_BACKEND, XLA_FLAGS, TF_CPP_MIN_LOG_LEVEL and every BNBENCH_* and
  MLFLOW_* variable go with the cells (Ray's runtime_env env_vars).
- MLflow: the cells log to the driver's tracking store, which must be an http(s) tracking server every
  node reaches (a local sqlite file would stay on the node). The driver's git commit goes with the
  cells (BNBENCH_GIT_COMMIT), as the nodes have no .git.

Resources: a cell asks Ray for `threads` CPUs (default 1) and uses that many threads; on a cluster
with GPUs also 1/slots of a GPU. Ray's fraction does not cap memory, so each worker process gets its
caps in its environment before anything is imported (Ray's runtime_env env_vars): TensorFlow memory
growth (TF_FORCE_GPU_ALLOW_GROWTH) or a per-process limit (--gpu-memory-mb), JAX
XLA_PYTHON_CLIENT_PREALLOCATE=false and XLA_PYTHON_CLIENT_MEM_FRACTION=0.9/slots. Ray starts a fresh
process for every GPU task (its default), so each cell's GPU memory is released when it ends; CPU
tasks reuse warm workers. A failed cell is not retried (a retry would leave a second MLflow run):
run the command again.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import socket
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from pipeline.cell.device import SHARED_ENV
from pipeline.errors import UserError
from pipeline.provenance import COMMIT_ENV, git_commit
from pipeline.runner.record import Outcome, drive
from pipeline.runner.stages import Stage
from pipeline.runner.worker import SlotConfig, Task, TaskResult, remove_outputs, run_task, slot_environment
from pipeline.study.generate import TRAIN_CODE
from pipeline.tracking.settings import URI_ENV, TrackingSettings

# The driver's settings a cell needs on the cluster: these, and every variable with one of the prefixes
# (bnbench's own settings; MLflow's server address and credentials).
FORWARDED_ENV = ("KERAS_BACKEND", "XLA_FLAGS", "TF_CPP_MIN_LOG_LEVEL")
FORWARDED_PREFIXES = ("BNBENCH_", "MLFLOW_")


@dataclass(frozen=True)
class CellJob:
    """One cell's stage, its paths relative to the repository root (the same on the driver and in a node's copy)."""

    addressing: str
    wdir: str
    argv: tuple[str, ...]
    outs: tuple[str, ...]
    config: SlotConfig


@dataclass
class CellReturn:
    addressing: str
    returncode: int
    started: float
    ended: float
    pid: int
    node_id: str
    code_dir: str  # where the task imported the pipeline from: the job's working_dir on that node
    log: str
    outputs: dict[str, bytes]  # every file of the stage's outputs, by path relative to the repository root


# -- files as bytes ------------------------------------------------------------------------------


def bundle(root: Path, paths: Iterable[Path]) -> dict[str, bytes]:
    """Every file at or under `paths` (absolute, inside `root`), by its path relative to `root`."""
    files = {}
    for path in paths:
        for file in sorted(path.rglob("*")) if path.is_dir() else [path] if path.exists() else []:
            if file.is_file():
                files[file.relative_to(root).as_posix()] = file.read_bytes()
    return files


def unbundle(root: Path, files: dict[str, bytes]) -> None:
    for name, content in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content)


def stage_inputs(stages: dict[str, Stage], addressing: str) -> tuple[Path, ...]:
    """The stage's dependencies that other stages write (prepared data, chosen.json): not in the uploaded tree."""
    outs = {out for stage in stages.values() for out in stage.outs}
    # The code digest (stage train-code) is DVC's record of the cells' code; the nodes get the code itself.
    return tuple(
        dep
        for dep in stages[addressing].deps
        if any(dep == o or o in dep.parents for o in outs) and not dep.as_posix().endswith(TRAIN_CODE)
    )


# -- the driver's side ----------------------------------------------------------------------------


def check_tracking(tracking: TrackingSettings) -> None:
    if not tracking.is_server:
        raise UserError(
            f"--ray: the tracking store is {tracking.uri}; cells on a cluster log to an MLflow tracking "
            "server that every node reaches: start one (`mlflow server --host 0.0.0.0 --port 5000`) and set "
            f"{URI_ENV}=http://<its host>:5000"
        )


def task_environment(config: SlotConfig, tracking: TrackingSettings, commit: str) -> dict[str, str]:
    """The environment of every worker process of the job, set by Ray before it imports anything."""
    env = slot_environment(dataclasses.replace(config, devices=()), 0)  # Ray sets CUDA_VISIBLE_DEVICES itself
    if not config.gpu_memory_mb:
        env["TF_FORCE_GPU_ALLOW_GROWTH"] = "true"
    forwarded = {k: v for k, v in os.environ.items() if k in FORWARDED_ENV or k.startswith(FORWARDED_PREFIXES)}
    return {**env, **forwarded, URI_ENV: tracking.uri, COMMIT_ENV: commit}


def check_head_reachable(address: str, timeout_s: float = 5) -> None:
    """Fail in seconds when nothing answers at a head's host:port (ray.init would retry for minutes)."""
    if address == "auto":  # the cluster started on this machine: Ray finds it, or says at once it found none
        return
    host, _, port = address.rpartition(":")
    try:
        socket.create_connection((host, int(port)), timeout=timeout_s).close()
    except (OSError, ValueError) as error:
        raise UserError(
            f"--ray {address}: no Ray head answers there ({error}). Start one (`ray start --head --port 6379`, "
            "then `ray start --address <head>:6379` on each other node), or give its <host>:<port> or auto"
        ) from None


def connect(address: str, root: Path, env: dict[str, str]):
    check_head_reachable(address)
    # A driver started by `uv run` would otherwise have Ray start every worker with `uv run` too, which
    # builds a new environment inside the shipped tree on each node (without the cluster extra, so without
    # Ray): the nodes use the environment they run in. Read by Ray when it is imported.
    os.environ.setdefault("RAY_ENABLE_UV_RUN_RUNTIME_ENV", "0")
    try:
        import ray
    except ImportError:
        raise UserError("--ray needs Ray: install the cluster extra (`uv sync --extra cluster`)") from None
    try:
        ray.init(
            address=address,
            runtime_env={"working_dir": str(root), "env_vars": env},
            log_to_driver=False,  # each cell's output goes to its log file, as with local slots
            logging_level="WARNING",
        )
    except ConnectionError as error:
        raise UserError(
            f"--ray {address}: no Ray cluster answers ({error}). Start one (`ray start --head`, then "
            "`ray start --address <head>:6379` on each other node) or give its address"
        ) from None
    return ray


def cell_resources(ray, config: SlotConfig, slots: int) -> tuple[dict, int, bool]:
    """Ray's resources for one cell, how many cells the cluster runs at once, and whether cells share a device
    (`slots` cells on one GPU; without GPUs, several cells on one node's CPUs); refuses what no node holds."""
    gpus = ray.cluster_resources().get("GPU", 0)
    wanted = {"num_cpus": config.threads, "num_gpus": 1 / slots if gpus else 0}
    nodes = [n["Resources"] for n in ray.nodes() if n["Alive"]]
    fits = [min(int(n.get("CPU", 0) // config.threads), int(n.get("GPU", 0) * slots) if gpus else 10**9) for n in nodes]
    if not any(fits):
        raise UserError(
            f"--ray: no node of the cluster has {config.threads} CPU(s)"
            + (f" and 1/{slots} of a GPU" if gpus else "")
            + " free for a cell; give fewer --threads (CPUs per cell) or add nodes"
        )
    return wanted, sum(fits), slots > 1 if gpus else max(fits) > 1


def train_cells_on_ray(
    root: Path,
    stages: dict[str, Stage],
    tasks: list[Task],
    config: SlotConfig,
    address: str,
    slots: int,
    tracking: TrackingSettings,
) -> Outcome:
    """Train `tasks` as Ray tasks; write each finished cell's outputs into the workspace and commit it to DVC."""
    check_tracking(tracking)
    ray = connect(address, root, task_environment(config, tracking, git_commit()))
    try:
        from ray.util.queue import Queue

        resources, capacity, shared = cell_resources(ray, config, slots)
        config = dataclasses.replace(config, device_shared=shared)
        remote = ray.remote(run_remote).options(**resources, max_retries=0)
        inputs = {path for task in tasks for path in stage_inputs(stages, task.addressing)}
        refs = {path: ray.put(bundle(root, [path])) for path in sorted(inputs)}
        events = Queue(actor_options={"num_cpus": 0})
        pending = {}
        for task in tasks:
            job = CellJob(
                task.addressing,
                task.wdir.relative_to(root).as_posix(),
                task.argv,
                tuple(out.relative_to(root).as_posix() for out in task.outs),
                config,
            )
            pending[remote.remote(job, events, *(refs[p] for p in stage_inputs(stages, task.addressing)))] = [task]

        def ready(refs_left: list) -> list:
            return ray.wait(refs_left, num_returns=len(refs_left), timeout=1.0)[0]

        def started() -> list[str]:
            addressings = []
            while not events.empty():
                addressings.append(events.get_nowait()[1])
            return addressings

        return drive(root, pending, ready, lambda ref, one: [collect(root, one[0], ref, ray)], started, capacity)
    finally:
        ray.shutdown()


def collect(root: Path, task: Task, ref, ray) -> TaskResult:
    """A finished task's result: its log into the cell's log file; on success its outputs into the workspace."""
    try:
        back: CellReturn = ray.get(ref)
    except ray.exceptions.RayError as error:  # its worker or node died, or the task could not start
        task.log.parent.mkdir(parents=True, exist_ok=True)
        task.log.write_text(f"runner: the Ray task failed: {error}\n", encoding="utf-8")
        return TaskResult(task.addressing, 1, 0.0, 0.0, -1, -1, error=f"ray: {type(error).__name__}")
    task.log.parent.mkdir(parents=True, exist_ok=True)
    task.log.write_text(back.log, encoding="utf-8")
    if back.returncode == 0:
        remove_outputs(task.outs)  # what the stage would have replaced, as dvc repro removes it first
        unbundle(root, back.outputs)
    extra = {"node_id": back.node_id, "code_dir": back.code_dir}
    return TaskResult(task.addressing, back.returncode, back.started, back.ended, back.pid, -1, extra=extra)


# -- the task, in a worker process on a node --------------------------------------------------------

_limited = False


def run_remote(job: CellJob, events, *input_bundles: dict[str, bytes]) -> CellReturn:
    """Train one cell on this node, in a scratch copy of the job's tree; returns its outputs and log."""
    import ray

    global _limited
    from pipeline.runner import worker

    if not _limited:  # TensorFlow takes its thread and memory settings once, before it first runs
        worker.limit_framework(job.config)
        _limited = True
    code_dir = Path(__file__).resolve().parents[2]  # the tree Ray unpacked: this module was imported from it
    scratch = Path(tempfile.mkdtemp(prefix="bnbench-cell-"))
    try:
        repo = scratch / "repo"
        shutil.copytree(code_dir, repo, ignore=shutil.ignore_patterns("__pycache__"))
        for files in input_bundles:
            unbundle(repo, files)
        log = scratch / "cell.log"
        os.environ[SHARED_ENV] = "true" if job.config.device_shared else "false"  # this job's, in a warm worker
        task = Task(job.addressing, repo, repo / job.wdir, job.argv, tuple(repo / o for o in job.outs), log)
        result = run_task(task, events=events)  # its start event goes to the driver's progress display
        return CellReturn(
            job.addressing,
            result.returncode,
            result.started,
            result.ended,
            result.pid,
            ray.get_runtime_context().get_node_id(),
            str(code_dir),
            log.read_text(encoding="utf-8", errors="replace") if log.is_file() else "",
            bundle(repo, task.outs) if result.ok else {},
        )
    finally:
        os.chdir(code_dir)  # run_task leaves the process in the scratch copy, about to go
        shutil.rmtree(scratch, ignore_errors=True)
