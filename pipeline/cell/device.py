"""Which accelerator the Keras backend sees, the BNBENCH_DEVICE check, and whether other cells share it.

Keras is imported where it is used: the runner reads SHARED_ENV's name before any framework starts.
"""

from __future__ import annotations

import os
import platform

from pipeline.errors import UserError

DEVICE_ENV = "BNBENCH_DEVICE"  # auto (default: whatever is there) or gpu (fail without one)
# Set by the runner (pipeline/runner/): "true" where its slots let other cells train on the same device at
# the same time (k slots on one GPU, or on the CPU), "false" where each cell has its device to itself.
SHARED_ENV = "BNBENCH_DEVICE_SHARED"


def visible_gpus() -> list[str]:
    import keras

    backend = keras.config.backend()
    if backend == "tensorflow":
        import tensorflow as tf

        return [gpu.name for gpu in tf.config.list_physical_devices("GPU")]
    if backend == "jax":
        import jax

        return [str(d) for d in jax.devices() if d.platform == "gpu"]
    if backend == "torch":
        import torch

        return [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
    return []


def check_device() -> str:
    """Describe the device training will use; fail clearly if a GPU is required and absent."""
    import keras

    wanted = os.environ.get(DEVICE_ENV, "auto")
    if wanted not in ("auto", "gpu"):
        raise UserError(f"{DEVICE_ENV}={wanted!r}: use auto or gpu")
    gpus = visible_gpus()
    if wanted == "gpu" and not gpus:
        raise UserError(
            f"{DEVICE_ENV}=gpu but the {keras.config.backend()} backend sees no GPU. In a container, "
            "run it with `--gpus all` (NVIDIA container toolkit); or unset BNBENCH_DEVICE to train on the CPU."
        )
    if gpus:
        return f"{keras.config.backend()}: {', '.join(gpus)}"
    return f"{keras.config.backend()}: cpu ({platform.processor() or platform.machine()}, {os.cpu_count()} cores)"


def device_shared() -> bool:
    """Whether other cells may train on this cell's device while it trains; a `dvc repro` stage trains alone."""
    value = os.environ.get(SHARED_ENV, "false")
    if value not in ("true", "false"):
        raise UserError(f"{SHARED_ENV}={value!r}: the runner sets it to true or false; unset it to train alone")
    return value == "true"
