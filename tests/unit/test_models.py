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


# The presets as lists of hidden layers, written from the articles' code, not read off the builder:
# ("conv", filters, stride, padding) or ("dense", units), each followed by its activation.
PRESET_LAYERS = {
    "seed_cnn": [("conv", 32, 1, "same"), ("conv", 32, 1, "same"), ("pool",), ("conv", 64, 1, "same"),
                 ("conv", 64, 1, "same"), ("pool",), ("dense", 128)],
    "strided_cnn": [("conv", 30, 2, "valid"), ("conv", 50, 1, "valid"), ("conv", 60, 1, "valid"),
                    ("dense", 3500), ("dense", 700)],
    "mlp": [("dense", 300), ("dense", 200), ("dense", 100)],
}  # fmt: skip


def expected_parameters(preset: str, bn: str, input_shape: tuple[int, int, int], classes: int = 10) -> int:
    """Weights of the preset by hand: kernels, biases where no BN follows, and BN's four vectors per unit."""
    side, _, channels = input_shape
    features, total = None, 0
    for layer in PRESET_LAYERS[preset]:
        if layer[0] == "pool":
            side //= 2
            continue
        if layer[0] == "conv":
            _, width, stride, padding = layer
            fan_in = 3 * 3 * channels
            side = -(-side // stride) if padding == "same" else (side - 3) // stride + 1
            channels = width
        else:
            width = layer[1]
            fan_in = features if features is not None else side * side * channels
            features = width
        total += fan_in * width + (width if bn != "pre" else 0) + (4 * width if bn != "off" else 0)
    fan_in = features if features is not None else side * side * channels
    return total + fan_in * classes + classes


@pytest.mark.parametrize(
    ("preset", "input_shape"),
    [("seed_cnn", (32, 32, 3)), ("strided_cnn", (32, 32, 3)), ("mlp", (28, 28, 1)), ("seed_cnn", (28, 28, 1))],
)
@pytest.mark.parametrize("bn", ["off", "pre", "post"])
def test_parameter_count_of_every_preset_and_placement(preset, input_shape, bn):
    model = build_model(_spec(preset, bn=bn), input_shape, 10)
    assert model.count_params() == expected_parameters(preset, bn, input_shape)


def test_hand_count_agrees_with_the_article_total():
    assert expected_parameters("seed_cnn", "off", (32, 32, 3)) == 591_274  # article 000's model summary


def _initializers(model):
    return [type(l.kernel_initializer).__name__ for l in model.layers if isinstance(l, (layers.Conv2D, layers.Dense))]


def test_initializers_follow_the_articles():
    # Article 000: the first conv and the softmax keep Keras' default, the others are he_uniform.
    assert _initializers(build_model(_spec("seed_cnn"), (32, 32, 3), 10)) == [
        "GlorotUniform", "HeUniform", "HeUniform", "HeUniform", "HeUniform", "GlorotUniform",
    ]  # fmt: skip
    # Articles 001 and 003 use the frameworks' default everywhere.
    assert set(_initializers(build_model(_spec("strided_cnn"), (32, 32, 3), 10))) == {"GlorotUniform"}
    assert set(_initializers(build_model(_spec("mlp"), (28, 28, 1), 10))) == {"GlorotUniform"}


def test_padding_of_the_convolutions():
    seed = build_model(_spec("seed_cnn"), (32, 32, 3), 10)
    assert {l.padding for l in seed.layers if isinstance(l, layers.Conv2D)} == {"same"}
    strided = build_model(_spec("strided_cnn"), (32, 32, 3), 10)
    assert {l.padding for l in strided.layers if isinstance(l, layers.Conv2D)} == {"valid"}
    assert strided.get_layer(index=len(strided.layers) - 1).input.shape[-1] == 700
    flatten = next(l for l in strided.layers if isinstance(l, layers.Flatten))
    assert flatten.output.shape[-1] == 11 * 11 * 60  # 32 -> 15 -> 13 -> 11 without padding


def test_layers_are_named_by_kind_and_position():
    # Per-layer measurements (gradient norms) are columns named after layers: the same in every process.
    spec = ModelSpec("seed_cnn", "relu", "pre", 0.5, 0.99, 0.001)
    names = [layer.name for layer in build_model(spec, (28, 28, 1), 10).layers]
    assert names[:4] == ["conv1", "bn1", "act1", "conv2"]
    assert "dense1" in names and "dropout3" in names and names[-1] == "output"
    assert names == [layer.name for layer in build_model(spec, (28, 28, 1), 10).layers]
    kernels = [layer.kernel.path for layer in build_model(spec, (28, 28, 1), 10).layers if hasattr(layer, "kernel")]
    assert kernels[0].endswith("conv1/kernel") and kernels[-1].endswith("output/kernel")
