"""The optimizers a study may name, and how each is built from its settings."""

from __future__ import annotations

from collections.abc import Callable

import keras

from pipeline.errors import UserError
from pipeline.params import OptimizerParams

OPTIMIZERS: dict[str, Callable[[OptimizerParams], keras.optimizers.Optimizer]] = {
    "sgd": lambda s: keras.optimizers.SGD(s.learning_rate, momentum=s.momentum, nesterov=s.nesterov),
    "rmsprop": lambda s: keras.optimizers.RMSprop(s.learning_rate, momentum=s.momentum),
    "adam": lambda s: keras.optimizers.Adam(s.learning_rate),
}


def build_optimizer(settings: OptimizerParams) -> keras.optimizers.Optimizer:
    """A fresh optimizer; an unknown name is an error, never a silent default."""
    try:
        make = OPTIMIZERS[settings.name]
    except KeyError:
        raise UserError(f"unknown optimizer {settings.name!r}; known: {', '.join(sorted(OPTIMIZERS))}") from None
    return make(settings)
