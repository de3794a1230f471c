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
from pipeline.cell.run import run_cell
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


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    files = args.params or [Path("params.yaml")]
    params = load_params(*files)
    source = " + ".join(map(str, files))
    cell, settings, policy = resolve_cell(params, source, args.cell, args.sweep_cell, args.learning_rate_from)
    root = repo_root()
    tracker = MlflowTracker(read_tracking_settings(root), params, args.data)
    s = run_cell(params, cell, args.data, args.out, tracker, root / CHECKPOINTS_DIR, settings, policy)
    if s["outcome"] == "diverged":
        print(f"train: {cell.name}: diverged at step {s['diverged_at_step']}, {s['train_seconds']:.0f} s")
    else:
        print(
            f"train: {cell.name}: completed, val {s['final_val_accuracy']:.3f}, "
            f"test {s['test_accuracy']:.3f}, {s['train_seconds']:.0f} s"
        )
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main))
