"""Model builder: the seed articles' networks (pipeline/cell/architectures.py) with batch normalization placed exactly.

Every hidden Conv/Dense layer that BN normalizes becomes one of:
    off:  Conv/Dense(bias)    -> Activation
    pre:  Conv/Dense(no bias) -> BatchNormalization -> Activation   (the BN paper's placement)
    post: Conv/Dense(bias)    -> Activation -> BatchNormalization
The bias goes only where BN's own shift would cancel it. After the activation BN
cancels nothing, yet article 003 drops that bias too: `post_bn_bias=False` does so.
A hidden layer an article never normalizes (article 000's Dense 128) is always
Conv/Dense(bias) -> Activation. Dropout (when the rate is above 0) follows each
pooling layer, the flattened conv features of the strided net, and each hidden
Dense block. Article 000's augmentation is a stack of Keras preprocessing layers
at the model's input: active in training only (fit), never in evaluation or
prediction, seeded from the cell's seed. Only plain Keras layers are used, so the
same code runs on the TensorFlow, JAX and PyTorch backends.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

import keras
from keras import layers

from pipeline.cell.architectures import ARCHITECTURES
from pipeline.study.schema import Activation, Architecture, BatchNorm, CellSettings


@dataclass(frozen=True)
class Augmentation:
    """Article 000's ImageDataGenerator(shear_range, zoom_range, horizontal_flip), as Keras layers."""

    horizontal_flip: bool = False
    shear_degrees: float = 0.0  # ImageDataGenerator's shear_range: an angle in degrees, drawn in [-d, d]
    zoom: float = 0.0  # ImageDataGenerator's zoom_range z: height and width zoom drawn apart in [1-z, 1+z]

    @property
    def active(self) -> bool:
        return self.horizontal_flip or self.shear_degrees > 0 or self.zoom > 0


@dataclass(frozen=True)
class ModelSpec:
    architecture: Architecture
    activation: Activation
    bn: BatchNorm
    dropout: float  # rate in [0, 1); 0 adds no Dropout layer
    bn_momentum: float
    bn_epsilon: float
    post_bn_bias: bool = True  # post only: whether the layer before the activation and BN keeps its bias
    kernel_initializer: str | None = None  # every Conv/Dense kernel; None: each article's own
    augmentation: Augmentation = field(default_factory=Augmentation)
    seed: int = 0  # seeds the augmentation layers


def model_spec(settings: CellSettings) -> ModelSpec:
    """The model a cell trains, from its effective settings."""
    train = settings.train
    return ModelSpec(
        architecture=train.architecture,
        activation=settings.activation,
        bn=settings.bn,
        dropout=settings.dropout,
        bn_momentum=train.bn_momentum,
        bn_epsilon=train.bn_epsilon,
        post_bn_bias=train.post_bn_bias,
        kernel_initializer=train.kernel_initializer,
        augmentation=Augmentation(**train.augmentation.model_dump()),
        seed=settings.seed,
    )


def _keeps_bias(spec: ModelSpec) -> bool:
    """Whether a layer that BN normalizes (under `spec.bn`) keeps its bias."""
    if spec.bn == "pre":
        return False  # BN's mean subtraction cancels it
    return spec.bn == "off" or spec.post_bn_bias


class Blocks:
    """The layers an architecture (pipeline/cell/architectures.py) is written in, for one model spec.

    `conv` and `dense` are a hidden layer and its activation with BN where `spec.bn` puts it: the
    one place that decides BN placement. The `*_core`, `activation` and `norm` pieces are for an
    article whose BN sits where no placement puts it.
    """

    def __init__(self, spec: ModelSpec):
        self.spec = spec

    def _hidden(self, make_core: Callable[[bool], layers.Layer], normalized: bool) -> list[layers.Layer]:
        spec = self.spec
        if spec.bn == "off" or not normalized:
            return [make_core(True), self.activation()]
        core = make_core(_keeps_bias(spec))
        return [core, self.norm(), self.activation()] if spec.bn == "pre" else [core, self.activation(), self.norm()]

    def _init(self, article: str) -> str:
        return self.spec.kernel_initializer or article

    def _make_conv(self, filters: int, kernel: int, strides: int, padding: str, init: str):
        return lambda bias: layers.Conv2D(
            filters, kernel, strides=strides, padding=padding, use_bias=bias, kernel_initializer=self._init(init)
        )

    def _make_dense(self, units: int, init: str):
        return lambda bias: layers.Dense(units, use_bias=bias, kernel_initializer=self._init(init))

    def conv(
        self, filters: int, *, kernel: int = 3, strides: int = 1, padding: str = "same", init: str = "glorot_uniform"
    ) -> list[layers.Layer]:
        return self._hidden(self._make_conv(filters, kernel, strides, padding, init), normalized=True)

    def dense(self, units: int, *, init: str = "glorot_uniform", normalized: bool = True) -> list[layers.Layer]:
        """A hidden Dense layer; `normalized=False` for one the article never normalizes (always bias, no BN)."""
        return self._hidden(self._make_dense(units, init), normalized=normalized)

    def dropout(self) -> list[layers.Layer]:
        return [layers.Dropout(self.spec.dropout)] if self.spec.dropout > 0 else []

    def pool(self, size: int = 2, strides: int | None = None) -> layers.Layer:
        return layers.MaxPooling2D(pool_size=size, strides=strides)

    def flatten(self) -> layers.Layer:
        return layers.Flatten()

    def conv_core(
        self, filters: int, *, kernel: int = 3, strides: int = 1, padding: str = "same", init: str = "glorot_uniform"
    ) -> layers.Layer:
        """A conv layer alone, with the bias a BN-normalized layer keeps under `spec.bn`."""
        return self._make_conv(filters, kernel, strides, padding, init)(_keeps_bias(self.spec))

    def dense_core(self, units: int, *, init: str = "glorot_uniform") -> layers.Layer:
        return self._make_dense(units, init)(_keeps_bias(self.spec))

    def activation(self) -> layers.Layer:
        return layers.Activation(self.spec.activation)

    def norm(self) -> layers.Layer:
        return layers.BatchNormalization(momentum=self.spec.bn_momentum, epsilon=self.spec.bn_epsilon)


def augmentation_layers(augmentation: Augmentation, seed: int) -> list[layers.Layer]:
    """Keras layers doing what article 000's ImageDataGenerator did; identity outside training.

    - shear: ImageDataGenerator draws an angle in [-d, d] DEGREES and applies the matrix
      [[1, -sin a], [0, cos a]] to (row, column) coordinates: rows move by sin(a) * column, a
      vertical shear. RandomShear's y_factor s moves rows by s * column: s = sin(d).
      (cos a stays 1 to 6e-6 at 0.2 degrees; RandomShear shears about the corner, not the
      centre: a shift of at most sin(d) * width, 0.11 pixel at 0.2 degrees on 32 pixels.)
    - zoom: both draw height and width zoom apart, uniform in [1 - z, 1 + z], about the centre;
      RandomZoom needs width_factor given, or it keeps the aspect ratio.
    - horizontal flip with probability 1/2.
    Fill mode "nearest" and bilinear interpolation as ImageDataGenerator's defaults; shear and
    zoom interpolate once each here, where ImageDataGenerator composes one affine transform.
    """
    stack: list[layers.Layer] = []
    if augmentation.shear_degrees > 0:
        factor = math.sin(math.radians(augmentation.shear_degrees))
        stack.append(layers.RandomShear(x_factor=0.0, y_factor=factor, fill_mode="nearest", seed=seed))
    if augmentation.zoom > 0:
        zoom = (-augmentation.zoom, augmentation.zoom)
        stack.append(layers.RandomZoom(height_factor=zoom, width_factor=zoom, fill_mode="nearest", seed=seed + 1))
    if augmentation.horizontal_flip:
        stack.append(layers.RandomFlip("horizontal", seed=seed + 2))
    return stack


# Layer names by kind and position (conv1, conv2, bn1, dense1, ...; the classifier is "output"), so that
# per-layer measurements have the same column names in every process, whatever Keras numbered before.
_KIND_NAMES = {
    layers.Conv2D: "conv",
    layers.Dense: "dense",
    layers.BatchNormalization: "bn",
    layers.Activation: "act",
    layers.MaxPooling2D: "pool",
    layers.Dropout: "dropout",
    layers.Flatten: "flatten",
}


def _name_by_position(hidden: list[layers.Layer]) -> list[layers.Layer]:
    counts: dict[str, int] = {}
    for layer in hidden:
        kind = next((name for cls, name in _KIND_NAMES.items() if type(layer) is cls), "layer")
        counts[kind] = counts.get(kind, 0) + 1
        layer.name = f"{kind}{counts[kind]}"
    return hidden


def build_model(spec: ModelSpec, input_shape: tuple[int, ...], num_classes: int) -> keras.Model:
    """An uncompiled classifier ending in a softmax over `num_classes`; layers named by kind and position."""
    return keras.Sequential(
        [
            keras.Input(shape=input_shape),
            *augmentation_layers(spec.augmentation, spec.seed),
            *_name_by_position(ARCHITECTURES[spec.architecture].hidden(Blocks(spec))),
            layers.Dense(
                num_classes,
                activation="softmax",
                kernel_initializer=spec.kernel_initializer or "glorot_uniform",
                name="output",
            ),
        ],
        name=spec.architecture,
    )
