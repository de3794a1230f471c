"""Each dataset's descriptor agrees with the dataset's original files.

Every test runs once per entry of DATASETS, so a new dataset is checked as soon as it
has a descriptor in pipeline/data/datasets.py and a writer in tools/fake_data.py.
"""

from __future__ import annotations

import numpy as np
import pytest

from pipeline.data.datasets import DATASETS, descriptor
from pipeline.errors import UserError
from tools.fake_data import WRITERS

TRAIN, TEST = 200, 100  # enough random labels that every class occurs in both sets
each_dataset = pytest.mark.parametrize("spec", list(DATASETS.values()), ids=list(DATASETS))


def test_every_dataset_has_a_fake_data_writer():
    assert sorted(WRITERS) == sorted(DATASETS)


@each_dataset
def test_descriptor_is_filed_under_its_name(spec):
    assert DATASETS[spec.name] is spec and descriptor(spec.name) is spec


@each_dataset
def test_original_files_parse_into_the_input_shape_and_the_class_names(spec, tmp_path):
    WRITERS[spec.name](tmp_path, TRAIN, TEST)
    raw = spec.read(tmp_path)
    every_class = list(range(len(spec.class_names)))
    for images, labels, count in (
        (raw.train_images, raw.train_labels, TRAIN),
        (raw.test_images, raw.test_labels, TEST),
    ):
        assert images.shape == (count, *spec.input_shape) and images.dtype == np.uint8
        assert labels.shape == (count,)
        assert np.unique(labels).tolist() == every_class  # each label names a class, and each class occurs


@each_dataset
def test_checksums_cover_exactly_the_original_files(spec, tmp_path):
    WRITERS[spec.name](tmp_path, TRAIN, TEST)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(spec.md5)
    assert all(len(digest) == 32 and set(digest) <= set("0123456789abcdef") for digest in spec.md5.values())


@each_dataset
def test_default_targets_are_sorted_unique_accuracies(spec):
    targets = spec.default_targets
    assert targets and list(targets) == sorted(set(targets))
    assert all(0 < target < 1 for target in targets)


@each_dataset
def test_class_names_are_distinct(spec):
    assert len(set(spec.class_names)) == len(spec.class_names) > 1


def test_unknown_dataset_names_the_known_ones():
    with pytest.raises(UserError, match=r"unknown dataset 'mnist' \(known: cifar10, fashion_mnist\)"):
        descriptor("mnist")
