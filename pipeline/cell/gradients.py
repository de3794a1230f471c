"""Per-layer gradient norms on a fixed probe batch, without side effects on the model.

The gradient of the mean sparse categorical cross-entropy (the training loss) with
respect to each layer's kernel, in training mode (batch statistics in BN, dropout
on), through `model.stateless_call`: BN's moving statistics, the dropout seed and
the weights stay as they were. The gradient and the norms run as one compiled
program per model (`backend.compiled`); op by op, a probe cost about as much as the
training between two evaluations. Keras has no backend-neutral gradient, so the
one backend-specific line lives here: TensorFlow via `tf.GradientTape`, JAX via
`jax.grad`.
"""

from __future__ import annotations

import keras
import numpy as np

from pipeline.cell import backend


def _loss(model: keras.Model, trainable: list, non_trainable: list, images, labels):
    probs, _ = model.stateless_call(trainable, non_trainable, images, training=True)
    return keras.ops.mean(keras.losses.sparse_categorical_crossentropy(labels, probs))


def _gradients(model: keras.Model, trainable: list, non_trainable: list, images, labels) -> list:
    if backend.name() == "jax":
        import jax

        return jax.grad(lambda t: _loss(model, t, non_trainable, images, labels))(trainable)
    import tensorflow as tf

    with tf.GradientTape() as tape:
        tape.watch(trainable)
        loss = _loss(model, trainable, non_trainable, images, labels)
    return tape.gradient(loss, trainable)


class GradientNorms:
    """d loss / d kernel of every layer with a trainable kernel of one model, as L2 norms."""

    def __init__(self, model: keras.Model):
        self.model = model
        position = {id(v): i for i, v in enumerate(model.trainable_variables)}
        kernels = [(layer.name, getattr(layer, "kernel", None)) for layer in model.layers]
        self._kernels = [(name, position[id(k)]) for name, k in kernels if k is not None and id(k) in position]
        self._norms = backend.compiled(self._compute)

    def _compute(self, trainable: list, non_trainable: list, images, labels):
        grads = _gradients(self.model, trainable, non_trainable, images, labels)
        return keras.ops.stack([keras.ops.norm(keras.ops.reshape(grads[i], (-1,))) for _, i in self._kernels])

    def __call__(self, images: np.ndarray, labels: np.ndarray) -> dict[str, float]:
        """{layer name: norm}, in layer order; one read from the device."""
        values = self._norms(
            [v.value for v in self.model.trainable_variables],
            [v.value for v in self.model.non_trainable_variables],
            images,
            labels,
        )
        return {
            name: float(norm) for (name, _), norm in zip(self._kernels, keras.ops.convert_to_numpy(values), strict=True)
        }
