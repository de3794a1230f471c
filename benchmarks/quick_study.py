"""Benchmark: wall time of the quick study, end to end, on this machine.

Target: `dvc repro studies/quick/dvc.yaml` finishes within 10 minutes on a 2-core CPU,
downloads from a local mirror included. This copies the repository (as a fresh
clone would have it) into a temporary folder, writes full-size synthetic datasets
in the original formats as a local mirror, runs the quick study there, and reports
the time of every stage.

Run:    uv run python -m benchmarks.quick_study [--out benchmarks/results] [--keep-report DIR]
Writes: <out>/quick_study.json (per-stage seconds) and <out>/quick_study.png
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from tools.fake_data import full_size_mirror_env  # noqa: E402
from tools.repo_copy import copy_repo  # noqa: E402

TARGET_S = 600


def run_timed(command: list[str], cwd: Path, env: dict) -> tuple[float, dict[str, float]]:
    """Run `command`, timing each DVC stage from its "Running stage" line to the next one."""
    stages: dict[str, float] = {}
    began = current_began = time.perf_counter()
    current = "(dvc start-up)"
    with subprocess.Popen(
        command, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    ) as proc:
        for line in proc.stdout:
            if line.startswith("Running stage '"):
                now = time.perf_counter()
                stages[current] = now - current_began
                current, current_began = line.split("'")[1], now
    if proc.returncode:
        raise SystemExit(f"{' '.join(command)} failed with exit code {proc.returncode}")
    end = time.perf_counter()
    stages[current] = end - current_began
    return end - began, stages


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    parser.add_argument("--keep-report", type=Path, default=None, help="copy the study's report folder here")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        repo = root / "repo"
        copy_repo(repo)
        env = {**full_size_mirror_env(root), "PYTHONPATH": str(repo)}
        total, stages = run_timed([sys.executable, "-m", "dvc", "repro", "studies/quick/dvc.yaml"], repo, env)
        if args.keep_report is not None:
            shutil.copytree(repo / "studies" / "quick" / "reports", args.keep_report, dirs_exist_ok=True)
    cells = {k: v for k, v in stages.items() if ":train@" in k}
    record = {
        "total_s": total,
        "target_s": TARGET_S,
        "cells": len(cells),
        "mean_cell_s": sum(cells.values()) / len(cells),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores",
        "stages_s": stages,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "quick_study.json").write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
    fig, ax = plt.subplots(figsize=(8, 0.22 * len(stages) + 1.2), constrained_layout=True)
    ax.barh(list(stages), list(stages.values()), color="#1f77b4")
    ax.invert_yaxis()
    ax.tick_params(axis="y", labelsize=7)
    ax.set_xlabel("seconds")
    ax.set_title(f"quick study: {total:.0f} s in all (target {TARGET_S} s), {record['machine']}")
    fig.savefig(args.out / "quick_study.png", dpi=90)
    for name, seconds in stages.items():
        print(f"{seconds:7.1f} s  {name}")
    verdict = "within" if total <= TARGET_S else "OVER"
    print(
        f"total {total:.0f} s for {len(cells)} cells ({record['mean_cell_s']:.1f} s each): {verdict} the {TARGET_S} s target"
    )


if __name__ == "__main__":
    main()
