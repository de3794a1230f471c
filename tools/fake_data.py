"""Datasets in the exact original file formats, with learnable synthetic images.

The real files cannot be downloaded in tests, so these are written byte for byte
in the published formats (CIFAR-10 binary tar.gz, Fashion-MNIST IDX gz), laid out
as a mirror (<root>/<dataset>/<original file name>), with the checksums JSON that
BNBENCH_DATA_CHECKSUMS expects. Each class is a smooth random template plus noise,
so a model can learn it and curves rise.

Run: python -m tools.fake_data --out /tmp/mirror [--cifar-per-batch 10000 --fmnist-train 60000]
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import io
import json
import os
import tarfile
from collections.abc import Callable
from pathlib import Path

import numpy as np

from pipeline.data.datasets import DATASETS


def _templates(rng: np.random.Generator, side: int, channels: int) -> np.ndarray:
    """Ten smooth class patterns and ten distractors, shared by every file of a dataset."""
    coarse = rng.uniform(0, 255, size=(20, 4, 4, channels))
    return coarse.repeat(side // 4 + 1, axis=1).repeat(side // 4 + 1, axis=2)[:, :side, :side]


def _images(rng: np.random.Generator, templates: np.ndarray, labels: np.ndarray) -> np.ndarray:
    # A faint class pattern over a random distractor, plus noise: learnable, but not in one step.
    distractors = templates[10 + rng.integers(0, 10, size=len(labels))]
    pixels = 0.3 * templates[labels] + 0.7 * distractors + rng.normal(0, 40, size=distractors.shape)
    return np.clip(pixels, 0, 255).astype(np.uint8)


def idx_bytes(array: np.ndarray) -> bytes:
    """An IDX file of unsigned bytes: magic 0x0000 08 <ndim>, big-endian dims, then the data."""
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in array.shape)
    return header + np.ascontiguousarray(array, dtype=np.uint8).tobytes()


def write_idx_gz(path: Path, array: np.ndarray) -> None:
    path.write_bytes(gzip.compress(idx_bytes(array), compresslevel=6, mtime=0))


def cifar_batch_bytes(images: np.ndarray, labels: np.ndarray) -> bytes:
    """Records of one label byte then the R, G and B 32x32 planes, row-major."""
    planes = images.transpose(0, 3, 1, 2).reshape(len(labels), -1)
    return np.concatenate([labels[:, None].astype(np.uint8), planes], axis=1).tobytes()


def write_cifar10(path: Path, per_batch: int, test: int, seed: int = 0) -> None:
    rng = np.random.default_rng(seed)
    templates = _templates(rng, 32, 3)
    members: dict[str, bytes] = {}
    for name, count in [*((f"data_batch_{i}.bin", per_batch) for i in range(1, 6)), ("test_batch.bin", test)]:
        labels = rng.integers(0, 10, size=count).astype(np.uint8)
        members[name] = cifar_batch_bytes(_images(rng, templates, labels), labels)
    members["batches.meta.txt"] = ("\n".join(DATASETS["cifar10"].class_names) + "\n\n").encode()
    members["readme.html"] = (
        b'<meta HTTP-EQUIV="REFRESH" content="0; url=http://www.cs.toronto.edu/~kriz/cifar.html">\n'
    )
    with tarfile.open(path, "w:gz", compresslevel=6) as archive:
        for name, blob in members.items():
            info = tarfile.TarInfo(f"cifar-10-batches-bin/{name}")
            info.size = len(blob)
            archive.addfile(info, io.BytesIO(blob))


def write_fashion_mnist(folder: Path, train: int, test: int, seed: int = 0) -> None:
    rng = np.random.default_rng(seed + 1)
    templates = _templates(rng, 28, 1)
    for prefix, count in (("train", train), ("t10k", test)):
        labels = rng.integers(0, 10, size=count).astype(np.uint8)
        write_idx_gz(folder / f"{prefix}-images-idx3-ubyte.gz", _images(rng, templates, labels)[..., 0])
        write_idx_gz(folder / f"{prefix}-labels-idx1-ubyte.gz", labels)


def _write_cifar10_files(folder: Path, train: int, test: int) -> None:
    write_cifar10(folder / "cifar-10-binary.tar.gz", train // 5, test)  # the training set is five batch files


# One writer per dataset in pipeline/data/datasets.py: writer(folder, train, test) puts the dataset's
# original files, holding `train` and `test` images, into `folder`.
WRITERS: dict[str, Callable[[Path, int, int], None]] = {
    "cifar10": _write_cifar10_files,
    "fashion_mnist": write_fashion_mnist,
}


def md5(path: Path) -> str:
    return hashlib.md5(path.read_bytes()).hexdigest()


def write_mirror(root: Path, *, cifar_per_batch: int, cifar_test: int, fmnist_train: int, fmnist_test: int) -> Path:
    """Write both datasets under `root`; returns the checksums JSON for BNBENCH_DATA_CHECKSUMS."""
    sizes = {"cifar10": (5 * cifar_per_batch, cifar_test), "fashion_mnist": (fmnist_train, fmnist_test)}
    for dataset, (train, test) in sizes.items():
        (root / dataset).mkdir(parents=True, exist_ok=True)
        WRITERS[dataset](root / dataset, train, test)
    checksums = {d: {p.name: md5(p) for p in sorted((root / d).iterdir())} for d in sizes}
    path = root / "checksums.json"
    path.write_text(json.dumps(checksums, indent=2), encoding="utf-8")
    return path


def full_size_mirror_env(root: Path) -> dict[str, str]:
    """Full-size datasets written under `root`, and an environment that fetches from them.

    The environment is this process's, without MLflow, DVC or bnbench settings that would
    point the run elsewhere; the benchmarks run their studies in it.
    """
    checksums = write_mirror(
        root / "mirror", cifar_per_batch=10_000, cifar_test=10_000, fmnist_train=60_000, fmnist_test=10_000
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "DVC_", "BNBENCH_"))}
    env.update(
        BNBENCH_DATA_MIRROR=str(root / "mirror"),
        BNBENCH_DATA_CHECKSUMS=str(checksums),
        BNBENCH_CACHE_DIR=str(root / "download-cache"),
    )
    return env


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument(
        "--cifar-per-batch", type=int, default=1000, help="records per training batch file (real: 10000)"
    )
    parser.add_argument("--cifar-test", type=int, default=1000)
    parser.add_argument("--fmnist-train", type=int, default=5000)
    parser.add_argument("--fmnist-test", type=int, default=1000)
    args = parser.parse_args()
    checksums = write_mirror(
        args.out, cifar_per_batch=args.cifar_per_batch, cifar_test=args.cifar_test,
        fmnist_train=args.fmnist_train, fmnist_test=args.fmnist_test,
    )  # fmt: skip
    print(f"export BNBENCH_DATA_MIRROR={args.out.resolve()} BNBENCH_DATA_CHECKSUMS={checksums.resolve()}")


if __name__ == "__main__":
    main()
