"""The one place that seeds: Python, NumPy and the Keras backend.

Whether the backend's kernels are deterministic is the backend's business: pipeline/cell/backend.py.
"""

from __future__ import annotations

import keras


def seed_everything(seed: int) -> None:
    keras.utils.set_random_seed(seed)
