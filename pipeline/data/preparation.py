"""Prepare one dataset: verify its files, parse them, check them against the descriptor, split and describe.

The prepare stage (pipeline/prepare.py) writes what `prepare_dataset` returns with `write_prepared`.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from pipeline.data.datasets import DATASETS, DatasetDescriptor
from pipeline.data.download import verify_files
from pipeline.data.prepared import SPLITS, channel_stats, data_digest, split_dataset
from pipeline.data.raw import FormatError, RawDataset
from pipeline.study.schema import PrepareParams


def check_parsed(spec: DatasetDescriptor, raw: RawDataset, raw_dir: Path) -> None:
    """Stop arrays that differ from the descriptor: models are built from its shape and class count."""
    for split, images, labels in (
        ("train", raw.train_images, raw.train_labels),
        ("test", raw.test_images, raw.test_labels),
    ):
        if images.shape[1:] != spec.input_shape:
            raise FormatError(
                f"prepare: {spec.name}: {split} images parsed from {raw_dir} are {images.shape[1:]}, but the "
                f"descriptor says {spec.input_shape} (height, width, channels); these are not {spec.name}'s files"
            )
        outside = labels[labels >= len(spec.class_names)]
        if outside.size:
            raise FormatError(
                f"prepare: {spec.name}: {split} label {outside.max()} parsed from {raw_dir} is outside "
                f"0-{len(spec.class_names) - 1}, the descriptor's {len(spec.class_names)} classes"
            )


def prepare_dataset(dataset: str, raw_dir: Path, settings: PrepareParams):
    """Parse, split and describe one dataset; returns the splits and their meta record."""
    spec = DATASETS[dataset]
    files = verify_files(raw_dir)
    raw = spec.read(raw_dir)
    check_parsed(spec, raw, raw_dir)
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
        "class_names": list(spec.class_names),
        "input_shape": list(spec.input_shape),
        "examples": {name: int(len(splits[name].labels)) for name in SPLITS},
        "class_counts": {
            name: np.bincount(splits[name].labels, minlength=len(spec.class_names)).tolist() for name in SPLITS
        },
        "mean": mean,  # per channel, pixels in [0, 1], training split only
        "std": std,
        "scaling": settings.scaling,  # how load_prepared scales the stored uint8 pixels (pipeline/data/prepared.py)
        "data_digest": data_digest(splits),
        "source_md5": files.md5,
        "published_data": files.published,
        "split": settings.model_dump(),
    }
    return splits, meta
