from __future__ import annotations

import typing

import keras
import numpy as np
import pytest
from keras import layers

from pipeline.cell.architectures import ARCHITECTURES
from pipeline.cell.models import Augmentation, ModelSpec, augmentation_layers, build_model, model_spec
from pipeline.study.schema import Architecture


def _spec(architecture="seed_cnn", bn="off", dropout=0.0, activation="relu", **more):
    return ModelSpec(architecture, activation, bn, dropout, bn_momentum=0.9, bn_epsilon=0.001, **more)


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
    # Article 000 adds BN after each conv only: Dense 128 is Dense(bias) -> activation in every placement.
    expected = [
        *block,
        *block,
        "MaxPooling2D",
        *block,
        *block,
        "MaxPooling2D",
        "Flatten",
        "Dense",
        "Activation",
        "Dense",
    ]
    assert _kinds(build_model(_spec(bn=bn), (32, 32, 3), 10)) == expected


def _normalized(model, index):
    """Whether a BN layer comes between the layer at `index` and the next Conv/Dense layer."""
    for layer in model.layers[index + 1 :]:
        if isinstance(layer, (layers.Conv2D, layers.Dense)):
            return False
        if isinstance(layer, layers.BatchNormalization):
            return True
    return False


@pytest.mark.parametrize("architecture", sorted(ARCHITECTURES))
@pytest.mark.parametrize("bn", ["off", "pre", "post"])
@pytest.mark.parametrize("post_bn_bias", [True, False])
def test_bias_only_where_bn_does_not_cancel_it_or_as_post_bn_bias_says(architecture, bn, post_bn_bias):
    model = build_model(_spec(architecture, bn=bn, post_bn_bias=post_bn_bias), (32, 32, 3), 10)
    hidden = [l for l in model.layers[:-1] if isinstance(l, (layers.Conv2D, layers.Dense))]
    assert hidden, "every preset has hidden layers"
    for layer in hidden:
        index = model.layers.index(layer)
        followed_by_bn = isinstance(model.layers[index + 1], layers.BatchNormalization)
        assert followed_by_bn == (bn == "pre" and _normalized(model, index)), layer.name
        if bn == "off" or not _normalized(model, index):
            assert layer.use_bias, layer.name  # nothing cancels it: always kept
        else:
            assert layer.use_bias == (bn == "post" and post_bn_bias), layer.name
    assert model.layers[-1].use_bias and model.layers[-1].activation.__name__ == "softmax"


def test_bn_uses_the_configured_momentum_and_epsilon():
    norms = [
        l for l in build_model(_spec(bn="post"), (28, 28, 1), 10).layers if isinstance(l, layers.BatchNormalization)
    ]
    assert len(norms) == 4  # after each conv; article 000 has none on Dense 128
    assert all(n.momentum == 0.9 and n.epsilon == 0.001 for n in norms)


def test_dropout_follows_pools_and_the_dense_block():
    kinds = _kinds(build_model(_spec(dropout=0.5), (32, 32, 3), 10))
    assert kinds.count("Dropout") == 3
    assert [kinds[i - 1] for i, k in enumerate(kinds) if k == "Dropout"] == [
        "MaxPooling2D",
        "MaxPooling2D",
        "Activation",
    ]


@pytest.mark.parametrize("bn", ["off", "pre", "post"])
def test_mlp_has_a_dropout_after_each_hidden_block(bn):
    model = build_model(_spec("mlp", bn=bn, dropout=0.5), (28, 28, 1), 10)
    kinds = _kinds(model)
    block_end = "BatchNormalization" if bn == "post" else "Activation"
    # Dense 300, 200, 100: each block ends at its activation (BN after it for "post"), then its Dropout
    assert [kinds[i - 1] for i, k in enumerate(kinds) if k == "Dropout"] == [block_end] * 3
    assert [kinds[i + 1] for i, k in enumerate(kinds) if k == "Dropout"] == ["Dense"] * 3
    assert [layer.rate for layer in model.layers if isinstance(layer, layers.Dropout)] == [0.5] * 3
    assert "Dropout" not in _kinds(build_model(_spec("mlp", bn=bn, dropout=0.0), (28, 28, 1), 10))


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


# Parameter counts worked out by hand from each article's own layer list, not read off the builder.
# A conv k x k from c to f channels has k*k*c*f kernel weights and f biases; a Dense n -> m has
# n*m and m; BN has four vectors per feature (gamma, beta, moving mean, moving variance).
def _seed_cnn_count(bn: str, bias_after: bool = True) -> int:
    # Article 000 on CIFAR-10 (32x32x3): convs 32, 32, pool, 64, 64, pool (8x8x64 = 4096), Dense 128, softmax.
    kernels = 3 * 3 * 3 * 32 + 3 * 3 * 32 * 32 + 3 * 3 * 32 * 64 + 3 * 3 * 64 * 64
    conv_biases = 32 + 32 + 64 + 64
    norms = 4 * (32 + 32 + 64 + 64)  # BN after the four convs only, never on Dense 128
    head = 4096 * 128 + 128 + 128 * 10 + 10
    return {
        "off": kernels + conv_biases + head,
        "pre": kernels + norms + head,
        "post": kernels + (conv_biases if bias_after else 0) + norms + head,
    }[bn]


def _strided_cnn_count(bn: str, bias_after: bool = True) -> int:
    # Article 001: 3x3 convs 30 (stride 2), 50, 60, unpadded: 32 -> 15 -> 13 -> 11, 11*11*60 = 7260 features;
    # Dense 3500, 700, softmax 10.
    kernels = 3 * 3 * 3 * 30 + 3 * 3 * 30 * 50 + 3 * 3 * 50 * 60 + 7260 * 3500 + 3500 * 700
    biases = 30 + 50 + 60 + 3500 + 700
    head = 700 * 10 + 10
    if bn == "off":
        return kernels + biases + head
    if bn == "pre":
        return kernels + 4 * (30 + 50 + 60 + 3500 + 700) + head
    # The author's notebook: BN at the input of every layer: the image (3 channels), after conv 30 and
    # conv 50 (per channel), after Flatten (per feature, 7260), after Dense 3500 and 700.
    return kernels + (biases if bias_after else 0) + 4 * (3 + 30 + 50 + 7260 + 3500 + 700) + head


def _mlp_count(bn: str, bias_after: bool = True) -> int:
    # Article 003 on Fashion-MNIST: 784 -> 300 -> 200 -> 100 -> softmax 10.
    if bn == "off":
        return 784 * 300 + 300 + 300 * 200 + 200 + 200 * 100 + 100 + 100 * 10 + 10
    if bn == "pre":  # the article's first model
        return 784 * 300 + 4 * 300 + 300 * 200 + 4 * 200 + 200 * 100 + 4 * 100 + 100 * 10 + 10
    biases = (300 + 200 + 100) if bias_after else 0  # the article's "Extra" model: use_bias=False here too
    return 784 * 300 + 300 * 200 + 200 * 100 + biases + 4 * (300 + 200 + 100) + 100 * 10 + 10


def _conv5_cnn_count(bn: str, bias_after: bool = True) -> int:
    # Article 004's block (conv 32 5x5 same, BN, ReLU, pool 2x2/2) three times: 32 -> 16 -> 8 -> 4,
    # 4*4*32 = 512 features, softmax 10. The article's conv keeps a bias BN cancels; "pre" drops it,
    # 3*32 = 96 weights fewer than the article's own count.
    kernels = 5 * 5 * 3 * 32 + 5 * 5 * 32 * 32 + 5 * 5 * 32 * 32
    biases = 3 * 32
    norms = 4 * 3 * 32
    head = 512 * 10 + 10
    return {
        "off": kernels + biases + head,
        "pre": kernels + norms + head,
        "post": kernels + (biases if bias_after else 0) + norms + head,
    }[bn]


# Each on its article's input (the registry's input_shape), 10 classes.
HAND_COUNTS = {
    "seed_cnn": _seed_cnn_count,
    "strided_cnn": _strided_cnn_count,
    "mlp": _mlp_count,
    "conv5_cnn": _conv5_cnn_count,
}


def test_every_registered_architecture_has_a_count_worked_out_by_hand_and_a_name_the_schema_takes():
    assert set(HAND_COUNTS) == set(ARCHITECTURES)
    assert set(typing.get_args(Architecture)) == set(ARCHITECTURES)
    assert {ARCHITECTURES[name].input_shape for name in ("seed_cnn", "strided_cnn", "conv5_cnn")} == {(32, 32, 3)}
    assert ARCHITECTURES["mlp"].input_shape == (28, 28, 1)


@pytest.mark.parametrize("architecture", sorted(ARCHITECTURES))
@pytest.mark.parametrize("bn", ["off", "pre", "post"])
@pytest.mark.parametrize("post_bn_bias", [True, False])
def test_parameter_count_of_every_registered_model_and_placement(architecture, bn, post_bn_bias):
    input_shape = ARCHITECTURES[architecture].input_shape
    model = build_model(_spec(architecture, bn=bn, post_bn_bias=post_bn_bias), input_shape, 10)
    assert model.count_params() == HAND_COUNTS[architecture](bn, post_bn_bias)


def test_hand_counts_agree_with_the_articles_totals():
    assert _seed_cnn_count("off") == 591_274  # article 000's model without BN
    assert _seed_cnn_count("post") == 591_274 + 4 * 192  # and with BN after the four convs
    # Article 003: its two BN models have the same count, pre and post both without bias.
    assert _mlp_count("pre") == _mlp_count("post", bias_after=False) == 318_610


def test_augmentation_adds_no_parameters():
    plain = build_model(_spec(), (32, 32, 3), 10)
    augmented = build_model(_spec(augmentation=ARTICLE_000_AUGMENTATION), (32, 32, 3), 10)
    assert augmented.count_params() == plain.count_params()


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


def test_a_kernel_initializer_replaces_every_article_choice():
    assert set(_initializers(build_model(_spec("seed_cnn", kernel_initializer="random_normal"), (32, 32, 3), 10))) == {
        "RandomNormal"
    }
    assert set(_initializers(build_model(_spec("conv5_cnn", kernel_initializer="he_normal"), (32, 32, 3), 10))) == {
        "HeNormal"
    }


def test_strided_cnn_post_is_the_authors_bn_at_the_input_of_every_layer():
    model = build_model(_spec("strided_cnn", bn="post"), (32, 32, 3), 10)
    bn, act = "BatchNormalization", "Activation"
    assert _kinds(model) == [
        bn, "Conv2D", act, bn, "Conv2D", act, bn, "Conv2D", act, "Flatten", bn,
        "Dense", act, bn, "Dense", act, bn, "Dense",
    ]  # fmt: skip
    norms = [l for l in model.layers if isinstance(l, layers.BatchNormalization)]
    assert [tuple(n.gamma.shape) for n in norms] == [(3,), (30,), (50,), (7260,), (3500,), (700,)]


def test_strided_cnn_pre_is_the_exact_pre_placement():
    kinds = _kinds(build_model(_spec("strided_cnn", bn="pre"), (32, 32, 3), 10))
    assert kinds[:3] == ["Conv2D", "BatchNormalization", "Activation"]
    assert kinds.count("BatchNormalization") == 5


@pytest.mark.parametrize("bn", ["off", "pre", "post"])
def test_conv5_cnn_is_article_004s_block_three_times(bn):
    model = build_model(_spec("conv5_cnn", bn=bn), (32, 32, 3), 10)
    block = [*EXPECTED_BLOCK[bn], "MaxPooling2D"]
    assert _kinds(model) == [*block, *block, *block, "Flatten", "Dense"]
    convs = [l for l in model.layers if isinstance(l, layers.Conv2D)]
    assert {(l.filters, l.kernel_size, l.padding, l.strides) for l in convs} == {(32, (5, 5), "same", (1, 1))}
    pools = [l for l in model.layers if isinstance(l, layers.MaxPooling2D)]
    assert {(l.pool_size, l.strides) for l in pools} == {((2, 2), (2, 2))}


# --- augmentation: article 000's ImageDataGenerator(shear_range=0.2, zoom_range=0.2, horizontal_flip=True)

ARTICLE_000_AUGMENTATION = Augmentation(horizontal_flip=True, shear_degrees=0.2, zoom=0.2)


def _images(n=16, side=32, channels=3):
    return np.random.default_rng(0).uniform(0, 1, (n, side, side, channels)).astype("float32")


def test_no_augmentation_layers_unless_asked():
    assert not any("Random" in kind for kind in _kinds(build_model(_spec(), (32, 32, 3), 10)))


def test_article_000_augmentation_in_keras_units():
    model = build_model(_spec(augmentation=ARTICLE_000_AUGMENTATION), (32, 32, 3), 10)
    shear, zoom, flip = model.layers[:3]
    assert isinstance(shear, layers.RandomShear) and isinstance(zoom, layers.RandomZoom)
    assert isinstance(flip, layers.RandomFlip) and flip.mode == "horizontal"
    # 0.2 DEGREES of vertical shear, as ImageDataGenerator's shear_range: sin(0.2 deg) = 0.00349.
    assert shear.y_factor == pytest.approx((-0.0034906, 0.0034906), abs=1e-7) and shear.x_factor == (0.0, 0.0)
    # Height and width zoom drawn apart in [0.8, 1.2]: both factors given (None would keep the aspect ratio).
    assert zoom.height_factor == zoom.width_factor == (-0.2, 0.2)
    assert shear.fill_mode == zoom.fill_mode == "nearest"


def test_shear_moves_rows_along_columns_as_image_data_generator_does():
    # ImageDataGenerator's shear matrix acts on (row, column): a vertical line stays vertical.
    image = np.zeros((1, 32, 32, 1), "float32")
    image[0, :, 16, 0] = 1.0
    sheared = augmentation_layers(Augmentation(shear_degrees=30.0), seed=0)[0](image, training=True)
    assert np.allclose(np.asarray(sheared), image, atol=1e-5)
    flat = np.zeros((1, 32, 32, 1), "float32")
    flat[0, 16, :, 0] = 1.0  # a horizontal line tilts
    assert not np.allclose(np.asarray(augmentation_layers(Augmentation(shear_degrees=30.0), seed=0)[0](flat)), flat)


def _augment(augmentation, seed, images, training):
    out = images
    for layer in augmentation_layers(augmentation, seed):
        out = layer(out, training=training)
    return np.asarray(out)


def test_augmentation_changes_training_batches_only():
    images = _images()
    assert not np.allclose(_augment(ARTICLE_000_AUGMENTATION, 0, images, training=True), images)
    assert np.array_equal(_augment(ARTICLE_000_AUGMENTATION, 0, images, training=False), images)


def test_augmentation_is_seeded_by_the_cell_seed():
    images = _images()
    a, b, c = (_augment(ARTICLE_000_AUGMENTATION, seed, images, training=True) for seed in (3, 3, 4))
    assert np.array_equal(a, b) and not np.allclose(a, c)


def test_flip_flips_about_half_of_the_images_horizontally():
    images = _images(n=64)
    flipped = _augment(Augmentation(horizontal_flip=True), 0, images, training=True)
    mirrored = [np.array_equal(f, i[:, ::-1]) for f, i in zip(flipped, images, strict=True)]
    kept = [np.array_equal(f, i) for f, i in zip(flipped, images, strict=True)]
    assert all(m or k for m, k in zip(mirrored, kept, strict=True)) and 16 < sum(mirrored) < 48


def test_inference_is_unaffected_by_augmentation():
    images = _images(n=8)
    model = build_model(_spec(bn="post", augmentation=ARTICLE_000_AUGMENTATION), (32, 32, 3), 10)
    without = keras.Sequential(model.layers[3:])  # the same layers, weights shared, no augmentation
    assert np.allclose(model.predict(images, verbose=0), without.predict(images, verbose=0), atol=1e-6)
    assert np.allclose(np.asarray(model(images, training=False)), without.predict(images, verbose=0), atol=1e-6)


def test_the_cells_settings_reach_the_model():
    from pipeline.study.axes import apply_axes
    from pipeline.study.params import load_params
    from tests.helpers import REPO

    params = load_params(REPO / "params.yaml")
    axes = {"dataset": "cifar10", "activation": "relu", "bn": "post", "dropout": 0.0, "seed": 7}
    settings = apply_axes(
        params.train.model_copy(update={"post_bn_bias": False, "kernel_initializer": "he_normal"}), axes
    )
    spec = model_spec(settings)
    assert (spec.post_bn_bias, spec.kernel_initializer, spec.seed, spec.bn) == (False, "he_normal", 7, "post")
    assert spec.augmentation == Augmentation()


def test_layers_are_named_by_kind_and_position():
    # Per-layer measurements (gradient norms) are columns named after layers: the same in every process.
    spec = ModelSpec("seed_cnn", "relu", "pre", 0.5, 0.99, 0.001)
    names = [layer.name for layer in build_model(spec, (28, 28, 1), 10).layers]
    assert names[:4] == ["conv1", "bn1", "act1", "conv2"]
    assert "dense1" in names and "dropout3" in names and names[-1] == "output"
    assert names == [layer.name for layer in build_model(spec, (28, 28, 1), 10).layers]
    kernels = [layer.kernel.path for layer in build_model(spec, (28, 28, 1), 10).layers if hasattr(layer, "kernel")]
    assert kernels[0].endswith("conv1/kernel") and kernels[-1].endswith("output/kernel")
