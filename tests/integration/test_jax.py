"""The per-cell integration tests again, on Keras' JAX backend, in a process of their own.

The backend is fixed when Keras is imported, so this runs pytest in a subprocess with
KERAS_BACKEND=jax: training, the per-step loss buffer, gradient norms, re-estimated BN statistics,
divergence from a NaN learning rate, the test set used once, and determinism per backend; and the group
engine (pipeline/cell/group.py), which trains Keras on JAX only.
"""

from __future__ import annotations

import os
import subprocess
import sys

from tests.helpers import REPO, require_extra

ON_JAX = [
    "tests/integration/test_backend.py",
    "tests/integration/test_train_cell.py::test_one_cell_trains_and_measures",
    "tests/integration/test_train_cell.py::test_probe_every_takes_the_probes_at_every_kth_evaluation_and_the_last",
    "tests/integration/test_train_cell.py::test_steps_per_execution_runs_the_same_steps",
    "tests/integration/test_probes.py",
    "tests/integration/test_train_cell.py::test_step_losses_are_each_steps_own_loss_not_the_running_mean",
    "tests/integration/test_train_cell.py::test_test_split_is_evaluated_once_after_training",
    "tests/integration/test_train_cell.py::test_divergence_is_an_outcome_not_a_crash",
    "tests/integration/test_train_cell.py::test_nan_weights_are_divergence_even_when_outputs_look_finite",
    "tests/integration/test_group.py",
]
PASSED_ON_JAX = 26  # test_backend.py's 7, the 7 train_cell tests, the 4 probe tests and test_group.py's 8


def test_the_cell_tests_pass_on_jax():
    require_extra("jax", "jax")
    env = {**os.environ, "KERAS_BACKEND": "jax", "TF_CPP_MIN_LOG_LEVEL": "3"}
    env.pop("XLA_FLAGS", None)
    command = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-W", "ignore", *ON_JAX]
    done = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stdout[-6000:] + done.stderr[-3000:]
    assert f"{PASSED_ON_JAX} passed" in done.stdout, done.stdout[-2000:]
