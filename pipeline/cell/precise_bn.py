"""Validation accuracy with BatchNormalization's statistics re-estimated ("precise BN").

BN's moving averages lag the weights early in training (momentum 0.99 over a few
dozen steps), so an evaluation with them partly measures the momentum setting. Here
the population statistics are recomputed from a fixed sample of training images,
layer by layer through the Sequential model: each BN layer's mean and (biased)
variance are those of its inputs over the whole sample, with every earlier BN layer
already using its recomputed statistics and every other layer in inference mode
(dropout off). The model is not modified: the predictions with the recomputed
statistics are an inference-mode `stateless_call` whose BN moving averages are
replaced by them (BN in inference computes gamma * (x - mean) / sqrt(var + epsilon)
+ beta from exactly those two variables), never assigned.

Both steps run as compiled programs, built once per model (`backend.compiled`):
the statistics of the sample in one, each batch of predictions in another.
"""

from __future__ import annotations

import keras
import numpy as np
from keras import layers, ops

from pipeline.cell import backend


def has_batch_norm(model: keras.Model) -> bool:
    return any(isinstance(layer, layers.BatchNormalization) for layer in model.layers)


def _normalize(layer: layers.BatchNormalization, x, mean, variance):
    y = (x - mean) / ops.sqrt(variance + layer.epsilon)
    if layer.scale:
        y = y * layer.gamma
    if layer.center:
        y = y + layer.beta
    return y


class PreciseBN:
    """One model's BN statistics re-estimated on a sample, and its predictions with them."""

    def __init__(self, model: keras.Model):
        self.model = model
        self.bn_layers = [layer for layer in model.layers if isinstance(layer, layers.BatchNormalization)]
        position = {id(v): i for i, v in enumerate(model.non_trainable_variables)}
        # where each BN layer's moving mean and variance sit among the model's non-trainable variables
        self._moving = [(position[id(bn.moving_mean)], position[id(bn.moving_variance)]) for bn in self.bn_layers]
        self._statistics = backend.compiled(self._population_statistics)
        self._predict = backend.compiled(self._predict_batch)

    def _population_statistics(self, trainable: list, non_trainable: list, images) -> list:
        """[(mean, variance)] of each BN layer's inputs over `images`, earlier BN layers re-estimated too."""
        variables = [*self.model.trainable_variables, *self.model.non_trainable_variables]
        stats = []
        with keras.StatelessScope(state_mapping=list(zip(variables, [*trainable, *non_trainable], strict=True))):
            x = images
            for layer in self.model.layers:
                if isinstance(layer, layers.BatchNormalization):
                    axes = list(range(len(x.shape) - 1))  # every axis but the channels (Keras' axis=-1)
                    mean, variance = ops.mean(x, axis=axes), ops.var(x, axis=axes)
                    stats.append((mean, variance))
                    x = _normalize(layer, x, mean, variance)
                else:
                    x = layer(x, training=False)
        return stats

    def _predict_batch(self, trainable: list, non_trainable: list, stats: list, images):
        replaced = list(non_trainable)
        for (mean_at, variance_at), (mean, variance) in zip(self._moving, stats, strict=True):
            replaced[mean_at], replaced[variance_at] = mean, variance
        probs, _ = self.model.stateless_call(trainable, replaced, images, training=False)
        return probs

    def _values(self) -> tuple[list, list]:
        return [v.value for v in self.model.trainable_variables], [v.value for v in self.model.non_trainable_variables]

    def statistics(self, sample: np.ndarray) -> dict[str, tuple[np.ndarray, np.ndarray]]:
        """{BN layer name: (mean, variance)} of its inputs over `sample`."""
        stats = self._statistics(*self._values(), sample)
        return {
            bn.name: (ops.convert_to_numpy(mean), ops.convert_to_numpy(variance))
            for bn, (mean, variance) in zip(self.bn_layers, stats, strict=True)
        }

    def predict(self, sample: np.ndarray, images: np.ndarray, batch_size: int) -> np.ndarray:
        """The model's outputs on `images` in inference mode, BN using the statistics of `sample`."""
        trainable, non_trainable = self._values()
        stats = self._statistics(trainable, non_trainable, sample)
        out = [
            ops.convert_to_numpy(self._predict(trainable, non_trainable, stats, images[start : start + batch_size]))
            for start in range(0, len(images), batch_size)
        ]
        return np.concatenate(out)
