"""One descriptor per dataset: every fact the pipeline holds about a dataset, in one place.

Fetch downloads the files named in `md5` from `base_url` and verifies them; prepare
parses them with `read`, checks the arrays against `input_shape` and `class_names`, and
writes both into meta.json, so parsers return arrays and nothing else.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from pipeline.data.cifar import read_cifar10
from pipeline.data.fashion_mnist import read_fashion_mnist
from pipeline.data.raw import RawDataset
from pipeline.errors import UserError


@dataclass(frozen=True)
class DatasetDescriptor:
    name: str
    base_url: str  # canonical location; BNBENCH_DATA_MIRROR/<dataset>/ replaces it
    md5: dict[str, str]  # original file name -> md5 published by the dataset's authors
    read: Callable[[Path], RawDataset]  # the parser of the raw directory
    class_names: tuple[str, ...]  # label i is class_names[i]
    input_shape: tuple[int, int, int]  # (height, width, channels)
    default_targets: tuple[float, ...]  # validation accuracies whose first crossing measures speed
    default_loss_targets: tuple[float, ...]  # smoothed training losses whose first crossing does too


DATASETS: dict[str, DatasetDescriptor] = {
    "cifar10": DatasetDescriptor(
        name="cifar10",
        # https://www.cs.toronto.edu/~kriz/cifar.html: the binary version, so no pickle is ever loaded.
        base_url="https://www.cs.toronto.edu/~kriz/",
        md5={"cifar-10-binary.tar.gz": "c32a1d4ab5d03f1284b67883e8d87530"},
        read=read_cifar10,
        # The order of batches.meta.txt in the archive, which the labels index.
        class_names=("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"),
        input_shape=(32, 32, 3),
        default_targets=(0.5, 0.6, 0.7),
        default_loss_targets=(1.6, 1.3, 1.0),
    ),
    "fashion_mnist": DatasetDescriptor(
        name="fashion_mnist",
        # https://github.com/zalandoresearch/fashion-mnist#get-the-data: md5s from its README.
        base_url="https://raw.githubusercontent.com/zalandoresearch/fashion-mnist/master/data/fashion/",
        md5={
            "train-images-idx3-ubyte.gz": "8d4fb7e6c68d591d4c3dfef9ec88bf0d",
            "train-labels-idx1-ubyte.gz": "25c81989df183df01b3e8a0aad5dffbe",
            "t10k-images-idx3-ubyte.gz": "bef4ecab320f06d8554ea6380940ec79",
            "t10k-labels-idx1-ubyte.gz": "bb300cfdad3c16e7a12a480ee83cd310",
        },
        read=read_fashion_mnist,
        # Label order from the dataset's README.
        class_names=(
            "T-shirt/top",
            "Trouser",
            "Pullover",
            "Dress",
            "Coat",
            "Sandal",
            "Shirt",
            "Sneaker",
            "Bag",
            "Ankle boot",
        ),
        input_shape=(28, 28, 1),
        default_targets=(0.8, 0.85, 0.9),
        default_loss_targets=(0.6, 0.45, 0.35),
    ),
}


def descriptor(name: str) -> DatasetDescriptor:
    """The descriptor of `name`; an unknown name is a user's typo, so the error lists the known ones."""
    try:
        return DATASETS[name]
    except KeyError:
        raise UserError(f"unknown dataset {name!r} (known: {', '.join(DATASETS)})") from None
