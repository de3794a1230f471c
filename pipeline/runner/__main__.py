"""Train a study's out-of-date cells in k slots of warm workers; DVC ends as after a sequential `dvc repro`.

Run:    uv run bnbench run studies/quick/dvc.yaml --slots 2   (or python -m pipeline.runner ...)
        uv run bnbench run --slots 2                          (the root dvc.yaml: the main study and the
                                                               studies that run with it)
        uv run bnbench run --all --slots 2                    (every dvc.yaml of the repository)
        MLFLOW_TRACKING_URI=http://<server>:5000 uv run bnbench run studies/quick/dvc.yaml --ray auto
                                                              (the cells as tasks on a Ray cluster: pipeline/runner/ray_cluster.py)

What it does, in order:
1. Reads the stages of the targets with DVC's own parser (foreach expanded, `wdir` applied), and the
   stage graph. A cell stage is one whose command is `python -m pipeline.train ...` (train@, sweep@,
   tuned@ and their `<study>-` prefixed forms); cells are grouped in rounds by how many cell stages
   lie upstream of them: train and sweep cells first, then tuned cells (they need `choose`, which
   needs the sweep).
2. Per round: `dvc repro` the stages upstream of the round's cells that are not cells (fetch,
   prepare; choose before the tuned cells), so DVC alone decides what of those to run.
3. Finds the round's stale cells with `dvc status --json`: once their upstream stages are
   reproduced, a cell is listed exactly when `dvc repro` would run it (changed code, params, data,
   command, or missing/changed outputs). Chosen over parsing `dvc repro --dry`, whose text is not an
   interface and which, before the upstream stages ran, lists every cell downstream of them.
4. Trains them in `--slots` worker processes (pipeline/runner/worker.py): each imports the
   frameworks once and trains many cells, one cell per task, exactly as the stage's command would
   (same entry point, arguments, working directory, DVC_ROOT/DVC_STAGE, outputs removed first).
5. Records each finished cell as `dvc repro` would: `dvc commit --force <stages>` writes its
   dvc.lock entry, caches its outputs and saves DVC's run-cache entry. DVC calls are made from this
   process only, one at a time (DVC takes a repository lock).
6. When every cell succeeded: `dvc repro` of the targets runs what is left (choose, report); every
   cell being recorded, it trains nothing.

A failed cell does not stop the others; its log (.bnbench/runner-logs/<stage>.log, the worker's
stdout and stderr for that cell) is named at the end, the stages downstream of the failure are not
run, and the exit code is 1. Running the command again trains only what is still out of date.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Iterable, Sequence
from pathlib import Path

from pipeline.errors import UserError, command_main, run_cli
from pipeline.repo import repo_root
from pipeline.runner.groups import DEFAULT_SIZE, group_tasks
from pipeline.runner.local import slot_config, train_cells
from pipeline.runner.record import LOG_DIR, log_path
from pipeline.runner.stages import cell_rounds, dvc, dvc_status, load_stages, select, stale, upstream_of
from pipeline.runner.worker import SlotConfig, Task
from pipeline.tracking.settings import TrackingSettings, read_tracking_settings

GPU_MEMORY_ENV = "BNBENCH_GPU_MEMORY_MB"


def study_params_files(task: Task) -> tuple[Path, ...]:
    """The params files a cell's command reads, as the stage's own argument parser reads them."""
    from pipeline.train import parse_args

    return tuple(task.wdir / f for f in parse_args(task.argv).params or [Path("params.yaml")])


def prepare_tracking(tracking: TrackingSettings, tasks: Iterable[Task]) -> None:
    """MLflow's store, experiments and parent runs made once here, before the workers write to them at once."""
    from pipeline.study.params import load_params
    from pipeline.tracking.runs import prepare_study

    for files in dict.fromkeys(map(study_params_files, tasks)):
        prepare_study(tracking, load_params(*files))


def warn_if_spooled(tracking: TrackingSettings) -> None:
    """The cells' own warning (their tracking server did not take everything) is in their logs: say it here too."""
    from pipeline.tracking.runs import SYNC_COMMAND
    from pipeline.tracking.spool import spooled_runs

    spooled = sum(1 for _ in spooled_runs(tracking.spool_dir))
    if spooled:
        print(
            f"runner: warning: {spooled} MLflow run(s) are not all on their tracking server yet (kept in "
            f"{tracking.spool_dir}); deliver them with `{SYNC_COMMAND}` once it answers",
            file=sys.stderr,
        )


def ray_slot_config(slots: int, gpu_memory_mb: int | None, threads: int | None) -> SlotConfig:
    """A Ray cell's settings: `threads` CPUs (default 1); `slots` cells share a GPU, each capped to its share."""
    fraction = round(0.9 / slots, 3) if gpu_memory_mb is None and slots > 1 else None
    return SlotConfig(threads or 1, (), gpu_memory_mb, fraction)


def run(
    root: Path,
    dvcfiles: list[str] | None,
    slots: int,
    config: SlotConfig,
    tracking: TrackingSettings,
    ray_address: str | None = None,
    group_size: int | None = None,
) -> int:
    """The runner; with `ray_address`, the cells train as tasks on that Ray cluster (pipeline/runner/ray_cluster.py).

    With `group_size`, the group engine: cells that share a program train as one, up to that many
    (pipeline/runner/groups.py; Keras on JAX, local slots).
    """
    stages = load_stages(root)
    selected = select(stages, dvcfiles)
    if not selected:
        raise UserError(f"no DVC stages in {', '.join(dvcfiles or ['the repository'])}")
    summary: dict = {"slots": slots, "threads_per_slot": config.threads, "rounds": []}
    failed: list[str] = []
    began = time.perf_counter()
    for number, cells in enumerate(cell_rounds(stages, selected)):
        upstream = upstream_of(stages, cells)
        if upstream:
            print(f"runner: round {number + 1}: dvc repro {len(upstream)} upstream stage(s)", flush=True)
            dvc(root, "repro", *upstream)
        todo = stale(dvc_status(root, {stages[c].dvcfile for c in cells}), cells)
        where = f"{slots} slot(s)" if ray_address is None else f"on the Ray cluster at {ray_address}"
        print(f"runner: round {number + 1}: {len(todo)} of {len(cells)} cells out of date, {where}", flush=True)
        if not todo:
            continue
        tasks = [Task(a, root, stages[a].wdir, stages[a].argv, stages[a].outs, log_path(root, a)) for a in todo]
        prepare_tracking(tracking, tasks)
        if ray_address is None:
            batches = group_tasks(tasks, group_size) if group_size else [[task] for task in tasks]
            if group_size:
                print(f"runner: round {number + 1}: {len(batches)} group(s) of up to {group_size}", flush=True)
            outcome = train_cells(root, batches, slots, config)
        else:
            from pipeline.runner.ray_cluster import train_cells_on_ray

            outcome = train_cells_on_ray(root, stages, tasks, config, ray_address, slots, tracking)
        summary["rounds"].append(
            {
                "cells": len(todo),
                "wall_s": outcome.wall_s,
                "utilisation": outcome.utilisation(),
                "results": [vars(r) for r in outcome.results],
            }
        )
        failed += outcome.failed
        if failed:  # what depends on a failed cell cannot run; `dvc repro` would retrain it one by one
            break
    if not failed:
        print("runner: dvc repro for the stages left (nothing to train)", flush=True)
        dvc(root, "repro", *(dvcfiles if dvcfiles is not None else ["--all-pipelines"]))
    summary["wall_s"] = time.perf_counter() - began
    summary["failed"] = failed
    (root / LOG_DIR).mkdir(parents=True, exist_ok=True)
    (root / LOG_DIR.parent / "runner-summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    warn_if_spooled(tracking)
    if failed:
        print(f"runner: {len(failed)} cell(s) failed; the others are recorded in DVC. Logs:", file=sys.stderr)
        for name in failed:
            print(f"  {name}: {log_path(root, name)}", file=sys.stderr)
        print("Fix the cause and run the same command again: it trains only what is out of date.", file=sys.stderr)
        return 1
    print(f"runner: done in {summary['wall_s']:.0f} s", flush=True)
    return 0


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "dvcfiles", nargs="*", help="dvc.yaml files, relative to the repository root (default: dvc.yaml)"
    )
    parser.add_argument("--all", action="store_true", help="every dvc.yaml of the repository")
    parser.add_argument("--slots", type=int, default=1, help="worker processes, each training one cell at a time")
    parser.add_argument(
        "--threads",
        type=int,
        help="CPU threads per slot (default: cores // slots). Float results depend on it: give the number of "
        "cores for outputs identical to dvc repro's (TensorFlow's default), at the cost of oversubscribing",
    )
    parser.add_argument("--devices", help="GPU ids the slots share round-robin, e.g. 0,1 (one slot per GPU: --slots 2)")
    parser.add_argument(
        "--gpu-memory-mb",
        type=int,
        default=int(os.environ[GPU_MEMORY_ENV]) if os.environ.get(GPU_MEMORY_ENV) else None,
        help=f"TensorFlow: cap each worker's GPU memory (default ${GPU_MEMORY_ENV}; unset: grow as needed)",
    )
    parser.add_argument(
        "--engine",
        choices=["one-cell", "group"],
        default="one-cell",
        help="one-cell: each cell as its stage (any backend); group: cells that differ only in seed, learning rate "
        "or initializer train as one program, Keras on JAX (KERAS_BACKEND=jax), pipeline/cell/group.py. The "
        "engine each cell used is in its metrics.json",
    )
    parser.add_argument(
        "--group-size", type=int, default=DEFAULT_SIZE, help=f"most cells per group (default {DEFAULT_SIZE})"
    )
    parser.add_argument(
        "--ray",
        metavar="ADDRESS",
        help="train the cells as tasks on the Ray cluster at ADDRESS (auto, or <head>:<port>); needs the cluster "
        "extra and MLFLOW_TRACKING_URI=http(s)://<a server every node reaches>. Then --threads is the CPUs (and "
        "threads) of a cell (default 1) and --slots the cells sharing a GPU (num_gpus=1/slots)",
    )


def run_command(args: argparse.Namespace) -> int:
    if args.slots < 1 or (args.threads is not None and args.threads < 1):
        raise UserError(f"--slots {args.slots} --threads {args.threads}: use 1 or more")
    if args.all and args.dvcfiles:
        raise UserError("give dvc.yaml files or --all, not both")
    root = repo_root()
    dvcfiles = None if args.all else [Path(f).as_posix() for f in (args.dvcfiles or ["dvc.yaml"])]
    for name in dvcfiles or []:
        if not (root / name).is_file():
            raise UserError(f"{name}: no such dvc.yaml under {root} (give paths relative to the repository root)")
    tracking = read_tracking_settings(root)
    group_size = None
    if args.engine == "group":
        if args.group_size < 1:
            raise UserError(f"--group-size {args.group_size}: use 1 or more")
        if os.environ.get("KERAS_BACKEND") != "jax":
            raise UserError("--engine group trains Keras on JAX: run it with KERAS_BACKEND=jax (uv sync --extra jax)")
        if args.ray:
            raise UserError("--engine group runs in local slots; on a Ray cluster, each cell trains alone")
        group_size = args.group_size
    if args.ray:
        from pipeline.runner.ray_cluster import check_tracking

        if args.devices:
            raise UserError("--devices is for local slots; on a Ray cluster, Ray assigns each cell its GPU")
        check_tracking(tracking)  # now, not after the upstream stages
        config = ray_slot_config(args.slots, args.gpu_memory_mb, args.threads)
        return run(root, dvcfiles, args.slots, config, tracking, ray_address=args.ray)
    config = slot_config(args.slots, args.devices, args.gpu_memory_mb, args.threads)
    return run(root, dvcfiles, args.slots, config, tracking, group_size=group_size)


def main(argv: Sequence[str] | None = None) -> int:
    return command_main(__doc__, add_arguments, run_command, argv)


if __name__ == "__main__":
    sys.exit(run_cli(main))
