"""The runner's local mode: a study's stale cells in k slots of warm worker processes on this machine.

Each slot is a process (pipeline/runner/worker.py) that limits its threads and GPU memory, imports
the frameworks once and trains cell after cell. Slots share the cores (cores // slots threads each
by default) and, with --devices, the GPUs round-robin.
"""

from __future__ import annotations

import dataclasses
import os
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from pathlib import Path

from pipeline.runner.record import LOG_DIR, Outcome, drive
from pipeline.runner.worker import SlotConfig, Task, TaskResult, init_worker, run_batch


def slot_threads(cores: int, slots: int) -> int:
    return max(1, cores // slots)


def slot_config(slots: int, devices: str | None, gpu_memory_mb: int | None, threads: int | None = None) -> SlotConfig:
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    if threads is not None:
        cores, slots_sharing = threads, 1
    else:
        slots_sharing = slots
    ids = tuple(d for d in (devices or "").split(",") if d.strip())
    per_device = -(-slots // len(ids)) if ids else slots
    fraction = round(0.9 / per_device, 3) if gpu_memory_mb is None and per_device > 1 else None
    # k slots on one device (a GPU, or the CPU when no GPU is given) train at the same time
    return SlotConfig(slot_threads(cores, slots_sharing), ids, gpu_memory_mb, fraction, device_shared=per_device > 1)


def train_cells(root: Path, batches: list[list[Task]], slots: int, config: SlotConfig) -> Outcome:
    """Train `batches` in `slots` warm workers; commit each finished cell to DVC; never stops at a failure.

    A batch of one cell trains as its stage would; a longer one is a group, trained as one program
    (pipeline/runner/groups.py).
    """
    import multiprocessing

    context = multiprocessing.get_context("spawn")
    counter, events = context.Value("i", 0), context.SimpleQueue()
    config = dataclasses.replace(config, log_dir=root / LOG_DIR)

    def ready(futures: list) -> set:
        return wait(futures, timeout=1.0, return_when=FIRST_COMPLETED).done

    def result_of(future, tasks: list[Task]) -> list[TaskResult]:
        try:
            return future.result()
        except Exception as error:  # its worker died (killed, out of memory): the pool is broken
            results = []
            for task in tasks:
                results.append(TaskResult(task.addressing, 1, 0.0, 0.0, -1, -1, error=f"worker died: {error!r}"))
                with task.log.open("a", encoding="utf-8") as log:
                    log.write(f"\nrunner: {results[-1].error}\n")
            return results

    def started() -> list[str]:
        addressings = []
        while not events.empty():
            _, address, *_ = events.get()
            addressings.append(address)
        return addressings

    with ProcessPoolExecutor(
        max_workers=slots,
        mp_context=context,
        initializer=init_worker,
        initargs=(config, counter, events),
        max_tasks_per_child=None,  # warm: a worker trains cell after cell
    ) as pool:
        pending = {pool.submit(run_batch, batch): batch for batch in batches}
        return drive(root, pending, ready, result_of, started, slots)
