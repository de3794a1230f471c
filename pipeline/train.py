"""Stage `train`: train and evaluate one cell of the study.

Reads:  <data>/ as written by prepare; the study's params (params.yaml, then any
        overlay given by a further --params).
Writes: <out>/metrics.json, history.csv and curves.png (pipeline/cell_outputs.py);
        logs the same to MLflow as a child run of the study.
Run:    python -m pipeline.train --cell cifar10-relu-post-0.0-0 \
            --data data/prepared/cifar10 --out results/cells/cifar10-relu-post-0.0-0
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from pipeline.cells import find_cell
from pipeline.errors import run_cli
from pipeline.params import load_params
from pipeline.run_cell import run_cell


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--params", type=Path, action="append", help="params.yaml, then overlays (repeatable)")
    parser.add_argument("--cell", required=True, help="the cell's name, as its stage train@<name> has it")
    parser.add_argument("--data", type=Path, required=True, help="prepared dataset directory")
    parser.add_argument("--out", type=Path, required=True)
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    files = args.params or [Path("params.yaml")]
    params = load_params(*files)
    cell = find_cell(params, args.cell, " + ".join(map(str, files)))
    s = run_cell(params, cell, args.data, args.out)
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
