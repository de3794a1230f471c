"""Which accelerator the Keras backend sees, the BNBENCH_DEVICE check, and whether other cells share it.

Keras is imported where it is used: the runner reads SHARED_ENV's name before any framework starts.
"""

from __future__ import annotations

import contextlib
import os
import platform
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

from pipeline.errors import UserError

DEVICE_ENV = "BNBENCH_DEVICE"  # auto (default: whatever is there) or gpu (fail without one)
# Set by the runner (pipeline/runner/): "true" where its slots let other cells train on the same device at
# the same time (k slots on one GPU, or on the CPU), "false" where each cell has its device to itself.
SHARED_ENV = "BNBENCH_DEVICE_SHARED"
NVIDIA_DRIVER = Path("/proc/driver/nvidia/version")  # there where the NVIDIA kernel driver is loaded
CUINIT_FAILED = b"failed call to cuInit"  # TensorFlow's CUDA probe, where no driver answers it


@contextlib.contextmanager
def _stderr_without(needle: bytes) -> Iterator[None]:
    """Hold what this process writes to stderr (file descriptor 2, as C++ code writes) while the block runs,
    then write it back, less the lines holding `needle`."""
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as held:
        os.dup2(held.fileno(), 2)
        try:
            yield
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            held.seek(0)
            os.write(2, b"".join(line for line in held.read().splitlines(keepends=True) if needle not in line))


def tensorflow_gpus() -> list:
    """TensorFlow's physical GPUs; on a machine without an NVIDIA driver, asked without the cuInit error line.

    TensorFlow's Linux wheel carries CUDA, so its first device query calls cuInit, which fails where no
    NVIDIA driver is loaded and logs "failed call to cuInit: INTERNAL: CUDA error" at ERROR level on every
    CPU cell: an error that is none. TF_CPP_MIN_LOG_LEVEL cannot quiet the probe alone (TensorFlow reads it
    once, at import, and it would hide every later error too), and CUDA_VISIBLE_DEVICES does not stop the
    call. So only this probe's output is held, and only that line dropped, and only without a driver:
    where one is loaded, a failed cuInit is a real fault and shows.
    """
    import tensorflow as tf

    if NVIDIA_DRIVER.exists():
        return tf.config.list_physical_devices("GPU")
    with _stderr_without(CUINIT_FAILED):
        return tf.config.list_physical_devices("GPU")


def visible_gpus() -> list[str]:
    import keras

    backend = keras.config.backend()
    if backend == "tensorflow":
        return [gpu.name for gpu in tensorflow_gpus()]
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
