"""Stage `train`: train and evaluate one cell of the study.

Reads:  <data>/ as written by prepare; the study's params (params.yaml, then any
        overlay given by a further --params); the tracking settings (pipeline/tracking/settings.py).
Writes: <out>/metrics.json, history.csv, steps.csv and curves.png (pipeline/cell/outputs.py);
        logs the same to MLflow as a child run of the study.
Run:    python -m pipeline.train --cell cifar10-relu-post-0.0-0 \
            --data data/prepared/cifar10 --out results/cells/cifar10-relu-post-0.0-0
        A study with `sweep:` also has sweep cells (the sweep's budget, at one rate of its grid):
            --sweep-cell cifar10-relu-post-0.0-learning_rate_0.01-0 --out results/sweep/cells/<that name>
        and tuned cells (a cell at the rate chosen for its configuration by the stage choose):
            --cell <cell> --learning-rate-from results/sweep/chosen.json --out results/tuned/<cell>
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from pipeline.cell.checkpoints import CHECKPOINTS_DIR
from pipeline.cell.resolve import resolve_cell
from pipeline.cell.run import Member, run_cell, run_group
from pipeline.errors import run_cli
from pipeline.repo import repo_root
from pipeline.study.params import load_params
from pipeline.tracking.runs import MlflowTracker
from pipeline.tracking.settings import read_tracking_settings


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--params", type=Path, action="append", help="params.yaml, then overlays (repeatable)")
    which = parser.add_mutually_exclusive_group(required=True)
    which.add_argument("--cell", help="the cell's name, as its stage train@<name> (or tuned@<name>) has it")
    which.add_argument("--sweep-cell", help="a sweep cell's name, as its stage sweep@<name> has it")
    parser.add_argument(
        "--learning-rate-from", type=Path, help="the choose stage's file: train --cell at its configuration's rate"
    )
    parser.add_argument("--data", type=Path, required=True, help="prepared dataset directory")
    parser.add_argument("--out", type=Path, required=True)
    return parser.parse_args(argv)


def _report(name: str, s: dict) -> None:
    if s["outcome"] == "diverged":
        print(f"train: {name}: diverged at step {s['diverged_at_step']}, {s['train_seconds']:.0f} s")
    else:
        print(
            f"train: {name}: completed, val {s['final_val_accuracy']:.3f}, "
            f"test {s['test_accuracy']:.3f}, {s['train_seconds']:.0f} s"
        )


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    files = args.params or [Path("params.yaml")]
    params = load_params(*files)
    source = " + ".join(map(str, files))
    cell, settings, policy = resolve_cell(params, source, args.cell, args.sweep_cell, args.learning_rate_from)
    root = repo_root()
    tracker = MlflowTracker(read_tracking_settings(root), params, args.data)
    _report(cell.name, run_cell(params, cell, args.data, args.out, tracker, root / CHECKPOINTS_DIR, settings, policy))
    return 0


def main_group(argvs: Sequence[Sequence[str]], stages: Sequence[str]) -> int:
    """Train several cell stages of one study and dataset as one group (pipeline/cell/group.py, Keras on JAX).

    `argvs` are the stages' own arguments, `stages` their DVC names (each run's bnbench.dvc_stage tag).
    Each cell ends with the outputs, run and summary its own stage would have given it.
    """
    parsed = [parse_args(argv) for argv in argvs]
    files = {tuple(args.params or [Path("params.yaml")]) for args in parsed}
    data_dirs = {args.data for args in parsed}
    if len(files) != 1 or len(data_dirs) != 1:
        raise ValueError("a group's cells come from one study's params and one prepared dataset")
    [params_files], [data_dir] = files, data_dirs
    params = load_params(*params_files)
    source = " + ".join(map(str, params_files))
    root = repo_root()
    tracking = read_tracking_settings(root)
    members = []
    for args, stage in zip(parsed, stages, strict=True):
        cell, settings, policy = resolve_cell(params, source, args.cell, args.sweep_cell, args.learning_rate_from)
        tracker = MlflowTracker(tracking, params, data_dir, stage=stage)
        members.append(Member(cell, settings, policy, args.out, tracker))
    for member, summary in zip(members, run_group(params, members, data_dir, root / CHECKPOINTS_DIR), strict=True):
        _report(member.cell.name, summary)
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main))
