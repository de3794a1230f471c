"""Measurements taken at an evaluation that must not change the model: gradient norms and re-estimated BN statistics."""

from __future__ import annotations

import keras
import numpy as np
import pytest
from keras import layers

from pipeline.cell import training
from pipeline.cell.gradients import GradientNorms
from pipeline.cell.models import ModelSpec, build_model
from pipeline.cell.precise_bn import PreciseBN
from tests.integration.test_train_cell import _settings, data  # noqa: F401  (the module's data fixture)

MLP_BN = {"dataset": "fashion_mnist", "activation": "relu", "bn": "pre", "dropout": 0.0, "seed": 0}


def _snapshot(model: keras.Model) -> list[np.ndarray]:
    return [keras.ops.convert_to_numpy(v) for v in model.variables]


def test_gradient_norms_leave_the_model_alone_and_match_a_direct_computation(data):  # noqa: F811
    keras.utils.set_random_seed(0)
    images, labels = data.train.images[:64], data.train.labels[:64]
    model = build_model(ModelSpec("mlp", "relu", "pre", 0.5, 0.99, 0.001), data.input_shape, data.num_classes)
    before = _snapshot(model)
    norms = GradientNorms(model)(images, labels)
    assert list(norms) == ["dense1", "dense2", "dense3", "output"] and all(n > 0 for n in norms.values())
    # BN's moving statistics, the weights and the dropout seed are as they were: the same norms again
    assert all(np.array_equal(a, b) for a, b in zip(before, _snapshot(model), strict=True))
    assert GradientNorms(model)(images, labels) == norms

    plain = build_model(ModelSpec("mlp", "relu", "off", 0.0, 0.99, 0.001), data.input_shape, data.num_classes)
    expected = [float(np.linalg.norm(g)) for g in _kernel_gradients_op_by_op(plain, images, labels)]
    assert list(GradientNorms(plain)(images, labels).values()) == pytest.approx(expected, rel=1e-5)


def _kernel_gradients_op_by_op(
    model: keras.Model, images: np.ndarray, labels: np.ndarray, training: bool = True
) -> list[np.ndarray]:
    """d loss / d kernel, the textbook way on each backend, uncompiled; in training mode, for a model without dropout.

    BN in the mode `training` says: the batch's statistics, or its moving ones. On TensorFlow, training mode also
    moves BN's moving statistics (a side effect the probe must not have): call it after the probe.
    """
    kernels = [layer.kernel for layer in model.layers if hasattr(layer, "kernel")]
    if keras.config.backend() == "jax":
        import jax

        def loss(values):
            mapping = list(zip(kernels, values, strict=True))
            with keras.StatelessScope(state_mapping=mapping):
                probs = model(images, training=training)
            return keras.ops.mean(keras.losses.sparse_categorical_crossentropy(labels, probs))

        with jax.disable_jit():
            return [np.asarray(g) for g in jax.grad(loss)([k.value for k in kernels])]
    import tensorflow as tf

    with tf.GradientTape() as tape:
        loss = keras.ops.mean(keras.losses.sparse_categorical_crossentropy(labels, model(images, training=training)))
    return [g.numpy() for g in tape.gradient(loss, kernels)]


def _norms(gradients: list[np.ndarray]) -> list[float]:
    return [float(np.linalg.norm(g)) for g in gradients]


def test_gradient_norms_are_taken_in_training_mode_as_training_sees_them(data):  # noqa: F811
    keras.utils.set_random_seed(0)
    images, labels = data.train.images[:64], data.train.labels[:64]
    # BN, no dropout: the norms are those of the batch's statistics, computed the textbook way, not the moving ones
    # (at their start, mean 0 and variance 1: far from the statistics of a Dense layer's outputs on this batch)
    bn = build_model(ModelSpec("mlp", "relu", "pre", 0.0, 0.99, 0.001), data.input_shape, data.num_classes)
    norms = list(GradientNorms(bn)(images, labels).values())
    inference = _norms(_kernel_gradients_op_by_op(bn, images, labels, training=False))
    training_mode = _norms(_kernel_gradients_op_by_op(bn, images, labels, training=True))
    assert norms == pytest.approx(training_mode, rel=1e-4)
    assert norms != pytest.approx(inference, rel=1e-2)  # the two modes differ on this model: the check means something

    # Dropout, no BN: the norms are not inference mode's (no unit dropped), and they follow the dropout seed's
    # state, which draws the masks: another state, other masks, other norms; the same state, the same norms
    dropout = build_model(ModelSpec("mlp", "relu", "off", 0.5, 0.99, 0.001), data.input_shape, data.num_classes)
    probe = GradientNorms(dropout)
    norms = list(probe(images, labels).values())
    assert norms != pytest.approx(_norms(_kernel_gradients_op_by_op(dropout, images, labels, training=False)), rel=1e-2)
    state = dropout.get_layer("dropout1").seed_generator.state
    before = keras.ops.convert_to_numpy(state)
    state.assign(before + np.array([0, 1], dtype=before.dtype))
    assert list(probe(images, labels).values()) != pytest.approx(norms, rel=1e-2)
    state.assign(before)
    assert list(probe(images, labels).values()) == norms


def test_recomputed_bn_statistics_ignore_wrong_moving_averages(data):  # noqa: F811
    model = training.train_cell(_settings(MLP_BN, architecture="mlp", epochs=3), data).model
    val, sample = data.val, data.train.images[:256]
    precise = PreciseBN(model)
    stats = precise.statistics(sample)
    assert list(stats) == ["bn1", "bn2", "bn3"]
    # bn1's statistics are those of its inputs over the sample: the first Dense layer's outputs, no bias
    dense1 = keras.ops.convert_to_numpy(model.get_layer("dense1")(model.get_layer("flatten1")(sample)))
    assert keras.ops.convert_to_numpy(stats["bn1"][0]) == pytest.approx(np.mean(dense1, axis=0), abs=1e-4)
    assert keras.ops.convert_to_numpy(stats["bn1"][1]) == pytest.approx(np.var(dense1, axis=0), rel=1e-3, abs=1e-5)

    # bn2's are those of its inputs with bn1 already re-estimated (not with bn1's moving averages)
    bn1 = model.get_layer("bn1")
    mean1, var1 = np.mean(dense1, axis=0), np.var(dense1, axis=0)
    gamma, beta = keras.ops.convert_to_numpy(bn1.gamma), keras.ops.convert_to_numpy(bn1.beta)
    hidden = np.maximum((np.asarray(dense1) - mean1) / np.sqrt(var1 + bn1.epsilon) * gamma + beta, 0.0)
    dense2 = keras.ops.convert_to_numpy(model.get_layer("dense2")(hidden))
    assert keras.ops.convert_to_numpy(stats["bn2"][0]) == pytest.approx(np.mean(dense2, axis=0), rel=1e-3, abs=1e-4)

    def predictions() -> tuple[np.ndarray, np.ndarray]:
        moving = np.argmax(model.predict(val.images, verbose=0), axis=1)
        probs = precise.predict(sample, val.images, 64)  # the compiled program reads the model's current state
        return moving, np.argmax(probs, axis=1)

    moving, recomputed = predictions()
    assert len(set(recomputed)) > 1  # a model that tells images apart: the comparison below means something
    bn3 = model.get_layer("bn3")
    wrong = keras.ops.convert_to_numpy(bn3.moving_variance) * 0 + 1e12
    # Moving statistics wrong by construction: with that variance bn3 outputs its shift whatever the image,
    # so the moving-statistics evaluation predicts one class for every image.
    bn3.moving_variance.assign(wrong)
    moving_after, recomputed_after = predictions()
    assert len(set(moving_after)) == 1
    moving_accuracy = training.evaluate(model, val.images, val.labels)[1]
    assert moving_accuracy == pytest.approx(np.mean(val.labels == moving_after[0]))  # one class's share
    assert np.array_equal(recomputed_after, recomputed)  # the re-estimated evaluation is unaffected
    assert np.array_equal(keras.ops.convert_to_numpy(bn3.moving_variance), wrong)  # and left the model as it was
    assert isinstance(bn3, layers.BatchNormalization)


def test_compiled_probes_read_the_weights_of_the_moment_not_those_of_their_first_call(data):  # noqa: F811
    """jax.jit bakes an array a function captures into its program: the probes must take the weights as arguments."""
    keras.utils.set_random_seed(0)
    images, labels = data.train.images[:64], data.train.labels[:64]
    model = build_model(ModelSpec("mlp", "relu", "pre", 0.0, 0.99, 0.001), data.input_shape, data.num_classes)
    gradients, precise = GradientNorms(model), PreciseBN(model)
    before = gradients(images, labels), precise.statistics(images), precise.predict(images, data.val.images, 64)
    kernel = model.get_layer("dense1").kernel
    kernel.assign(kernel * 2.0)  # the compiled programs exist now; a later call must see this
    after = gradients(images, labels), precise.statistics(images), precise.predict(images, data.val.images, 64)
    assert after[0] != before[0]
    assert not np.allclose(after[1]["bn1"][0], before[1]["bn1"][0])
    assert not np.allclose(after[2], before[2])
    # and what a fresh probe, compiled after the change, measures
    fresh = PreciseBN(model)
    assert after[0] == pytest.approx(GradientNorms(model)(images, labels), rel=1e-6)
    assert after[1]["bn1"][0] == pytest.approx(fresh.statistics(images)["bn1"][0], rel=1e-5, abs=1e-6)
    assert after[2] == pytest.approx(fresh.predict(images, data.val.images, 64), rel=1e-5, abs=1e-6)
