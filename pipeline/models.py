"""Model builder: the seed articles' networks with batch normalization placed exactly.

Every hidden Conv/Dense layer becomes one of:
    off:  Conv/Dense(bias)    -> Activation
    pre:  Conv/Dense(no bias) -> BatchNormalization -> Activation   (the BN paper's placement)
    post: Conv/Dense(bias)    -> Activation -> BatchNormalization
The bias goes only where BN's own shift would cancel it. Dropout (when the rate
is above 0) follows each pooling layer, the flattened conv features of the
strided net, and each hidden Dense block. Only plain Keras layers are used, so
the same code runs on the TensorFlow, JAX and PyTorch backends.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import keras
from keras import layers

from pipeline.params import Activation, Architecture, BatchNorm


@dataclass(frozen=True)
class ModelSpec:
    architecture: Architecture
    activation: Activation
    bn: BatchNorm
    dropout: float  # rate in [0, 1); 0 adds no Dropout layer
    bn_momentum: float
    bn_epsilon: float


def _hidden(spec: ModelSpec, make_core: Callable[[bool], layers.Layer]) -> list[layers.Layer]:
    """One hidden layer and its activation, with BN where `spec.bn` puts it."""
    core = make_core(spec.bn != "pre")  # use_bias
    activation = layers.Activation(spec.activation)
    if spec.bn == "off":
        return [core, activation]
    norm = layers.BatchNormalization(momentum=spec.bn_momentum, epsilon=spec.bn_epsilon)
    return [core, norm, activation] if spec.bn == "pre" else [core, activation, norm]


def _conv(spec: ModelSpec, filters: int, *, strides: int = 1, padding: str = "same", init: str = "glorot_uniform"):
    return _hidden(
        spec,
        lambda bias: layers.Conv2D(
            filters, 3, strides=strides, padding=padding, use_bias=bias, kernel_initializer=init
        ),
    )


def _dense(spec: ModelSpec, units: int, *, init: str = "glorot_uniform"):
    return _hidden(spec, lambda bias: layers.Dense(units, use_bias=bias, kernel_initializer=init))


def _dropout(spec: ModelSpec) -> list[layers.Layer]:
    return [layers.Dropout(spec.dropout)] if spec.dropout > 0 else []


def _seed_cnn(spec: ModelSpec) -> list[layers.Layer]:
    # Article 000: 32, 32, pool, 64, 64, pool, dense 128; he_uniform after the first conv.
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
        *_dense(spec, 128, init="he_uniform"),
        *_dropout(spec),
    ]


def _strided_cnn(spec: ModelSpec) -> list[layers.Layer]:
    # Article 001: filters 30, 50, 60, 3x3, strides 2, 1, 1, no pooling; dense 3500, 700.
    # Its TensorFlow layers used the default "valid" padding.
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


def _mlp(spec: ModelSpec) -> list[layers.Layer]:
    # Article 003: 300, 200, 100 on flattened Fashion-MNIST.
    blocks = [layers.Flatten()]
    for units in (300, 200, 100):
        blocks += [*_dense(spec, units), *_dropout(spec)]
    return blocks


ARCHITECTURES: dict[str, Callable[[ModelSpec], list[layers.Layer]]] = {
    "seed_cnn": _seed_cnn,
    "strided_cnn": _strided_cnn,
    "mlp": _mlp,
}


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
            *_name_by_position(ARCHITECTURES[spec.architecture](spec)),
            layers.Dense(num_classes, activation="softmax", name="output"),
        ],
        name=spec.architecture,
    )
