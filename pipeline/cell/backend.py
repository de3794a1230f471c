"""The Keras backend a cell trains on (KERAS_BACKEND: tensorflow or jax), and what determinism and compiling mean there.

`train.deterministic` (default true) asks for the same numbers from the same seed, run after run:
- TensorFlow: op determinism (`enable_op_determinism`: deterministic kernels, an error for an op that
  has none) and no XLA, whose MaxPool gradient is not deterministic on GPU; false: no op determinism,
  and the training step compiled with XLA.
- JAX: every step is compiled with XLA anyway (op by op, JAX is several times slower). On a GPU,
  XLA's deterministic implementations (`--xla_gpu_deterministic_ops=true` in XLA_FLAGS, which XLA
  reads once, when JAX first starts its backend); XLA on the CPU needs nothing.
The setting belongs to the backend that needs it: TensorFlow's determinism is never switched on for
a JAX cell, nor XLA's flag set for a TensorFlow one.
"""

from __future__ import annotations

import os

import keras

from pipeline.errors import UserError

SUPPORTED = ("tensorflow", "jax")
XLA_FLAGS = "XLA_FLAGS"
JAX_DETERMINISTIC_FLAG = "--xla_gpu_deterministic_ops=true"


def name() -> str:
    """The Keras backend of this process, checked to be one the pipeline supports."""
    backend = keras.config.backend()
    if backend not in SUPPORTED:
        raise UserError(
            f"KERAS_BACKEND={backend}: bnbench trains on {' or '.join(SUPPORTED)}; set KERAS_BACKEND to one"
        )
    return backend


def jit_compile(deterministic: bool) -> bool:
    """Keras' `jit_compile` for the training step: XLA on JAX always; on TensorFlow only when determinism is off."""
    return name() == "jax" or not deterministic


def compiled(function):
    """`function` traced once per input shape and run as one program: `tf.function` or `jax.jit`.

    For the measurements taken at an evaluation (gradient norms, re-estimated BN statistics),
    which op by op cost more than the training between two evaluations. `function` must read
    the model's variables only through its arguments (`stateless_call`, `keras.StatelessScope`):
    `jax.jit` bakes an array it captures into the program as a constant, stale at the next call.
    TensorFlow runs the graph without XLA, so op determinism holds in it.
    """
    if name() == "jax":
        import jax

        return jax.jit(function)
    import tensorflow as tf

    return tf.function(function, jit_compile=False, reduce_retracing=True)


def with_xla_flag(flags: str, flag: str, present: bool) -> str:
    """`flags` (an XLA_FLAGS value) with `flag` (--name=value) present or absent, every other flag kept."""
    key = flag.split("=", 1)[0]
    kept = [f for f in flags.split() if f.split("=", 1)[0] != key]
    return " ".join([*kept, flag] if present else kept)


def apply_determinism(deterministic: bool) -> None:
    """Switch the backend's determinism on or off for the cells this process trains next.

    Call it before anything starts the backend (on JAX, the first device query or computation):
    XLA reads its flags once. A JAX process already started on a GPU with the other setting cannot
    change, so it refuses the cell rather than train it with the wrong guarantee.
    """
    if name() == "tensorflow":
        # TensorFlow's public API only switches determinism on; a warm worker may train a cell
        # without it after one with it, hence the switch from TensorFlow's own module.
        from tensorflow.python.framework import config

        if deterministic:
            config.enable_op_determinism()
        else:
            config.disable_op_determinism()
        return
    current = os.environ.get(XLA_FLAGS, "")
    wanted = with_xla_flag(current, JAX_DETERMINISTIC_FLAG, deterministic)
    if wanted == current:
        return
    if _jax_started() and _jax_on_gpu():
        raise UserError(
            f"train.deterministic: {str(deterministic).lower()}, but this process's JAX already runs on a GPU "
            f"with XLA_FLAGS={current!r}, which XLA reads only at its start; train this cell in a process of "
            "its own (`dvc repro`), or give the cells that one process trains the same setting"
        )
    os.environ[XLA_FLAGS] = wanted


def _jax_started() -> bool:
    from jax._src import xla_bridge  # no public way to ask without starting it

    return xla_bridge.backends_are_initialized()


def _jax_on_gpu() -> bool:
    import jax

    return any(device.platform == "gpu" for device in jax.devices())
