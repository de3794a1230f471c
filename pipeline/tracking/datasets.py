"""The training and validation splits a cell used, as MLflow datasets (its run's Datasets panel).

Each split is an `mlflow.data` numpy dataset over the prepared arrays (opened memory-mapped: only their
shapes and types are read), named `<dataset>/<split>` and logged with the context MLflow's UI shows
("training", "validation"). Its digest is the prepared data's own (pipeline/data/prepared.py), cut to
the length MLflow stores, with the split's name mixed in, so that a change of the prepared data is a
new dataset in MLflow too; the full digest is the run's `data_digest` param.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
from mlflow.data.dataset_source_registry import get_registered_sources
from mlflow.data.numpy_dataset import from_numpy

# The splits a cell learns from and is validated on; the test split is read once, at the end, and is
# the report's, so it stays out of MLflow's list of what the run used.
SPLIT_CONTEXTS = {"train": "training", "val": "validation"}
DIGEST_LENGTH = 16  # MLflow keeps a dataset digest of up to 36 characters


def _local_source(path: Path):
    """A local file as MLflow's dataset source. Named outright: MLflow registers its local source class twice,
    and resolving a bare path then warns that the path "can be interpreted in multiple ways"."""
    local = next(cls for cls in get_registered_sources() if cls.__name__ == "LocalArtifactDatasetSource")
    return local(str(path.resolve()))


def split_digest(data_digest: str, split: str) -> str:
    return hashlib.sha256(f"{data_digest}:{split}".encode()).hexdigest()[:DIGEST_LENGTH]


def split_datasets(data_dir: Path, meta: dict) -> list[dict]:
    """The splits as journal entries: MLflow's dataset fields (name, digest, source, schema, profile) and a context."""
    entries = []
    for split, context in SPLIT_CONTEXTS.items():
        images = np.load(data_dir / f"{split}_images.npy", mmap_mode="r", allow_pickle=False)
        labels = np.load(data_dir / f"{split}_labels.npy", mmap_mode="r", allow_pickle=False)
        dataset = from_numpy(
            images,
            targets=labels,
            source=_local_source(data_dir / f"{split}_images.npy"),
            name=f"{meta['dataset']}/{split}",
            digest=split_digest(meta["data_digest"], split),
        )
        # MLflow's own description of the dataset: the fields its store keeps (name, digest, source, schema, ...)
        entries.append({"dataset": dataset.to_dict(), "context": context})
    return entries
