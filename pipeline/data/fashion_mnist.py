"""Read Fashion-MNIST's four IDX files (https://github.com/zalandoresearch/fashion-mnist)."""

from __future__ import annotations

from pathlib import Path

from pipeline.data.idx import read_idx
from pipeline.data.raw import FormatError, RawDataset


def _read_pair(raw_dir: Path, prefix: str):
    images = read_idx(raw_dir / f"{prefix}-images-idx3-ubyte.gz")
    labels = read_idx(raw_dir / f"{prefix}-labels-idx1-ubyte.gz")
    if images.ndim != 3 or labels.ndim != 1 or len(images) != len(labels):
        raise FormatError(f"{raw_dir}: {prefix} images {images.shape} do not match labels {labels.shape}")
    return images[..., None], labels  # add the channel axis: (N, 28, 28, 1)


def read_fashion_mnist(raw_dir: Path) -> RawDataset:
    """Images (N, 28, 28, 1) and labels of both sets, from the four IDX files in `raw_dir`."""
    train_images, train_labels = _read_pair(raw_dir, "train")
    test_images, test_labels = _read_pair(raw_dir, "t10k")
    return RawDataset(train_images, train_labels, test_images, test_labels)
