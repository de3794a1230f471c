"""Determinism and compiling per Keras backend (pipeline/cell/backend.py), checked on the backend this process runs.

The suite runs on TensorFlow; tests/integration/test_jax.py runs these tests again in a process with
KERAS_BACKEND=jax (the backend is fixed when Keras is imported).
"""

from __future__ import annotations

import os

import keras
import pytest
from tensorflow.python.framework import config as tf_config

from pipeline.cell import backend
from pipeline.cell.backend import JAX_DETERMINISTIC_FLAG, XLA_FLAGS, with_xla_flag


def test_the_backend_is_the_one_asked_for():
    assert backend.name() == keras.config.backend() == os.environ.get("KERAS_BACKEND", "tensorflow")


@pytest.fixture
def tf_determinism_restored():
    """TensorFlow's op determinism is process-wide: as it was before the test, after it."""
    was = tf_config.is_op_determinism_enabled()
    yield
    (tf_config.enable_op_determinism if was else tf_config.disable_op_determinism)()


def test_determinism_is_switched_on_the_backend_that_needs_it_and_only_there(monkeypatch, tf_determinism_restored):
    monkeypatch.setenv(XLA_FLAGS, "--xla_dump_to=/tmp/x")  # a user's own flag stays
    tf_config.disable_op_determinism()
    backend.apply_determinism(True)
    if backend.name() == "tensorflow":
        assert tf_config.is_op_determinism_enabled() and os.environ[XLA_FLAGS] == "--xla_dump_to=/tmp/x"
        backend.apply_determinism(False)
        assert not tf_config.is_op_determinism_enabled()
    else:
        assert os.environ[XLA_FLAGS] == f"--xla_dump_to=/tmp/x {JAX_DETERMINISTIC_FLAG}"
        assert not tf_config.is_op_determinism_enabled()
        backend.apply_determinism(False)
        assert os.environ[XLA_FLAGS] == "--xla_dump_to=/tmp/x" and not tf_config.is_op_determinism_enabled()


def test_xla_compiles_the_step_on_jax_always_and_on_tensorflow_only_without_determinism():
    jax = backend.name() == "jax"
    assert backend.jit_compile(True) is jax
    assert backend.jit_compile(False) is True


@pytest.mark.parametrize(
    ("flags", "present", "expected"),
    [
        ("", True, JAX_DETERMINISTIC_FLAG),
        (JAX_DETERMINISTIC_FLAG, True, JAX_DETERMINISTIC_FLAG),
        ("--xla_gpu_deterministic_ops=false --a=1", True, f"--a=1 {JAX_DETERMINISTIC_FLAG}"),
        (f"--a=1 {JAX_DETERMINISTIC_FLAG} --b", False, "--a=1 --b"),
    ],
)
def test_the_xla_flag_is_set_or_removed_and_every_other_flag_kept(flags, present, expected):
    assert with_xla_flag(flags, JAX_DETERMINISTIC_FLAG, present) == expected
