from __future__ import annotations

import pytest
from keras import layers

from pipeline.models import ModelSpec, build_model


def _spec(architecture="seed_cnn", bn="off", dropout=0.0, activation="relu"):
    return ModelSpec(architecture, activation, bn, dropout, bn_momentum=0.9, bn_epsilon=0.001)


def _kinds(model):
    return [type(layer).__name__ for layer in model.layers]


EXPECTED_BLOCK = {
    "off": ["Conv2D", "Activation"],
    "pre": ["Conv2D", "BatchNormalization", "Activation"],
    "post": ["Conv2D", "Activation", "BatchNormalization"],
}


@pytest.mark.parametrize("bn", ["off", "pre", "post"])
def test_seed_cnn_layer_order_for_each_bn_placement(bn):
    block = EXPECTED_BLOCK[bn]
    dense = [k.replace("Conv2D", "Dense") for k in block]
    expected = [*block, *block, "MaxPooling2D", *block, *block, "MaxPooling2D", "Flatten", *dense, "Dense"]
    assert _kinds(build_model(_spec(bn=bn), (32, 32, 3), 10)) == expected


@pytest.mark.parametrize("architecture", ["seed_cnn", "strided_cnn", "mlp"])
@pytest.mark.parametrize("bn", ["off", "pre", "post"])
def test_bias_only_where_bn_does_not_follow(architecture, bn):
    model = build_model(_spec(architecture, bn=bn), (32, 32, 3), 10)
    hidden = [l for l in model.layers[:-1] if isinstance(l, (layers.Conv2D, layers.Dense))]
    assert hidden, "every preset has hidden layers"
    for layer in hidden:
        index = model.layers.index(layer)
        followed_by_bn = isinstance(model.layers[index + 1], layers.BatchNormalization)
        assert followed_by_bn == (bn == "pre")
        assert layer.use_bias == (bn != "pre"), layer.name
    assert model.layers[-1].use_bias and model.layers[-1].activation.__name__ == "softmax"


def test_bn_uses_the_configured_momentum_and_epsilon():
    norms = [
        l for l in build_model(_spec(bn="post"), (28, 28, 1), 10).layers if isinstance(l, layers.BatchNormalization)
    ]
    assert len(norms) == 5
    assert all(n.momentum == 0.9 and n.epsilon == 0.001 for n in norms)


def test_dropout_follows_pools_and_the_dense_block():
    kinds = _kinds(build_model(_spec(dropout=0.5), (32, 32, 3), 10))
    assert kinds.count("Dropout") == 3
    assert [kinds[i - 1] for i, k in enumerate(kinds) if k == "Dropout"] == [
        "MaxPooling2D",
        "MaxPooling2D",
        "Activation",
    ]


def test_activation_is_applied():
    model = build_model(_spec(activation="sigmoid"), (32, 32, 3), 10)
    acts = [l.activation.__name__ for l in model.layers if isinstance(l, layers.Activation)]
    assert acts == ["sigmoid"] * 5


def test_seed_cnn_matches_the_article_parameter_count():
    # 896 + 9,248 + 18,496 + 36,928 (convs) + 524,416 (dense 128) + 1,290 (softmax)
    assert build_model(_spec(), (32, 32, 3), 10).count_params() == 591_274


def test_input_shape_comes_from_the_dataset():
    model = build_model(_spec("mlp"), (28, 28, 1), 10)
    assert model.input_shape == (None, 28, 28, 1)
    assert [l.units for l in model.layers if isinstance(l, layers.Dense)] == [300, 200, 100, 10]


def test_strided_cnn_is_the_article_layout():
    model = build_model(_spec("strided_cnn"), (32, 32, 3), 10)
    convs = [(l.filters, l.strides) for l in model.layers if isinstance(l, layers.Conv2D)]
    assert convs == [(30, (2, 2)), (50, (1, 1)), (60, (1, 1))]
    assert [l.units for l in model.layers if isinstance(l, layers.Dense)] == [3500, 700, 10]
    assert not any(isinstance(l, layers.MaxPooling2D) for l in model.layers)
