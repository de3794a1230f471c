"""One parser per dataset, behind one function."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from pipeline.data.cifar import read_cifar10
from pipeline.data.fashion_mnist import read_fashion_mnist
from pipeline.data.raw import RawDataset

READERS: dict[str, Callable[[Path], RawDataset]] = {
    "cifar10": read_cifar10,
    "fashion_mnist": read_fashion_mnist,
}


def read_raw(dataset: str, raw_dir: Path) -> RawDataset:
    return READERS[dataset](raw_dir)
