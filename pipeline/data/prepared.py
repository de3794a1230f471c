"""The prepared arrays of one dataset: split, statistics, digest, and how they are stored.

On disk, `data/prepared/<dataset>/` holds one `.npy` file per array (uint8, so
compact, and byte-identical from run to run, unlike a zip with timestamps) and
`meta.json` with the normalization statistics, class counts and the data digest.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from sklearn.model_selection import train_test_split

from pipeline.data.raw import RawDataset
from pipeline.errors import UserError

SPLITS = ("train", "val", "test")


@dataclass(frozen=True)
class Split:
    images: np.ndarray  # uint8 (N, H, W, C) as stored; float32 normalized once loaded
    labels: np.ndarray  # uint8 (N,)


@dataclass(frozen=True)
class PreparedData:
    train: Split
    val: Split
    test: Split
    meta: dict

    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(self.train.images.shape[1:])

    @property
    def num_classes(self) -> int:
        return len(self.meta["class_names"])


def _stratified_subset(images, labels, size, seed):
    if size is None or size >= len(labels):
        return images, labels
    images, _, labels, _ = train_test_split(images, labels, train_size=size, stratify=labels, random_state=seed)
    return images, labels


def split_dataset(
    raw: RawDataset,
    *,
    val_fraction: float,
    seed: int,
    max_train_examples: int | None = None,
    max_test_examples: int | None = None,
) -> dict[str, Split]:
    """Carve a stratified validation set off the training set; the test set stays apart."""
    try:
        images, labels = _stratified_subset(raw.train_images, raw.train_labels, max_train_examples, seed)
        train_x, val_x, train_y, val_y = train_test_split(
            images, labels, test_size=val_fraction, stratify=labels, random_state=seed
        )
        test_x, test_y = _stratified_subset(raw.test_images, raw.test_labels, max_test_examples, seed)
    except ValueError as error:  # sklearn: a side of a split too small to hold every class
        raise UserError(
            f"prepare: cannot split {len(raw.train_labels)} training images into stratified sets with "
            f"prepare.val_fraction={val_fraction} and prepare.max_train_examples={max_train_examples} "
            f"({error}); raise them so that each set holds every class"
        ) from None
    return {
        "train": Split(np.ascontiguousarray(train_x), np.ascontiguousarray(train_y)),
        "val": Split(np.ascontiguousarray(val_x), np.ascontiguousarray(val_y)),
        "test": Split(np.ascontiguousarray(test_x), np.ascontiguousarray(test_y)),
    }


def channel_stats(images: np.ndarray) -> tuple[list[float], list[float]]:
    """Per-channel mean and std of pixels scaled to [0, 1]; call it on the training split only."""
    pixels = images.reshape(-1, images.shape[-1]).astype(np.float64) / 255.0
    return pixels.mean(axis=0).tolist(), pixels.std(axis=0).tolist()


def data_digest(splits: dict[str, Split]) -> str:
    """sha256 over every array's shape, dtype and bytes: names exactly the data a cell saw."""
    digest = hashlib.sha256()
    for name in SPLITS:
        for array in (splits[name].images, splits[name].labels):
            digest.update(f"{name}{array.shape}{array.dtype}".encode())
            digest.update(np.ascontiguousarray(array).tobytes())
    return digest.hexdigest()


def write_prepared(out_dir: Path, splits: dict[str, Split], meta: dict) -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    for name in SPLITS:
        np.save(out_dir / f"{name}_images.npy", splits[name].images, allow_pickle=False)
        np.save(out_dir / f"{name}_labels.npy", splits[name].labels, allow_pickle=False)
    (out_dir / "meta.json").write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n", encoding="utf-8")


def scale_images(images: np.ndarray, scaling: str, mean: np.ndarray, std: np.ndarray) -> np.ndarray:
    """uint8 images (N, H, W, C) as float32, scaled as the study's `prepare.scaling` says.

    standardize: per channel, pixels in [0, 1] less the training split's mean, over its std.
    unit_range:  pixels / 255 (article 003).
    l2_axis1:    keras.utils.normalize(x, axis=1) (article 000): each image's columns divided by
                 their L2 norm along axis 1, the height, per column and channel (a zero norm
                 divides by 1). Per image, so no statistics; invariant to the 0-255 scale.
    raw:         pixel values 0-255 as floats (article 001's notebook fed them unscaled).
    """
    if scaling == "standardize":
        return ((images.astype(np.float32) / 255.0) - mean) / std
    if scaling == "unit_range":
        return images.astype(np.float32) / np.float32(255.0)
    if scaling == "l2_axis1":
        pixels = images.astype(np.float32)
        norms = np.sqrt(np.square(pixels).sum(axis=1, keepdims=True))
        return pixels / np.where(norms == 0, np.float32(1.0), norms)
    if scaling == "raw":
        return images.astype(np.float32)
    raise UserError(f"unknown input scaling {scaling!r}; known: standardize, unit_range, l2_axis1, raw")


def load_prepared(data_dir: Path) -> PreparedData:
    """Load the arrays as float32, scaled as prepare recorded (the training split's statistics)."""
    meta = json.loads((data_dir / "meta.json").read_text(encoding="utf-8"))
    mean = np.asarray(meta["mean"], dtype=np.float32)
    std = np.asarray(meta["std"], dtype=np.float32)
    scaling = meta.get("scaling", "standardize")  # prepared before the setting existed: the default

    def load(name: str) -> Split:
        images = np.load(data_dir / f"{name}_images.npy", allow_pickle=False)
        labels = np.load(data_dir / f"{name}_labels.npy", allow_pickle=False)
        return Split(scale_images(images, scaling, mean, std), labels.astype(np.int32))

    return PreparedData(train=load("train"), val=load("val"), test=load("test"), meta=meta)
