"""Per-layer gradient norms on a fixed probe batch, without side effects on the model.

The gradient of the mean sparse categorical cross-entropy (the training loss) with
respect to each layer's kernel, in training mode (batch statistics in BN, dropout
on), through `model.stateless_call`: BN's moving statistics, the dropout seed and
the weights stay as they were. Keras has no backend-neutral gradient, so the one
backend-specific line lives here: TensorFlow via `tf.GradientTape`, JAX via
`jax.grad`.
"""

from __future__ import annotations

import weakref

import keras
import numpy as np


def _loss(model: keras.Model, trainable: list, non_trainable: list, images, labels):
    probs, _ = model.stateless_call(trainable, non_trainable, images, training=True)
    return keras.ops.mean(keras.losses.sparse_categorical_crossentropy(labels, probs))


def _gradients(model: keras.Model, images: np.ndarray, labels: np.ndarray) -> list:
    trainable = [v.value for v in model.trainable_variables]
    non_trainable = [v.value for v in model.non_trainable_variables]
    backend = keras.config.backend()
    if backend == "tensorflow":
        import tensorflow as tf

        with tf.GradientTape() as tape:
            tape.watch(trainable)
            loss = _loss(model, trainable, non_trainable, images, labels)
        return tape.gradient(loss, trainable)
    if backend == "jax":
        return _jax_gradient(model)(trainable, non_trainable, images, labels)
    raise NotImplementedError(f"gradient norms on the {backend} backend (tensorflow and jax are supported)")


_JAX_GRADIENTS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def _jax_gradient(model: keras.Model):
    """d loss / d trainable variables of `model`, compiled once per model (op by op, JAX takes seconds per probe)."""
    if model not in _JAX_GRADIENTS:
        import jax

        _JAX_GRADIENTS[model] = jax.jit(jax.grad(lambda t, n, x, y: _loss(model, t, n, x, y)))
    return _JAX_GRADIENTS[model]


def kernel_gradient_norms(model: keras.Model, images: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    """{layer name: L2 norm of d loss / d kernel} for every layer with a kernel, in layer order."""
    position = {id(v): i for i, v in enumerate(model.trainable_variables)}
    grads = _gradients(model, images, labels)
    return {
        layer.name: float(
            keras.ops.convert_to_numpy(keras.ops.norm(keras.ops.reshape(grads[position[id(layer.kernel)]], (-1,))))
        )
        for layer in model.layers
        if getattr(layer, "kernel", None) is not None and id(layer.kernel) in position
    }
