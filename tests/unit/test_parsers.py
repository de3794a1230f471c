from __future__ import annotations

import gzip
import io
import shutil
import tarfile

import numpy as np
import pytest

from pipeline.data.cifar import read_cifar10
from pipeline.data.fashion_mnist import read_fashion_mnist
from pipeline.data.idx import read_idx
from pipeline.data.raw import FormatError
from tests.helpers import FIXTURES
from tools.fake_data import cifar_batch_bytes, idx_bytes, write_cifar10, write_fashion_mnist, write_idx_gz

REAL_LABELS = FIXTURES / "fashion-mnist"


def test_an_idx_file_written_is_read_back_exactly(tmp_path):
    images = np.arange(3 * 28 * 28, dtype=np.uint64).reshape(3, 28, 28).astype(np.uint8)
    write_idx_gz(tmp_path / "x.gz", images)
    assert np.array_equal(read_idx(tmp_path / "x.gz"), images)


def test_idx_header_is_the_published_layout():
    # magic 0x00000803, then the three dimensions as big-endian 32-bit integers
    assert idx_bytes(np.zeros((2, 28, 28), np.uint8))[:16].hex() == "00000803000000020000001c0000001c"


@pytest.mark.parametrize(
    ("name", "count"), [("train-labels-idx1-ubyte.gz", 60_000), ("t10k-labels-idx1-ubyte.gz", 10_000)]
)
def test_real_fashion_mnist_labels_are_balanced(name, count):
    labels = read_idx(REAL_LABELS / name)
    assert labels.shape == (count,)
    assert np.bincount(labels).tolist() == [count // 10] * 10


def test_fashion_mnist_reader_adds_the_channel_axis(tmp_path):
    write_fashion_mnist(tmp_path, train=50, test=20)
    raw = read_fashion_mnist(tmp_path)
    assert raw.train_images.shape == (50, 28, 28, 1) and raw.test_images.shape == (20, 28, 28, 1)


def test_fashion_mnist_reader_rejects_mismatched_counts(tmp_path):
    write_fashion_mnist(tmp_path, train=50, test=20)
    shutil.copy(REAL_LABELS / "train-labels-idx1-ubyte.gz", tmp_path)  # 60,000 labels for 50 images
    with pytest.raises(FormatError, match="do not match"):
        read_fashion_mnist(tmp_path)


def test_idx_truncated_file_is_refused(tmp_path):
    blob = idx_bytes(np.zeros((4, 28, 28), np.uint8))[:-10]
    (tmp_path / "x.gz").write_bytes(gzip.compress(blob))
    with pytest.raises(FormatError, match="header declares"):
        read_idx(tmp_path / "x.gz")


def test_idx_with_bytes_beyond_its_header_is_refused(tmp_path):
    blob = idx_bytes(np.zeros((4, 28, 28), np.uint8)) + b"\x00" * 28
    (tmp_path / "x.gz").write_bytes(gzip.compress(blob))
    with pytest.raises(FormatError, match="header declares"):
        read_idx(tmp_path / "x.gz")


def test_idx_not_gzip_is_refused(tmp_path):
    (tmp_path / "x.gz").write_bytes(b"<html>not found</html>")
    with pytest.raises(FormatError, match="gzip"):
        read_idx(tmp_path / "x.gz")


def test_cifar_record_layout_is_label_then_rgb_planes(tmp_path):
    image = np.zeros((1, 32, 32, 3), np.uint8)
    image[0, 0, 1, 0], image[0, 2, 0, 1], image[0, 31, 31, 2] = 11, 22, 33
    record = cifar_batch_bytes(image, np.array([7], np.uint8))
    assert len(record) == 3073 and record[0] == 7
    assert record[1 + 1] == 11  # red plane, row 0, column 1
    assert record[1 + 1024 + 2 * 32] == 22  # green plane, row 2, column 0
    assert record[-1] == 33  # blue plane, last pixel


def test_cifar_archive_parses_to_images_and_labels(tmp_path):
    write_cifar10(tmp_path / "cifar-10-binary.tar.gz", per_batch=30, test=20)
    raw = read_cifar10(tmp_path)
    assert raw.train_images.shape == (150, 32, 32, 3) and raw.train_labels.shape == (150,)
    assert raw.test_images.shape == (20, 32, 32, 3)
    with tarfile.open(tmp_path / "cifar-10-binary.tar.gz") as archive:
        blob = archive.extractfile("cifar-10-batches-bin/data_batch_1.bin").read()
    first = np.frombuffer(blob[:3073], np.uint8)
    assert raw.train_labels[0] == first[0]
    assert np.array_equal(raw.train_images[0].transpose(2, 0, 1).ravel(), first[1:])


def test_cifar_truncated_archive_is_refused(tmp_path):
    write_cifar10(tmp_path / "full.tar.gz", per_batch=30, test=20)
    blob = (tmp_path / "full.tar.gz").read_bytes()
    (tmp_path / "cifar-10-binary.tar.gz").write_bytes(blob[: len(blob) // 2])
    with pytest.raises(FormatError):
        read_cifar10(tmp_path)


def test_cifar_link_member_is_never_followed(tmp_path):
    with tarfile.open(tmp_path / "cifar-10-binary.tar.gz", "w:gz") as archive:
        link = tarfile.TarInfo("cifar-10-batches-bin/data_batch_1.bin")
        link.type, link.linkname = tarfile.SYMTYPE, "/etc/passwd"
        archive.addfile(link)
    with pytest.raises(FormatError, match="not a regular file"):
        read_cifar10(tmp_path)


def test_cifar_partial_record_is_refused(tmp_path):
    with tarfile.open(tmp_path / "cifar-10-binary.tar.gz", "w:gz") as archive:
        blob = b"\x01" * 3000
        info = tarfile.TarInfo("cifar-10-batches-bin/data_batch_1.bin")
        info.size = len(blob)
        archive.addfile(info, io.BytesIO(blob))
    with pytest.raises(FormatError, match="whole number"):
        read_cifar10(tmp_path)
