"""Stage `prepare`: parse one dataset, split off validation, compute normalization statistics.

Reads:  <raw>/ as written by fetch (each file's md5 is checked again first);
        params `prepare` (split fraction and seed, optional stratified subsets).
Writes: <out>/{train,val,test}_{images,labels}.npy and <out>/meta.json with the
        training-split statistics, class counts and the data digest.
Run:    python -m pipeline.prepare --dataset cifar10 --raw data/raw/cifar10 --out data/prepared/cifar10

The work itself: pipeline/data/preparation.py.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from pipeline.data.datasets import DATASETS
from pipeline.data.preparation import prepare_dataset
from pipeline.data.prepared import write_prepared
from pipeline.errors import run_cli
from pipeline.study.params import load_params


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--params", type=Path, action="append", help="params.yaml, then overlays (repeatable)")
    parser.add_argument("--dataset", required=True, choices=sorted(DATASETS))
    parser.add_argument("--raw", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    params = load_params(*(args.params or [Path("params.yaml")]))
    splits, meta = prepare_dataset(args.dataset, args.raw, params.prepare)
    write_prepared(args.out, splits, meta)
    counts = ", ".join(f"{name} {n}" for name, n in meta["examples"].items())
    print(f"prepare: {args.dataset}: {counts}; digest {meta['data_digest'][:12]}")
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main))
