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


class Keras2RMSprop(keras.optimizers.Optimizer):
    """RMSprop as standalone Keras 2.2 computed it (article 000 imports `keras`, not `tf.keras`).

    a <- rho * a + (1 - rho) * g^2;  p <- p - lr * g / (sqrt(a) + epsilon), epsilon 1e-7, a from zeros.
    Keras 3's RMSprop divides by sqrt(a + epsilon) instead: a floor of about 3e-4 under the denominator,
    which damps the steps of weights whose gradients are tiny (a sigmoid net without BN). No momentum.
    """

    def __init__(self, learning_rate=0.001, rho: float = 0.9, epsilon: float = 1e-7, name="keras2_rmsprop", **kwargs):
        super().__init__(learning_rate=learning_rate, name=name, **kwargs)
        self.rho = rho
        self.epsilon = epsilon

    def build(self, var_list):
        if self.built:
            return
        super().build(var_list)
        self._accumulators = [self.add_variable_from_reference(v, "accumulator") for v in var_list]

    def update_step(self, gradient, variable, learning_rate):
        lr = keras.ops.cast(learning_rate, variable.dtype)
        gradient = keras.ops.cast(gradient, variable.dtype)
        accumulator = self._accumulators[self._get_variable_index(variable)]
        self.assign(accumulator, self.rho * accumulator + (1 - self.rho) * keras.ops.square(gradient))
        self.assign_sub(variable, lr * gradient / (keras.ops.sqrt(accumulator) + self.epsilon))

    def get_config(self):
        return {**super().get_config(), "rho": self.rho, "epsilon": self.epsilon}


def rmsprop(settings: OptimizerParams) -> keras.optimizers.Optimizer:
    """Keras 3's RMSprop, or with `epsilon_placement: after_sqrt` the one standalone Keras 2.2 computed."""
    if settings.epsilon_placement == "after_sqrt":
        return Keras2RMSprop(learning_rate(settings))
    return keras.optimizers.RMSprop(learning_rate(settings), momentum=settings.momentum)


OPTIMIZERS: dict[str, Callable[[OptimizerParams], keras.optimizers.Optimizer]] = {
    "sgd": lambda s: keras.optimizers.SGD(learning_rate(s), momentum=s.momentum, nesterov=s.nesterov),
    "rmsprop": rmsprop,
    "adam": lambda s: keras.optimizers.Adam(learning_rate(s)),
}


def build_optimizer(settings: OptimizerParams) -> keras.optimizers.Optimizer:
    """A fresh optimizer; an unknown name is an error, never a silent default."""
    try:
        make = OPTIMIZERS[settings.name]
    except KeyError:
        raise UserError(f"unknown optimizer {settings.name!r}; known: {', '.join(sorted(OPTIMIZERS))}") from None
    return make(settings)
