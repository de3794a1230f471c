"""Benchmark: `dvc repro` of the full default study when nothing has changed (target: 5 s or less).

What a user pays to ask "is everything up to date?" after the study has run: DVC reads the
generated root dvc.yaml (the main matrix, its sweep and tuned cells, and the claim studies that
run with it), checks every stage's dependencies, params and outputs against dvc.lock, and runs
nothing. Training the whole study for real takes hours, so in a copy of the repository every
stage's outputs are stand-ins (a small file per output, a folder with one file per output
folder) recorded with `dvc commit --force`: DVC then sees exactly the finished study's stages,
locks and output paths. Its state database caches hashes by inode, size and mtime, so on a
no-op the output sizes do not matter; the first status after the commit fills that cache and is
reported apart ("first").

Run:    uv run python -m benchmarks.noop_repro [--out benchmarks/results] [--repeat 3]
Writes: <out>/noop_repro.json and <out>/noop_repro.png
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import tempfile
import time
from pathlib import Path
from statistics import median

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from tools.repo_copy import copy_repo  # noqa: E402

TARGET_S = 5.0
UP_TO_DATE = "Data and pipelines are up to date."


def stage_outputs(repo: Path) -> tuple[int, list[Path]]:
    """The number of stages of the root pipeline and every output path they declare."""
    from dvc.repo import Repo

    with Repo(str(repo)) as dvc:
        stages = list(dvc.index.stages)
        return len(stages), [Path(out.fs_path) for stage in stages for out in stage.outs]


def stand_in(path: Path) -> None:
    """A small output at `path`: a folder with one file where the output has no suffix (a cell's folder)."""
    if path.suffix:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(f"stand-in for {path.name}\n", encoding="utf-8")
    else:
        path.mkdir(parents=True, exist_ok=True)
        (path / "stand-in.txt").write_text(f"stand-in for {path.name}\n", encoding="utf-8")


def _children_cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def timed(command: list[str], cwd: Path) -> tuple[float, str, float]:
    """Wall seconds, output and CPU seconds of `command` (CPU time hardly moves with the machine's load)."""
    began, cpu = time.perf_counter(), _children_cpu_s()
    done = subprocess.run(command, cwd=cwd, capture_output=True, text=True, env={**os.environ, "DVC_NO_ANALYTICS": "1"})
    seconds = time.perf_counter() - began
    if done.returncode:
        raise SystemExit(f"{' '.join(command)} failed ({done.returncode}):\n{done.stdout}{done.stderr}")
    return seconds, done.stdout + done.stderr, _children_cpu_s() - cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="bnbench-noop-") as scratch:
        repo = Path(scratch)
        copy_repo(repo)
        stages, outputs = stage_outputs(repo)
        for path in outputs:
            stand_in(path)
        commit_s = timed(["dvc", "commit", "--force", "--quiet"], repo)[0]
        first_s = timed(["dvc", "status", "--quiet"], repo)[0]
        lock_bytes = (repo / "dvc.lock").stat().st_size
        repro, repro_cpu, status = [], [], []
        for _ in range(args.repeat):
            seconds, said, cpu = timed(["dvc", "repro"], repo)
            if UP_TO_DATE not in said:
                raise SystemExit(f"dvc repro was not a no-op:\n{said}")
            repro.append(seconds)
            repro_cpu.append(cpu)
            status.append(timed(["dvc", "status", "--quiet"], repo)[0])

    result = {
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, {platform.python_version()}",
        "stages": stages,
        "outputs": len(outputs),
        "dvc_lock_bytes": lock_bytes,
        "load_average_1min": os.getloadavg()[0],
        "commit_seconds": commit_s,
        "first_status_seconds": first_s,
        "noop_repro_seconds": repro,
        "noop_repro_median_seconds": median(repro),
        "noop_repro_cpu_seconds": repro_cpu,
        "noop_repro_median_cpu_seconds": median(repro_cpu),
        "status_seconds": status,
        "status_median_seconds": median(status),
        "target_seconds": TARGET_S,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "noop_repro.json").write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    fig, ax = plt.subplots(figsize=(6, 2.6), constrained_layout=True)
    labels = ["first status\n(fills hash cache)", "no-op dvc repro", "dvc status"]
    ax.barh(labels, [first_s, median(repro), median(status)], color=["#999", "#1f77b4", "#6baed6"])
    ax.axvline(TARGET_S, color="crimson", linestyle="--", label=f"target {TARGET_S:.0f} s")
    ax.set(xlabel="seconds (median)", title=f"Full default study: {stages} stages, {len(outputs)} outputs")
    ax.legend(loc="lower right")
    fig.savefig(args.out / "noop_repro.png", dpi=100, metadata={"Software": None})

    print(f"{stages} stages, {len(outputs)} outputs, dvc.lock {lock_bytes / 1e6:.1f} MB ({result['machine']})")
    print(f"load average (1 min) at the end: {result['load_average_1min']:.1f}")
    print(f"| step | seconds | |\n| --- | --- | --- |\n| dvc commit --force (setup) | {commit_s:.1f} | |")
    print(f"| first dvc status (fills the hash cache) | {first_s:.1f} | |")
    verdict = "within" if median(repro) <= TARGET_S else "over"
    print(f"| no-op dvc repro, median of {args.repeat} | {median(repro):.1f} | {verdict} the {TARGET_S:.0f} s target |")
    print(f"| no-op dvc repro, CPU seconds (median) | {median(repro_cpu):.1f} | |")
    print(f"| dvc status, median of {args.repeat} | {median(status):.1f} | |")


if __name__ == "__main__":
    main()
