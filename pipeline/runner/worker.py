"""The runner's worker side: a warm process that trains one cell per task, as its DVC stage would.

A worker is started once per slot (spawn, not fork: TensorFlow and MLflow threads do not
survive a fork), limits its CPU threads and GPU memory before the framework is imported, imports
TensorFlow, Keras and MLflow once, and then trains cell after cell. Each task is one DVC stage:
like `dvc repro`, it removes the stage's outputs, sets DVC_ROOT and DVC_STAGE, runs in the stage's
working directory, and calls the stage's own entry point, `pipeline.train.main`, with the
arguments of the stage's command. The task's stdout and stderr (Python's and the C++ libraries',
at the file-descriptor level) go to its log file.

Per slot settings (SlotConfig):
- CPU: TensorFlow's intra- and inter-op thread pools (and OpenMP's) get `threads` threads,
  cores // slots by default, so k workers do not oversubscribe the cores.
- GPU: `devices` (a list of GPU ids) gives slot i the device devices[i % len(devices)] through
  CUDA_VISIBLE_DEVICES: one slot per device, or several slots sharing one. With TensorFlow each
  worker then either caps its memory at `gpu_memory_mb` (a logical device with that memory
  limit, `BNBENCH_GPU_MEMORY_MB`) or, without a cap, grows its allocation as needed instead of
  taking the whole device. With JAX, XLA_PYTHON_CLIENT_PREALLOCATE=false and, with a cap,
  XLA_PYTHON_CLIENT_MEM_FRACTION (the cap over the device's memory is not known before JAX starts,
  so the fraction is `gpu_memory_fraction`).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import sys
import time
import traceback
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from pipeline.cell.device import SHARED_ENV, tensorflow_gpus


@dataclass(frozen=True)
class SlotConfig:
    threads: int  # CPU threads per worker (TensorFlow intra- and inter-op pools, OpenMP)
    devices: tuple[str, ...] = ()  # GPU ids shared round-robin by the slots; () leaves CUDA_VISIBLE_DEVICES alone
    gpu_memory_mb: int | None = None  # TensorFlow: a per-worker memory cap; None: memory growth
    gpu_memory_fraction: float | None = None  # JAX: XLA_PYTHON_CLIENT_MEM_FRACTION
    device_shared: bool = False  # whether other slots train on a slot's device at the same time (its cells say so)
    log_dir: Path | None = None  # where the worker's own output (start-up, between cells) goes: worker-<slot>.log


@dataclass(frozen=True)
class Task:
    addressing: str  # the DVC stage, e.g. studies/quick/dvc.yaml:train@cifar10-relu-off-0.0-0
    root: Path  # the DVC repository (DVC_ROOT)
    wdir: Path  # the stage's working directory
    argv: tuple[str, ...]  # the stage command's arguments after `python -m pipeline.train`
    outs: tuple[Path, ...]  # the stage's outputs, removed before it runs, as dvc repro does
    log: Path


@dataclass(frozen=True)
class TaskResult:
    addressing: str
    returncode: int
    started: float  # time.time() in the worker
    ended: float
    pid: int
    slot: int
    error: str | None = None  # set when the task could not run at all (e.g. its worker died)
    extra: dict = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.returncode == 0


def slot_environment(config: SlotConfig, slot: int) -> dict[str, str]:
    """Environment variables a worker sets for itself before importing the framework."""
    env = {
        "TF_NUM_INTRAOP_THREADS": str(config.threads),
        "TF_NUM_INTEROP_THREADS": str(config.threads),
        "OMP_NUM_THREADS": str(config.threads),
        "TF_CPP_MIN_LOG_LEVEL": os.environ.get("TF_CPP_MIN_LOG_LEVEL", "1"),
        SHARED_ENV: "true" if config.device_shared else "false",
    }
    if config.devices:
        env["CUDA_VISIBLE_DEVICES"] = config.devices[slot % len(config.devices)]
    env["XLA_PYTHON_CLIENT_PREALLOCATE"] = "false"
    if config.gpu_memory_fraction is not None:
        env["XLA_PYTHON_CLIENT_MEM_FRACTION"] = f"{config.gpu_memory_fraction:.3f}"
    return env


_slot = -1
_events = None


def init_worker(config: SlotConfig, counter, events) -> None:
    """Runs once per worker process: take a slot number, limit threads and memory, import the frameworks."""
    global _slot, _events
    with counter.get_lock():
        _slot = counter.value
        counter.value += 1
    _events = events
    if config.log_dir is not None:  # the frameworks' start-up chatter: not on the progress display
        config.log_dir.mkdir(parents=True, exist_ok=True)
        with (config.log_dir / f"worker-{_slot}.log").open("w", encoding="utf-8") as log:
            os.dup2(log.fileno(), 1)
            os.dup2(log.fileno(), 2)
    os.environ.update(slot_environment(config, _slot))
    limit_framework(config)
    import pipeline.tracking.runs  # noqa: F401 - MLflow, imported once here rather than in the first cell
    import pipeline.train  # noqa: F401


def limit_framework(config: SlotConfig) -> None:
    """TensorFlow's threads and GPU memory, set before it first runs (it refuses changes later).

    Call it once per process, after the environment of `slot_environment` is set (JAX takes its limits
    from there); a runner worker does at its start, a Ray task in a fresh worker process.
    """
    import keras

    if keras.config.backend() == "tensorflow":
        import tensorflow as tf

        tf.config.threading.set_intra_op_parallelism_threads(config.threads)
        tf.config.threading.set_inter_op_parallelism_threads(config.threads)
        for gpu in tensorflow_gpus():  # without the cuInit error line on a machine without a GPU
            if config.gpu_memory_mb:
                limit = tf.config.LogicalDeviceConfiguration(memory_limit=config.gpu_memory_mb)
                tf.config.set_logical_device_configuration(gpu, [limit])
            else:
                tf.config.experimental.set_memory_growth(gpu, True)


@contextlib.contextmanager
def captured_output(path: Path) -> Iterator[None]:
    """Send this process's output to `path` while the block runs.

    Both levels: file descriptors 1 and 2 (what TensorFlow's C++ side and subprocesses write) and
    Python's sys.stdout and sys.stderr (which need not write to those descriptors).
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    sys.stdout.flush()
    sys.stderr.flush()
    saved = os.dup(1), os.dup(2)
    try:
        with path.open("w", encoding="utf-8", buffering=1) as log:
            os.dup2(log.fileno(), 1)
            os.dup2(log.fileno(), 2)
            try:
                with contextlib.redirect_stdout(log), contextlib.redirect_stderr(log):
                    yield
            finally:
                os.dup2(saved[0], 1)
                os.dup2(saved[1], 2)
    finally:
        os.close(saved[0])
        os.close(saved[1])


def remove_outputs(outs: Sequence[Path]) -> None:
    """What `dvc repro` does before it runs a stage: its outputs go, so nothing stale survives into them."""
    for out in outs:
        if out.is_dir() and not out.is_symlink():
            shutil.rmtree(out)
        elif out.exists() or out.is_symlink():
            out.unlink()


def _train_entry(argv: Sequence[str]) -> int:
    from pipeline.errors import run_cli
    from pipeline.train import main

    return run_cli(lambda: main(list(argv)))


def _group_entry(argvs: Sequence[Sequence[str]], stages: Sequence[str]) -> int:
    from pipeline.errors import run_cli
    from pipeline.train import main_group

    return run_cli(lambda: main_group([list(argv) for argv in argvs], list(stages)))


def _fresh_framework_state() -> None:
    # Layer names (and so the history's grad_norm/<layer> columns) come from Keras' global name
    # counters: without this, a worker's second cell would name its layers conv2d_4, ... instead
    # of conv2d, ... as a fresh process does.
    if "keras" in sys.modules:
        import keras

        keras.backend.clear_session()


def run_task(task: Task, entry: Callable[[Sequence[str]], int] | None = None, events=None) -> TaskResult:
    """Train one cell as its DVC stage would; never raises: a failure is a non-zero return code and its log.

    Its start goes to `events` (a queue the runner reads), by default this worker's.
    """
    entry = entry or _train_entry
    [result] = _run_cells([task], lambda: entry(task.argv), events)
    return result


def run_group(
    tasks: Sequence[Task], entry: Callable[[Sequence[Sequence[str]], Sequence[str]], int] | None = None, events=None
) -> list[TaskResult]:
    """Train a group's cells as one program (pipeline/train.py main_group), each as its stage would; never raises.

    The group's output goes to each cell's log; the cells succeed or fail together.
    """
    entry = entry or _group_entry
    return _run_cells(tasks, lambda: entry([t.argv for t in tasks], [t.addressing for t in tasks]), events)


def run_batch(tasks: Sequence[Task]) -> list[TaskResult]:
    """One cell as its stage, or several as a group: what a runner slot is given."""
    return [run_task(tasks[0])] if len(tasks) == 1 else run_group(tasks)


def _run_cells(tasks: Sequence[Task], train: Callable[[], int], events) -> list[TaskResult]:
    events = events if events is not None else _events
    started = time.time()
    for task in tasks:
        if events is not None:
            events.put(("start", task.addressing, os.getpid(), _slot, started))
    lead = tasks[0]  # a group's cells share their dvc.yaml, so its working directory
    code = 1
    with captured_output(lead.log):
        try:
            names = ", ".join(t.addressing for t in tasks)
            print(f"runner: {names} in {lead.wdir} (pid {os.getpid()}, slot {_slot})", flush=True)
            for task in tasks:
                remove_outputs(task.outs)
            os.chdir(lead.wdir)
            os.environ["DVC_ROOT"] = str(lead.root)
            os.environ["DVC_STAGE"] = lead.addressing  # a group's cells tag their runs with their own (main_group)
            _fresh_framework_state()
            code = train()
        except (Exception, SystemExit):  # SystemExit: argparse refusing the stage's arguments
            traceback.print_exc()
            code = 1
        finally:
            os.chdir(lead.root)
    for task in tasks[1:]:
        task.log.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(lead.log, task.log)
    ended = time.time()
    return [TaskResult(t.addressing, code, started, ended, os.getpid(), _slot) for t in tasks]
