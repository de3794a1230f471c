"""Validation accuracy with BatchNormalization's statistics re-estimated ("precise BN").

BN's moving averages lag the weights early in training (momentum 0.99 over a few
dozen steps), so an evaluation with them partly measures the momentum setting. Here
the population statistics are recomputed from a fixed sample of training images,
layer by layer through the Sequential model: each BN layer's mean and (biased)
variance are those of its inputs over the whole sample, with every earlier BN layer
already using its recomputed statistics and every other layer in inference mode
(dropout off). The model is not modified: the recomputed statistics are applied by
hand (gamma * (x - mean) / sqrt(var + epsilon) + beta), never assigned.
"""

from __future__ import annotations

import keras
import numpy as np
from keras import layers, ops


def has_batch_norm(model: keras.Model) -> bool:
    return any(isinstance(layer, layers.BatchNormalization) for layer in model.layers)


def _normalize(layer: layers.BatchNormalization, x, mean, variance):
    y = (x - mean) / ops.sqrt(variance + layer.epsilon)
    if layer.scale:
        y = y * layer.gamma
    if layer.center:
        y = y + layer.beta
    return y


def population_statistics(model: keras.Model, images: np.ndarray) -> dict[str, tuple]:
    """{BN layer name: (mean, variance)} of its inputs over `images`, earlier BN layers re-estimated too."""
    stats: dict[str, tuple] = {}
    x = ops.convert_to_tensor(images)
    for layer in model.layers:
        if isinstance(layer, layers.BatchNormalization):
            axes = list(range(len(x.shape) - 1))  # every axis but the channels (Keras' axis=-1)
            mean, variance = ops.mean(x, axis=axes), ops.var(x, axis=axes)
            stats[layer.name] = (mean, variance)
            x = _normalize(layer, x, mean, variance)
        else:
            x = layer(x, training=False)
    return stats


def predict_with_statistics(
    model: keras.Model, images: np.ndarray, stats: dict[str, tuple], batch_size: int
) -> np.ndarray:
    """The model's outputs in inference mode, each BN layer using `stats` instead of its moving averages."""
    out = []
    for start in range(0, len(images), batch_size):
        x = ops.convert_to_tensor(images[start : start + batch_size])
        for layer in model.layers:
            x = _normalize(layer, x, *stats[layer.name]) if layer.name in stats else layer(x, training=False)
        out.append(ops.convert_to_numpy(x))
    return np.concatenate(out)
