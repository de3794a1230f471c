"""The architectures a study may train, each declared once: here.

An architecture is a seed article's network, layer for layer, written in the builder's
vocabulary (`Blocks`, pipeline/cell/models.py), which places batch normalization the same way
for every architecture. Everything else reads this registry: the params schema takes its names
(`train.architecture`), the builder its layers, and the parameter-count test
(tests/unit/test_models.py) its architectures and their articles' input shapes. A new
architecture is one entry here, plus its count worked out by hand in that test.

Keras is not imported here, so the schema reads the names without starting a backend.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class Architecture:
    article: str  # the seed article whose network this is
    input_shape: tuple[int, int, int]  # the article's input (height, width, channels)
    # The layers between the input and the softmax classifier, from the builder's `Blocks` (pipeline/cell/models.py,
    # not imported here: the schema reads this registry without Keras).
    hidden: Callable[..., list]
    summary: str


def _seed_cnn(b) -> list:
    # Article 000: 32, 32, pool, 64, 64, pool, dense 128; he_uniform after the first conv.
    # Its build_model adds BN only after each conv (`if batch_normalization: model.add(BatchNormalization())`
    # follows the four Conv2D lines, not the Dense 128 line), so Dense 128 has no BN in any placement.
    return [
        *b.conv(32),
        *b.conv(32, init="he_uniform"),
        b.pool(),
        *b.dropout(),
        *b.conv(64, init="he_uniform"),
        *b.conv(64, init="he_uniform"),
        b.pool(),
        *b.dropout(),
        b.flatten(),
        *b.dense(128, init="he_uniform", normalized=False),
        *b.dropout(),
    ]


def _strided_cnn(b) -> list:
    # Article 001: filters 30, 50, 60, 3x3, strides 2, 1, 1, no pooling; dense 3500, 700.
    # Its TensorFlow layers used the default "valid" padding.
    if b.spec.bn == "post":
        return _strided_cnn_author_bn(b)
    return [
        *b.conv(30, strides=2, padding="valid"),
        *b.conv(50, padding="valid"),
        *b.conv(60, padding="valid"),
        b.flatten(),
        *b.dropout(),
        *b.dense(3500),
        *b.dropout(),
        *b.dense(700),
        *b.dropout(),
    ]


def _strided_cnn_author_bn(b) -> list:
    # Article 001's "post": BN "after Activation, and more specifically, before the input of each
    # layer". The author's notebook (github.com/ilango100/batch_norm, cifar10bn.ipynb) calls
    # tf.layers.batch_normalization before every conv2d and dense call, the softmax layer included:
    # so BN also normalizes the input image, and the last conv's BN comes after Flatten, one
    # mean/variance per flattened feature (7,260) rather than per channel (60).
    return [
        b.norm(),  # on the input image
        b.conv_core(30, strides=2, padding="valid"), b.activation(), b.norm(),
        b.conv_core(50, padding="valid"), b.activation(), b.norm(),
        b.conv_core(60, padding="valid"), b.activation(),
        b.flatten(),
        b.norm(),
        *b.dropout(),
        b.dense_core(3500), b.activation(), b.norm(),
        *b.dropout(),
        b.dense_core(700), b.activation(), b.norm(),
        *b.dropout(),
    ]  # fmt: skip


def _mlp(b) -> list:
    # Article 003: 300, 200, 100 on flattened Fashion-MNIST.
    blocks = [b.flatten()]
    for units in (300, 200, 100):
        blocks += [*b.dense(units), *b.dropout()]
    return blocks


def _conv5_cnn(b) -> list:
    # Article 004 shows one block: conv 32 filters 5x5 "same" (activation None), BN (momentum 0.9,
    # epsilon 0.001, center and scale), ReLU, max pooling 2x2 stride 2; its input is `pool2`, so two
    # blocks came before it. Filled in (the rest of its net is not shown): those two blocks are the
    # same as the shown one, and the softmax layer reads the flattened third pool, with no hidden
    # Dense layer: the smallest net that holds the shown block where the article has it.
    # The article's conv keeps a bias before BN; "pre" drops it, as BN's mean subtraction cancels
    # it exactly (it never changes an output): 32 weights fewer per conv than the article's.
    blocks: list = []
    for _ in range(3):
        blocks += [*b.conv(32, kernel=5), b.pool(size=2, strides=2), *b.dropout()]
    return [*blocks, b.flatten()]


ARCHITECTURES: dict[str, Architecture] = {
    "seed_cnn": Architecture("000", (32, 32, 3), _seed_cnn, "4 convs in 2 pooled blocks, Dense 128"),
    "strided_cnn": Architecture("001", (32, 32, 3), _strided_cnn, "3 strided convs, no pooling, Dense 3500 and 700"),
    "mlp": Architecture("003", (28, 28, 1), _mlp, "Dense 300, 200, 100"),
    "conv5_cnn": Architecture("004", (32, 32, 3), _conv5_cnn, "3 blocks of a 5x5 conv and pooling"),
}
