"""Train a study's out-of-date cells in k slots of warm workers; DVC ends as after a sequential `dvc repro`.

Run:    uv run python -m pipeline.runner studies/quick/dvc.yaml --slots 2
        uv run python -m pipeline.runner --slots 2            (the root dvc.yaml: the main study and the
                                                               studies that run with it)
        uv run python -m pipeline.runner --all --slots 2      (every dvc.yaml of the repository)
        MLFLOW_TRACKING_URI=http://<server>:5000 uv run python -m pipeline.runner studies/quick/dvc.yaml --ray auto
                                                              (the cells as tasks on a Ray cluster: pipeline/ray_runner.py)

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
4. Trains them in `--slots` worker processes (pipeline/runner_worker.py): each imports the
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
import dataclasses
import json
import os
import re
import shlex
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path

from pipeline.errors import UserError, run_cli
from pipeline.runner_worker import SlotConfig, Task, TaskResult, run_task

CELL_COMMAND = ("python", "-m", "pipeline.train")
LOG_DIR = Path(".bnbench") / "runner-logs"
GPU_MEMORY_ENV = "BNBENCH_GPU_MEMORY_MB"


# -- the stages (pure, apart from load_stages) ---------------------------------------------------


@dataclass(frozen=True)
class Stage:
    addressing: str  # DVC's name for it: `train@x` in the root dvc.yaml, `studies/quick/dvc.yaml:train@x` elsewhere
    dvcfile: str  # its dvc.yaml, relative to the repository root
    cmd: str
    wdir: Path
    outs: tuple[Path, ...]
    upstream: frozenset[str]  # every stage it depends on, transitively
    deps: tuple[Path, ...] = ()  # its dependencies' paths (code, data, other stages' outputs)

    @property
    def argv(self) -> tuple[str, ...] | None:
        return cell_argv(self.cmd)

    @property
    def is_cell(self) -> bool:
        return self.argv is not None


def cell_argv(cmd: str) -> tuple[str, ...] | None:
    """The arguments of a cell stage's command (`python -m pipeline.train <these>`); None for another stage."""
    words = shlex.split(cmd)
    return tuple(words[len(CELL_COMMAND) :]) if tuple(words[: len(CELL_COMMAND)]) == CELL_COMMAND else None


def load_stages(root: Path) -> dict[str, Stage]:
    """Every stage of the repository as DVC itself reads it (foreach expanded, wdir applied), by addressing."""
    import networkx as nx
    from dvc.repo import Repo

    with Repo(str(root)) as repo:
        graph = repo.index.graph  # an edge goes from a stage to a stage it depends on
        return {
            stage.addressing: Stage(
                addressing=stage.addressing,
                dvcfile=Path(stage.path_in_repo).as_posix(),
                cmd=stage.cmd if isinstance(stage.cmd, str) else " && ".join(stage.cmd or []),
                wdir=Path(stage.wdir),
                outs=tuple(Path(out.fs_path) for out in stage.outs),
                deps=tuple(Path(dep.fs_path) for dep in stage.deps),
                upstream=frozenset(dep.addressing for dep in nx.descendants(graph, stage)),
            )
            for stage in repo.index.stages
        }


def select(stages: dict[str, Stage], dvcfiles: Iterable[str] | None) -> dict[str, Stage]:
    """The stages defined in `dvcfiles` (None: all of them)."""
    wanted = None if dvcfiles is None else {Path(f).as_posix() for f in dvcfiles}
    return {a: s for a, s in stages.items() if wanted is None or s.dvcfile in wanted}


def cell_rounds(stages: dict[str, Stage], selected: Iterable[str]) -> list[list[str]]:
    """The selected cell stages grouped by the number of cell stages on their longest upstream chain.

    Round 0 needs no cell upstream (train, sweep); round 1 needs round 0 (tuned, after choose).
    """
    depth: dict[str, int] = {}

    def of(address: str) -> int:
        if address not in depth:
            cells_up = [u for u in stages[address].upstream if stages[u].is_cell]
            depth[address] = 1 + max(map(of, cells_up)) if cells_up else 0
        return depth[address]

    cells = sorted(a for a in selected if stages[a].is_cell)
    rounds: list[list[str]] = [[] for _ in range(1 + max(map(of, cells), default=-1))]
    for address in cells:
        rounds[of(address)].append(address)
    return rounds


def upstream_of(stages: dict[str, Stage], cells: Iterable[str]) -> list[str]:
    """The stages, not cells, that the cells depend on: what `dvc repro` must bring up to date first."""
    return sorted({u for c in cells for u in stages[c].upstream if not stages[u].is_cell})


def stale(status: dict, candidates: Iterable[str]) -> list[str]:
    """The candidates `dvc status --json` lists with a change (it lists nothing for an up-to-date stage)."""
    return [c for c in candidates if status.get(c)]


def log_path(root: Path, addressing: str) -> Path:
    return root / LOG_DIR / (re.sub(r"[^A-Za-z0-9@._-]+", "_", addressing) + ".log")


def commit_command(addressings: Sequence[str]) -> list[str]:
    """Record finished stages as `dvc repro` does: lock entries, cached outputs, run-cache; no prompt."""
    return [sys.executable, "-m", "dvc", "commit", "--force", *addressings]


def slot_threads(cores: int, slots: int) -> int:
    return max(1, cores // slots)


# -- progress (pure) -----------------------------------------------------------------------------


def _clock_text(seconds: float | None) -> str:
    if seconds is None:
        return "?"
    minutes, secs = divmod(int(round(seconds)), 60)
    return f"{minutes}:{secs:02d}"


class Progress:
    """Counts of a round's cells (done, running, failed) and its elapsed time and ETA."""

    def __init__(self, total: int, clock: Callable[[], float] = time.monotonic):
        self.total = total
        self.clock = clock
        self.began = clock()
        self.running: set[str] = set()
        self.ended: set[str] = set()
        self.done = 0
        self.failed = 0

    def start(self, name: str) -> None:
        if name not in self.ended:  # a late start event of a cell already counted as ended
            self.running.add(name)

    def stop(self, name: str) -> None:
        """The cell's worker is done with it (it may still wait for its DVC commit)."""
        self.running.discard(name)
        self.ended.add(name)

    def finish(self, name: str, ok: bool) -> None:
        self.running.discard(name)
        self.ended.add(name)
        if ok:
            self.done += 1
        else:
            self.failed += 1

    @property
    def finished(self) -> int:
        return self.done + self.failed

    def elapsed(self) -> float:
        return self.clock() - self.began

    def eta(self) -> float | None:
        """Seconds left at the rate cells have finished so far; None before the first one."""
        if not self.finished:
            return None
        return self.elapsed() / self.finished * (self.total - self.finished)

    def line(self) -> str:
        return (
            f"done {self.done}/{self.total}, running {len(self.running)}, failed {self.failed}, "
            f"elapsed {_clock_text(self.elapsed())}, ETA {_clock_text(self.eta())}"
        )


# -- DVC, one call at a time ----------------------------------------------------------------------


def dvc(root: Path, *args: str, capture: bool = False) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "dvc", *args]
    done = subprocess.run(command, cwd=root, text=True, capture_output=capture)
    if done.returncode:
        detail = f":\n{done.stdout}{done.stderr}" if capture else ""
        raise UserError(f"`dvc {' '.join(args)}` failed (exit code {done.returncode}){detail}")
    return done


def dvc_status(root: Path, dvcfiles: Iterable[str]) -> dict:
    return json.loads(dvc(root, "status", "--json", *sorted(set(dvcfiles)), capture=True).stdout or "{}")


# -- training in slots --------------------------------------------------------------------------


@dataclass
class Outcome:
    results: list[TaskResult]
    failed: list[str]  # addressings
    wall_s: float
    slots: int

    def utilisation(self) -> float | None:
        """Busy slot-seconds (cells training in workers) over slots x the round's wall time."""
        busy = sum(r.ended - r.started for r in self.results if r.error is None)
        return busy / (self.slots * self.wall_s) if self.wall_s > 0 else None


def study_params_files(task: Task) -> tuple[Path, ...]:
    """The params files a cell's command reads, as the stage's own argument parser reads them."""
    from pipeline.train import parse_args

    return tuple(task.wdir / f for f in parse_args(task.argv).params or [Path("params.yaml")])


def prepare_tracking(tasks: Iterable[Task]) -> None:
    """MLflow's store, experiments and parent runs made once here, before the workers write to them at once."""
    from pipeline.params import load_params
    from pipeline.tracking import prepare_study

    for files in dict.fromkeys(map(study_params_files, tasks)):
        prepare_study(load_params(*files))


def warn_if_spooled(root: Path) -> None:
    """The cells' own warning (their tracking server did not take everything) is in their logs: say it here too."""
    from pipeline.tracking import SYNC_COMMAND
    from pipeline.tracking_spool import SPOOL_DIR, spooled_runs

    spooled = sum(1 for _ in spooled_runs(root / SPOOL_DIR))
    if spooled:
        print(
            f"runner: warning: {spooled} MLflow run(s) are not all on their tracking server yet (kept in "
            f"{root / SPOOL_DIR}); deliver them with `{SYNC_COMMAND}` once it answers",
            file=sys.stderr,
        )


def train_cells(root: Path, tasks: list[Task], slots: int, config: SlotConfig) -> Outcome:
    """Train `tasks` in `slots` warm workers; commit each finished one to DVC; never stops at a failure."""
    import multiprocessing

    from tqdm import tqdm

    context = multiprocessing.get_context("spawn")
    counter, events = context.Value("i", 0), context.SimpleQueue()
    config = dataclasses.replace(config, log_dir=root / LOG_DIR)
    progress = Progress(len(tasks))
    results: list[TaskResult] = []
    failed: list[str] = []
    bar = tqdm(total=len(tasks), unit="cell", bar_format="{n_fmt}/{total_fmt} |{bar}| {postfix}", dynamic_ncols=True)
    began = time.perf_counter()

    def refresh() -> None:
        while not events.empty():
            _, address, *_ = events.get()
            progress.start(address)
        bar.n = progress.finished
        bar.set_postfix_str(progress.line(), refresh=True)

    with ProcessPoolExecutor(
        max_workers=slots,
        mp_context=context,
        initializer=init_worker_entry,
        initargs=(config, counter, events),
        max_tasks_per_child=None,  # warm: a worker trains cell after cell
    ) as pool:
        pending = {pool.submit(run_task, task): task for task in tasks}
        while pending:
            done, _ = wait(pending, timeout=1.0, return_when=FIRST_COMPLETED)
            refresh()  # start events first: a cell's start is never counted after its end
            ended: list[tuple[Task, TaskResult]] = []
            for future in done:
                task = pending.pop(future)
                try:
                    result = future.result()
                except Exception as error:  # its worker died (killed, out of memory): the pool is broken
                    result = TaskResult(task.addressing, 1, 0.0, 0.0, -1, -1, error=f"worker died: {error!r}")
                    with task.log.open("a", encoding="utf-8") as log:
                        log.write(f"\nrunner: {result.error}\n")
                ended.append((task, result))
            record_ended(root, ended, progress, results, failed)
            refresh()
    bar.close()
    return Outcome(results, failed, time.perf_counter() - began, slots)


def record_ended(
    root: Path, ended: list[tuple[Task, TaskResult]], progress: Progress, results: list, failed: list[str]
) -> None:
    """Cells that ended, in local slots or on Ray: the finished ones committed to DVC, the failed named with their log."""
    from tqdm import tqdm

    finished = []
    for task, result in ended:
        results.append(result)
        progress.stop(task.addressing)
        if result.ok:
            finished.append(result)
        else:
            failed.append(task.addressing)
            progress.finish(task.addressing, ok=False)
            tqdm.write(f"  FAILED  {task.addressing}: see {task.log}")
    failed += commit_finished(root, finished, progress)


def commit_finished(root: Path, finished: list[TaskResult], progress: Progress) -> list[str]:
    """Record the cells that ended since the last call in DVC, in one `dvc commit --force`; returns those it could not.

    Their outputs must be in the workspace (a runner worker wrote them there; the Ray runner copied them back).
    """
    from tqdm import tqdm

    if not finished:
        return []
    commit = subprocess.run(commit_command([r.addressing for r in finished]), cwd=root, text=True, capture_output=True)
    failed = []
    for result in finished:
        progress.finish(result.addressing, ok=not commit.returncode)
        if commit.returncode:
            failed.append(result.addressing)
            with log_path(root, result.addressing).open("a", encoding="utf-8") as log:
                log.write(f"\nrunner: dvc commit failed:\n{commit.stdout}{commit.stderr}")
            tqdm.write(f"  FAILED  {result.addressing} (dvc commit): see {log_path(root, result.addressing)}")
        else:
            tqdm.write(f"  done    {result.addressing} ({result.ended - result.started:.1f} s)")
    return failed


def init_worker_entry(config: SlotConfig, counter, events) -> None:
    from pipeline.runner_worker import init_worker

    init_worker(config, counter, events)


# -- the command ---------------------------------------------------------------------------------


def repo_root() -> Path:
    here = Path.cwd().resolve()
    for folder in (here, *here.parents):
        if (folder / ".dvc").is_dir():
            return folder
    raise UserError(f"{here}: not inside a DVC repository (no .dvc/ above); run the runner in the project")


def slot_config(slots: int, devices: str | None, gpu_memory_mb: int | None, threads: int | None = None) -> SlotConfig:
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    if threads is not None:
        cores, slots_sharing = threads, 1
    else:
        slots_sharing = slots
    ids = tuple(d for d in (devices or "").split(",") if d.strip())
    per_device = -(-slots // len(ids)) if ids else slots
    fraction = round(0.9 / per_device, 3) if gpu_memory_mb is None and per_device > 1 else None
    return SlotConfig(slot_threads(cores, slots_sharing), ids, gpu_memory_mb, fraction)


def ray_slot_config(slots: int, gpu_memory_mb: int | None, threads: int | None) -> SlotConfig:
    """A Ray cell's settings: `threads` CPUs (default 1); `slots` cells share a GPU, each capped to its share."""
    fraction = round(0.9 / slots, 3) if gpu_memory_mb is None and slots > 1 else None
    return SlotConfig(threads or 1, (), gpu_memory_mb, fraction)


def run(root: Path, dvcfiles: list[str] | None, slots: int, config: SlotConfig, ray_address: str | None = None) -> int:
    """The runner; with `ray_address`, the cells train as tasks on that Ray cluster (pipeline/ray_runner.py)."""
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
        prepare_tracking(tasks)
        if ray_address is None:
            outcome = train_cells(root, tasks, slots, config)
        else:
            from pipeline.ray_runner import train_cells_on_ray

            outcome = train_cells_on_ray(root, stages, tasks, config, ray_address, slots)
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
    warn_if_spooled(root)
    if failed:
        print(f"runner: {len(failed)} cell(s) failed; the others are recorded in DVC. Logs:", file=sys.stderr)
        for name in failed:
            print(f"  {name}: {log_path(root, name)}", file=sys.stderr)
        print("Fix the cause and run the same command again: it trains only what is out of date.", file=sys.stderr)
        return 1
    print(f"runner: done in {summary['wall_s']:.0f} s", flush=True)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
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
        "--ray",
        metavar="ADDRESS",
        help="train the cells as tasks on the Ray cluster at ADDRESS (auto, or <head>:<port>); needs the cluster "
        "extra and MLFLOW_TRACKING_URI=http(s)://<a server every node reaches>. Then --threads is the CPUs (and "
        "threads) of a cell (default 1) and --slots the cells sharing a GPU (num_gpus=1/slots)",
    )
    args = parser.parse_args(argv)
    if args.slots < 1 or (args.threads is not None and args.threads < 1):
        raise UserError(f"--slots {args.slots} --threads {args.threads}: use 1 or more")
    if args.all and args.dvcfiles:
        raise UserError("give dvc.yaml files or --all, not both")
    root = repo_root()
    dvcfiles = None if args.all else [Path(f).as_posix() for f in (args.dvcfiles or ["dvc.yaml"])]
    for name in dvcfiles or []:
        if not (root / name).is_file():
            raise UserError(f"{name}: no such dvc.yaml under {root} (give paths relative to the repository root)")
    if args.ray:
        from pipeline.ray_runner import check_tracking_uri

        if args.devices:
            raise UserError("--devices is for local slots; on a Ray cluster, Ray assigns each cell its GPU")
        check_tracking_uri()  # now, not after the upstream stages
        config = ray_slot_config(args.slots, args.gpu_memory_mb, args.threads)
        return run(root, dvcfiles, args.slots, config, ray_address=args.ray)
    return run(root, dvcfiles, args.slots, slot_config(args.slots, args.devices, args.gpu_memory_mb, args.threads))


if __name__ == "__main__":
    sys.exit(run_cli(main))
