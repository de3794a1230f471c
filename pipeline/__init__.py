"""bnbench: a reproducible benchmark of batch normalization, activations and dropout."""

import os

# Keep TensorFlow's C++ start-up chatter (CUDA probing, CPU flags) out of every stage's log.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

# KERAS_BACKEND=jax without JAX installed: one line, not a traceback from every stage's first import.
if os.environ.get("KERAS_BACKEND") == "jax":
    import importlib.util

    if importlib.util.find_spec("jax") is None:
        raise SystemExit(
            "bnbench: KERAS_BACKEND=jax but JAX is not installed: `uv sync --extra jax` (or unset KERAS_BACKEND)"
        )
