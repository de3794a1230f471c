"""Which accelerator the Keras backend sees, and the BNBENCH_DEVICE check."""

from __future__ import annotations

import os
import platform

import keras

from pipeline.errors import UserError

DEVICE_ENV = "BNBENCH_DEVICE"  # auto (default: whatever is there) or gpu (fail without one)


def visible_gpus() -> list[str]:
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
