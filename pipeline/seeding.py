"""The one place that seeds: Python, NumPy and the Keras backend, deterministically."""

from __future__ import annotations

import keras


def seed_everything(seed: int) -> None:
    keras.utils.set_random_seed(seed)
    if keras.config.backend() == "tensorflow":
        import tensorflow as tf

        # Deterministic kernels: the same seed gives the same curve on the same machine.
        tf.config.experimental.enable_op_determinism()
