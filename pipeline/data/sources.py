"""Where each dataset's original files live, and the checksums their authors publish."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Source:
    base_url: str  # canonical location; BNBENCH_DATA_MIRROR/<dataset>/ replaces it
    md5: dict[str, str]  # original file name -> md5 published by the dataset's authors


SOURCES: dict[str, Source] = {
    # https://www.cs.toronto.edu/~kriz/cifar.html: the binary version, so no pickle is ever loaded.
    "cifar10": Source(
        base_url="https://www.cs.toronto.edu/~kriz/",
        md5={"cifar-10-binary.tar.gz": "c32a1d4ab5d03f1284b67883e8d87530"},
    ),
    # https://github.com/zalandoresearch/fashion-mnist#get-the-data: md5s from its README.
    "fashion_mnist": Source(
        base_url="https://raw.githubusercontent.com/zalandoresearch/fashion-mnist/master/data/fashion/",
        md5={
            "train-images-idx3-ubyte.gz": "8d4fb7e6c68d591d4c3dfef9ec88bf0d",
            "train-labels-idx1-ubyte.gz": "25c81989df183df01b3e8a0aad5dffbe",
            "t10k-images-idx3-ubyte.gz": "bef4ecab320f06d8554ea6380940ec79",
            "t10k-labels-idx1-ubyte.gz": "bb300cfdad3c16e7a12a480ee83cd310",
        },
    ),
}
