"""Parse the binary version of CIFAR-10 (https://www.cs.toronto.edu/~kriz/cifar.html).

Each record is one label byte and 3,072 pixel bytes: the red, green and blue
32x32 planes, row-major. Every member is checked first (archive.py: no links, devices,
absolute paths or `..`); then members are read straight from the archive by name, so
nothing is extracted to disk and no path inside the archive is ever trusted.
"""

from __future__ import annotations

import tarfile
from pathlib import Path

import numpy as np

from pipeline.data.archive import check_members
from pipeline.data.raw import FormatError, RawDataset

ARCHIVE = "cifar-10-binary.tar.gz"
_FOLDER = "cifar-10-batches-bin"
TRAIN_BATCHES = [f"{_FOLDER}/data_batch_{i}.bin" for i in range(1, 6)]
TEST_BATCH = f"{_FOLDER}/test_batch.bin"
_SIDE = 32
_RECORD = 1 + 3 * _SIDE * _SIDE


def _read_member(archive: tarfile.TarFile, name: str, path: Path) -> bytes:
    try:
        member = archive.getmember(name)
    except KeyError:
        raise FormatError(f"{path}: archive has no {name}") from None
    if not member.isfile():
        raise FormatError(f"{path}: {name} is not a regular file")
    handle = archive.extractfile(member)
    assert handle is not None  # regular files always have a stream
    return handle.read()


def _parse_batch(blob: bytes, name: str) -> tuple[np.ndarray, np.ndarray]:
    if not blob or len(blob) % _RECORD:
        raise FormatError(f"{name}: {len(blob)} bytes is not a whole number of {_RECORD}-byte records")
    records = np.frombuffer(blob, dtype=np.uint8).reshape(-1, _RECORD)
    labels = records[:, 0].copy()
    images = records[:, 1:].reshape(-1, 3, _SIDE, _SIDE).transpose(0, 2, 3, 1)
    return np.ascontiguousarray(images), labels


def read_cifar10(raw_dir: Path) -> RawDataset:
    """Images (N, 32, 32, 3) and labels of both sets, from the archive in `raw_dir`."""
    path = raw_dir / ARCHIVE
    try:
        archive = tarfile.open(path, "r:gz")
    except (tarfile.TarError, OSError, EOFError) as error:
        raise FormatError(f"{path}: not a readable tar.gz archive ({error})") from None
    with archive:
        try:
            check_members(archive, path)
            train = [_parse_batch(_read_member(archive, n, path), n) for n in TRAIN_BATCHES]
            test_images, test_labels = _parse_batch(_read_member(archive, TEST_BATCH, path), TEST_BATCH)
        except (tarfile.TarError, OSError, EOFError) as error:
            raise FormatError(f"{path}: archive is truncated or corrupt ({error})") from None
    return RawDataset(
        train_images=np.concatenate([images for images, _ in train]),
        train_labels=np.concatenate([labels for _, labels in train]),
        test_images=test_images,
        test_labels=test_labels,
    )
