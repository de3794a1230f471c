from __future__ import annotations

import json

import numpy as np
import pytest

from pipeline.data.datasets import DATASETS
from pipeline.data.fashion_mnist import read_fashion_mnist
from pipeline.data.preparation import check_parsed, prepare_dataset
from pipeline.data.prepared import (
    Split,
    channel_stats,
    data_digest,
    load_prepared,
    scale_images,
    split_dataset,
    write_prepared,
)
from pipeline.data.raw import FormatError, RawDataset
from pipeline.study.schema import PrepareParams
from tools.fake_data import md5, write_fashion_mnist


@pytest.fixture
def raw(tmp_path) -> RawDataset:
    write_fashion_mnist(tmp_path, train=1000, test=200)
    return read_fashion_mnist(tmp_path)


def test_validation_is_carved_from_train_stratified(raw):
    splits = split_dataset(raw, val_fraction=0.2, seed=0)
    assert len(splits["train"].labels) == 800 and len(splits["val"].labels) == 200
    train_share = np.bincount(splits["train"].labels, minlength=10) / 800
    val_share = np.bincount(splits["val"].labels, minlength=10) / 200
    assert np.abs(train_share - val_share).max() < 0.02
    # every validation image is a training-set image, and none is used twice
    pool = {img.tobytes() for img in raw.train_images}
    assert all(img.tobytes() in pool for img in splits["val"].images)
    assert not {i.tobytes() for i in splits["train"].images} & {i.tobytes() for i in splits["val"].images}


def test_a_split_too_small_for_every_class_is_a_clear_error(raw):
    from pipeline.errors import UserError

    with pytest.raises(UserError, match=r"prepare\.val_fraction=0\.05 and prepare\.max_train_examples=100"):
        split_dataset(raw, val_fraction=0.05, seed=0, max_train_examples=100)


def test_test_set_is_left_untouched(raw):
    splits = split_dataset(raw, val_fraction=0.1, seed=0)
    assert np.array_equal(splits["test"].images, raw.test_images)


def test_split_is_seeded(raw):
    a, b, c = (split_dataset(raw, val_fraction=0.1, seed=s) for s in (0, 0, 1))
    assert data_digest(a) == data_digest(b) != data_digest(c)


def test_the_data_digest_changes_when_only_labels_change(raw):
    splits = split_dataset(raw, val_fraction=0.1, seed=0)
    before = data_digest(splits)
    for name in ("train", "val", "test"):
        labels = splits[name].labels.copy()
        first, other = 0, int(np.flatnonzero(labels != labels[0])[0])
        labels[[first, other]] = labels[[other, first]]  # two labels swapped: the same images, the same class counts
        relabelled = {**splits, name: Split(splits[name].images, labels)}
        assert np.array_equal(relabelled[name].images, splits[name].images)
        assert data_digest(relabelled) != before, name


def _imbalanced(raw: RawDataset) -> RawDataset:
    """The same images with skewed classes: 60% class 0, the rest spread evenly over 1-9."""
    labels = np.where(np.arange(len(raw.train_labels)) % 5 < 3, 0, 1 + np.arange(len(raw.train_labels)) % 9)
    return RawDataset(raw.train_images, labels.astype(np.uint8), raw.test_images, raw.test_labels)


def test_subsets_keep_the_class_proportions(raw):
    skewed = _imbalanced(raw)
    splits = split_dataset(skewed, val_fraction=0.2, seed=0, max_train_examples=500, max_test_examples=100)
    assert len(splits["train"].labels) + len(splits["val"].labels) == 500
    assert len(splits["test"].labels) == 100
    full = np.bincount(skewed.train_labels, minlength=10) / len(skewed.train_labels)
    for name, size in (("train", 400), ("val", 100)):
        counts = np.bincount(splits[name].labels, minlength=10)
        # stratified: each class within one example of its share of the full training set
        assert np.abs(counts - full * size).max() <= 1, (name, counts.tolist())
    test_full = np.bincount(raw.test_labels, minlength=10) / len(raw.test_labels)
    assert np.abs(np.bincount(splits["test"].labels, minlength=10) - test_full * 100).max() <= 1


def test_prepare_stage_takes_statistics_from_the_training_split_only(tmp_path):
    raw_dir = tmp_path / "raw"
    raw_dir.mkdir()
    write_fashion_mnist(raw_dir, train=600, test=100)
    files = {p.name: md5(p) for p in raw_dir.iterdir()}
    (raw_dir / "files.json").write_text(
        json.dumps({"dataset": "fashion_mnist", "files": files, "published": False}), encoding="utf-8"
    )
    settings = PrepareParams(val_fraction=0.25, split_seed=0)
    splits, meta = prepare_dataset("fashion_mnist", raw_dir, settings)
    train_pixels = splits["train"].images.astype(np.float64) / 255
    train_and_val = np.concatenate([splits["train"].images, splits["val"].images]).astype(np.float64) / 255
    assert abs(train_pixels.mean() - train_and_val.mean()) > 1e-4  # the two candidates differ
    assert meta["mean"] == pytest.approx([train_pixels.mean()], rel=1e-12)
    assert meta["std"] == pytest.approx([train_pixels.std()], rel=1e-12)
    assert meta["examples"] == {"train": 450, "val": 150, "test": 100}
    assert meta["class_names"][0] == "T-shirt/top" and len(meta["class_names"]) == 10
    assert meta["input_shape"] == [28, 28, 1]


def test_images_of_another_shape_than_the_descriptor_are_refused(raw, tmp_path):
    # Fashion-MNIST's arrays where CIFAR-10's are expected: what other data behind replaced checksums would give.
    with pytest.raises(FormatError, match=r"are \(28, 28, 1\), but the descriptor says \(32, 32, 3\)"):
        check_parsed(DATASETS["cifar10"], raw, tmp_path)


def test_labels_beyond_the_class_names_are_refused(raw, tmp_path):
    labels = raw.test_labels.copy()
    labels[3] = 10  # one past the last of Fashion-MNIST's ten classes
    beyond = RawDataset(raw.train_images, raw.train_labels, raw.test_images, labels)
    with pytest.raises(FormatError, match="test label 10 .* outside 0-9"):
        check_parsed(DATASETS["fashion_mnist"], beyond, tmp_path)


def test_normalization_uses_the_training_split_only(raw, tmp_path):
    splits = split_dataset(raw, val_fraction=0.1, seed=0)
    mean, std = channel_stats(splits["train"].images)
    write_prepared(
        tmp_path / "out", splits, {"mean": mean, "std": std, "class_names": list(DATASETS["fashion_mnist"].class_names)}
    )
    data = load_prepared(tmp_path / "out")
    assert abs(float(data.train.images.mean())) < 1e-4 and abs(float(data.train.images.std()) - 1) < 1e-3
    expected = (splits["val"].images.astype(np.float32) / 255 - np.float32(mean[0])) / np.float32(std[0])
    assert np.allclose(data.val.images, expected, atol=1e-5)
    assert data.input_shape == (28, 28, 1) and data.num_classes == 10


def test_prepared_files_are_byte_identical_across_runs(raw, tmp_path):
    for name in ("a", "b"):
        write_prepared(tmp_path / name, split_dataset(raw, val_fraction=0.1, seed=3), {"x": 1})
    for path in (tmp_path / "a").iterdir():
        assert path.read_bytes() == (tmp_path / "b" / path.name).read_bytes(), path.name


def _prepared_with(raw, tmp_path, scaling):
    splits = split_dataset(raw, val_fraction=0.1, seed=0)
    mean, std = channel_stats(splits["train"].images)
    meta = {"mean": mean, "std": std, "scaling": scaling, "class_names": list(DATASETS["fashion_mnist"].class_names)}
    write_prepared(tmp_path / scaling, splits, meta)
    return splits, load_prepared(tmp_path / scaling)


def test_unit_range_is_pixels_over_255(raw, tmp_path):
    splits, data = _prepared_with(raw, tmp_path, "unit_range")  # article 003: train_images / 255.0
    assert np.array_equal(data.val.images, splits["val"].images.astype(np.float32) / np.float32(255))
    assert data.train.images.dtype == np.float32 and float(data.train.images.max()) <= 1.0


def test_raw_is_the_pixel_values(raw, tmp_path):
    splits, data = _prepared_with(raw, tmp_path, "raw")
    assert np.array_equal(data.test.images, splits["test"].images.astype(np.float32))


def test_l2_axis1_is_keras_utils_normalize_per_image(raw, tmp_path):
    import keras

    splits, data = _prepared_with(raw, tmp_path, "l2_axis1")
    # Article 000: keras.utils.normalize(X, axis=1) on the uint8 NHWC array (float64 there).
    expected = keras.utils.normalize(splits["train"].images.astype(np.float64), axis=1)
    assert np.allclose(data.train.images, expected, atol=1e-6)
    norms = np.sqrt(np.square(data.train.images.astype(np.float64)).sum(axis=1))
    assert np.allclose(norms[norms > 0], 1.0, atol=1e-5)


def test_scalings_use_no_statistics_of_the_validation_or_test_split(raw, tmp_path):
    # Per-image scalings: an image's scaled values do not depend on any other image.
    images = raw.train_images[:20]
    mean, std = np.float32([0.3]), np.float32([0.2])
    for scaling in ("unit_range", "l2_axis1", "raw", "standardize"):
        alone = scale_images(images[:1], scaling, mean, std)
        assert np.array_equal(alone, scale_images(images, scaling, mean, std)[:1]), scaling


def test_prepare_records_the_scaling_and_load_applies_it(tmp_path):
    raw_dir = tmp_path / "raw"
    raw_dir.mkdir()
    write_fashion_mnist(raw_dir, train=400, test=100)
    files = {p.name: md5(p) for p in raw_dir.iterdir()}
    (raw_dir / "files.json").write_text(
        json.dumps({"dataset": "fashion_mnist", "files": files, "published": False}), encoding="utf-8"
    )
    settings = PrepareParams(val_fraction=0.25, split_seed=0, scaling="unit_range")
    splits, meta = prepare_dataset("fashion_mnist", raw_dir, settings)
    assert meta["scaling"] == "unit_range"
    write_prepared(tmp_path / "out", splits, meta)
    assert float(load_prepared(tmp_path / "out").train.images.min()) >= 0.0


def test_an_unknown_scaling_is_refused():
    from pipeline.errors import UserError

    with pytest.raises(UserError, match="unknown input scaling 'minmax'"):
        scale_images(np.zeros((1, 2, 2, 1), np.uint8), "minmax", np.float32([0]), np.float32([1]))
