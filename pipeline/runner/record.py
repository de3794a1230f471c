"""What the runner does as cells end, in local slots and on Ray alike: one loop, one record.

`drive` waits for the cells' tasks, shows their progress (started, done, failed, elapsed, ETA),
and records each cell that ended as `dvc repro` would: the finished ones in one `dvc commit
--force` (lock entries, cached outputs, run-cache), the failed ones named with their log. A cell
that trained but could not be committed counts as failed. Where the tasks run (a process pool, a
Ray cluster) is the caller's: it passes how to wait for them, how to read a result, and which
cells have started.
"""

from __future__ import annotations

import re
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from pipeline.runner.worker import Task, TaskResult

LOG_DIR = Path(".bnbench") / "runner-logs"


def log_path(root: Path, addressing: str) -> Path:
    return root / LOG_DIR / (re.sub(r"[^A-Za-z0-9@._-]+", "_", addressing) + ".log")


def commit_command(addressings: Sequence[str]) -> list[str]:
    """Record finished stages as `dvc repro` does: lock entries, cached outputs, run-cache; no prompt."""
    return [sys.executable, "-m", "dvc", "commit", "--force", *addressings]


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


@dataclass
class Outcome:
    results: list[TaskResult]
    failed: list[str]  # addressings
    wall_s: float
    slots: int

    def utilisation(self) -> float | None:
        """Busy slot-seconds (cells training in workers) over slots x the round's wall time."""
        # the cells of a group share one stretch of their worker's time: counted once
        stretches = {(r.pid, r.started, r.ended) for r in self.results if r.error is None}
        busy = sum(ended - started for _, started, ended in stretches)
        return busy / (self.slots * self.wall_s) if self.wall_s > 0 else None


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


def drive(
    root: Path,
    pending: dict[object, list[Task]],
    wait_ready: Callable[[list], Iterable],
    result_of: Callable[[object, list[Task]], list[TaskResult]],
    started: Callable[[], Iterable[str]],
    slots: int,
) -> Outcome:
    """Wait for every handle of `pending` (a handle -> the cells it trains: one, or a group), recording each
    cell as it ends; never stops at a failure.

    `wait_ready(handles)` returns those that have ended (waiting a second at most); `result_of` reads
    one's results, a cell's each (never raising: a task that died is a failed result); `started()` the
    addressings of the cells that started since the last call.
    """
    from tqdm import tqdm

    total = sum(len(tasks) for tasks in pending.values())
    progress = Progress(total)
    results: list[TaskResult] = []
    failed: list[str] = []
    bar = tqdm(total=total, unit="cell", bar_format="{n_fmt}/{total_fmt} |{bar}| {postfix}", dynamic_ncols=True)
    began = time.perf_counter()

    def refresh() -> None:
        for address in started():
            progress.start(address)
        bar.n = progress.finished
        bar.set_postfix_str(progress.line(), refresh=True)

    while pending:
        ready = list(wait_ready(list(pending)))
        refresh()  # start events first: a cell's start is never counted after its end
        ended = []
        for handle in ready:
            tasks = pending.pop(handle)
            ended += zip(tasks, result_of(handle, tasks), strict=True)
        record_ended(root, ended, progress, results, failed)
        refresh()
    bar.close()
    return Outcome(results, failed, time.perf_counter() - began, slots)
