"""Model builder: the seed articles' networks with batch normalization placed exactly.

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

from pipeline.params import Activation, Architecture, BatchNorm, CellSettings


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


def _norm(spec: ModelSpec) -> layers.Layer:
    return layers.BatchNormalization(momentum=spec.bn_momentum, epsilon=spec.bn_epsilon)


def _hidden(
    spec: ModelSpec, make_core: Callable[[bool], layers.Layer], *, normalized: bool = True
) -> list[layers.Layer]:
    """One hidden layer and its activation, with BN where `spec.bn` puts it (none if not `normalized`)."""
    activation = layers.Activation(spec.activation)
    if spec.bn == "off" or not normalized:
        return [make_core(True), activation]
    core = make_core(_keeps_bias(spec))
    return [core, _norm(spec), activation] if spec.bn == "pre" else [core, activation, _norm(spec)]


def _init(spec: ModelSpec, article: str) -> str:
    return spec.kernel_initializer or article


def _make_conv(spec: ModelSpec, filters: int, kernel: int, strides: int, padding: str, init: str):
    return lambda bias: layers.Conv2D(
        filters, kernel, strides=strides, padding=padding, use_bias=bias, kernel_initializer=_init(spec, init)
    )


def _conv(
    spec: ModelSpec,
    filters: int,
    *,
    kernel: int = 3,
    strides: int = 1,
    padding: str = "same",
    init: str = "glorot_uniform",
):
    return _hidden(spec, _make_conv(spec, filters, kernel, strides, padding, init))


def _make_dense(spec: ModelSpec, units: int, init: str):
    return lambda bias: layers.Dense(units, use_bias=bias, kernel_initializer=_init(spec, init))


def _dense(spec: ModelSpec, units: int, *, init: str = "glorot_uniform", normalized: bool = True):
    return _hidden(spec, _make_dense(spec, units, init), normalized=normalized)


def _dropout(spec: ModelSpec) -> list[layers.Layer]:
    return [layers.Dropout(spec.dropout)] if spec.dropout > 0 else []


def _seed_cnn(spec: ModelSpec) -> list[layers.Layer]:
    # Article 000: 32, 32, pool, 64, 64, pool, dense 128; he_uniform after the first conv.
    # Its build_model adds BN only after each conv (`if batch_normalization: model.add(BatchNormalization())`
    # follows the four Conv2D lines, not the Dense 128 line), so Dense 128 has no BN in any placement.
    return [
        *_conv(spec, 32),
        *_conv(spec, 32, init="he_uniform"),
        layers.MaxPooling2D(),
        *_dropout(spec),
        *_conv(spec, 64, init="he_uniform"),
        *_conv(spec, 64, init="he_uniform"),
        layers.MaxPooling2D(),
        *_dropout(spec),
        layers.Flatten(),
        *_dense(spec, 128, init="he_uniform", normalized=False),
        *_dropout(spec),
    ]


def _strided_cnn(spec: ModelSpec) -> list[layers.Layer]:
    # Article 001: filters 30, 50, 60, 3x3, strides 2, 1, 1, no pooling; dense 3500, 700.
    # Its TensorFlow layers used the default "valid" padding.
    if spec.bn == "post":
        return _strided_cnn_author_bn(spec)
    return [
        *_conv(spec, 30, strides=2, padding="valid"),
        *_conv(spec, 50, padding="valid"),
        *_conv(spec, 60, padding="valid"),
        layers.Flatten(),
        *_dropout(spec),
        *_dense(spec, 3500),
        *_dropout(spec),
        *_dense(spec, 700),
        *_dropout(spec),
    ]


def _strided_cnn_author_bn(spec: ModelSpec) -> list[layers.Layer]:
    # Article 001's "post": BN "after Activation, and more specifically, before the input of each
    # layer". The author's notebook (github.com/ilango100/batch_norm, cifar10bn.ipynb) calls
    # tf.layers.batch_normalization before every conv2d and dense call, the softmax layer included:
    # so BN also normalizes the input image, and the last conv's BN comes after Flatten, one
    # mean/variance per flattened feature (7,260) rather than per channel (60).
    bias = _keeps_bias(spec)
    act = spec.activation
    return [
        _norm(spec),  # on the input image
        _make_conv(spec, 30, 3, 2, "valid", "glorot_uniform")(bias), layers.Activation(act), _norm(spec),
        _make_conv(spec, 50, 3, 1, "valid", "glorot_uniform")(bias), layers.Activation(act), _norm(spec),
        _make_conv(spec, 60, 3, 1, "valid", "glorot_uniform")(bias), layers.Activation(act),
        layers.Flatten(),
        _norm(spec),
        *_dropout(spec),
        _make_dense(spec, 3500, "glorot_uniform")(bias), layers.Activation(act), _norm(spec),
        *_dropout(spec),
        _make_dense(spec, 700, "glorot_uniform")(bias), layers.Activation(act), _norm(spec),
        *_dropout(spec),
    ]  # fmt: skip


def _mlp(spec: ModelSpec) -> list[layers.Layer]:
    # Article 003: 300, 200, 100 on flattened Fashion-MNIST.
    blocks = [layers.Flatten()]
    for units in (300, 200, 100):
        blocks += [*_dense(spec, units), *_dropout(spec)]
    return blocks


def _conv5_cnn(spec: ModelSpec) -> list[layers.Layer]:
    # Article 004 shows one block: conv 32 filters 5x5 "same" (activation None), BN (momentum 0.9,
    # epsilon 0.001, center and scale), ReLU, max pooling 2x2 stride 2; its input is `pool2`, so two
    # blocks came before it. Filled in (the rest of its net is not shown): those two blocks are the
    # same as the shown one, and the softmax layer reads the flattened third pool, with no hidden
    # Dense layer: the smallest net that holds the shown block where the article has it.
    # The article's conv keeps a bias before BN; "pre" drops it, as BN's mean subtraction cancels
    # it exactly (it never changes an output): 32 weights fewer per conv than the article's.
    blocks: list[layers.Layer] = []
    for _ in range(3):
        blocks += [*_conv(spec, 32, kernel=5), layers.MaxPooling2D(pool_size=2, strides=2), *_dropout(spec)]
    return [*blocks, layers.Flatten()]


ARCHITECTURES: dict[str, Callable[[ModelSpec], list[layers.Layer]]] = {
    "seed_cnn": _seed_cnn,
    "strided_cnn": _strided_cnn,
    "mlp": _mlp,
    "conv5_cnn": _conv5_cnn,
}


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
            *_name_by_position(ARCHITECTURES[spec.architecture](spec)),
            layers.Dense(
                num_classes, activation="softmax", kernel_initializer=_init(spec, "glorot_uniform"), name="output"
            ),
        ],
        name=spec.architecture,
    )
