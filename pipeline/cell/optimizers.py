"""The optimizers a study may name, and how each is built from its settings."""

from __future__ import annotations

from collections.abc import Callable

import keras

from pipeline.errors import UserError
from pipeline.study.schema import OptimizerParams


def learning_rate(settings: OptimizerParams) -> float | keras.optimizers.schedules.LearningRateSchedule:
    """The rate, or with `decay` the legacy Keras schedule: learning_rate / (1 + decay * step).

    Keras 2's `decay` argument (article 003: SGD(lr=0.01, decay=1e-6)) divided the rate by
    1 + decay * iterations before each update; Keras 3 dropped the argument, and
    InverseTimeDecay with decay_steps=1 is the same formula (staircase off).
    """
    if settings.decay == 0:
        return settings.learning_rate
    return keras.optimizers.schedules.InverseTimeDecay(settings.learning_rate, decay_steps=1, decay_rate=settings.decay)


OPTIMIZERS: dict[str, Callable[[OptimizerParams], keras.optimizers.Optimizer]] = {
    "sgd": lambda s: keras.optimizers.SGD(learning_rate(s), momentum=s.momentum, nesterov=s.nesterov),
    "rmsprop": lambda s: keras.optimizers.RMSprop(learning_rate(s), momentum=s.momentum),
    "adam": lambda s: keras.optimizers.Adam(learning_rate(s)),
}


def build_optimizer(settings: OptimizerParams) -> keras.optimizers.Optimizer:
    """A fresh optimizer; an unknown name is an error, never a silent default."""
    try:
        make = OPTIMIZERS[settings.name]
    except KeyError:
        raise UserError(f"unknown optimizer {settings.name!r}; known: {', '.join(sorted(OPTIMIZERS))}") from None
    return make(settings)
