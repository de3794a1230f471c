"""Stage `prepare`: parse one dataset, split off validation, compute normalization statistics.

Reads:  <raw>/ as written by fetch (each file's md5 is checked again first);
        params `prepare` (split fraction and seed, optional stratified subsets).
Writes: <out>/{train,val,test}_{images,labels}.npy and <out>/meta.json with the
        training-split statistics, class counts and the data digest.
Run:    python -m pipeline.prepare --dataset cifar10 --raw data/raw/cifar10 --out data/prepared/cifar10
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from pipeline.data.datasets import DATASETS
from pipeline.data.download import verify_files
from pipeline.data.prepared import SPLITS, channel_stats, data_digest, split_dataset, write_prepared
from pipeline.errors import run_cli
from pipeline.params import PrepareParams, load_params


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--params", type=Path, default=Path("params.yaml"))
    parser.add_argument("--dataset", required=True, choices=sorted(DATASETS))
    parser.add_argument("--raw", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    return parser.parse_args(argv)


def prepare_dataset(dataset: str, raw_dir: Path, settings: PrepareParams):
    """Parse, split and describe one dataset; returns the splits and their meta record."""
    files = verify_files(raw_dir)
    raw = DATASETS[dataset].read(raw_dir)
    splits = split_dataset(
        raw,
        val_fraction=settings.val_fraction,
        seed=settings.split_seed,
        max_train_examples=settings.max_train_examples,
        max_test_examples=settings.max_test_examples,
    )
    mean, std = channel_stats(splits["train"].images)
    meta = {
        "dataset": dataset,
        "class_names": raw.class_names,
        "input_shape": list(splits["train"].images.shape[1:]),
        "examples": {name: int(len(splits[name].labels)) for name in SPLITS},
        "class_counts": {
            name: np.bincount(splits[name].labels, minlength=len(raw.class_names)).tolist() for name in SPLITS
        },
        "mean": mean,  # per channel, pixels in [0, 1], training split only
        "std": std,
        "data_digest": data_digest(splits),
        "source_md5": files.md5,
        "published_data": files.published,
        "split": settings.model_dump(),
    }
    return splits, meta


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    params = load_params(args.params)
    splits, meta = prepare_dataset(args.dataset, args.raw, params.prepare)
    write_prepared(args.out, splits, meta)
    counts = ", ".join(f"{name} {n}" for name, n in meta["examples"].items())
    print(f"prepare: {args.dataset}: {counts}; digest {meta['data_digest'][:12]}")
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main))
