"""The optimizer registry: every name the schema allows builds its optimizer; any other name is refused."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import typing

import keras
import numpy as np
import pytest

from pipeline.cell.optimizers import OPTIMIZERS, build_optimizer
from pipeline.errors import UserError
from pipeline.study.schema import OptimizerParams
from tests.helpers import REPO


def test_the_schema_allows_exactly_the_registered_names():
    assert set(typing.get_args(OptimizerParams.model_fields["name"].annotation)) == set(OPTIMIZERS)


@pytest.mark.parametrize(
    ("name", "kind"),
    [("sgd", keras.optimizers.SGD), ("rmsprop", keras.optimizers.RMSprop), ("adam", keras.optimizers.Adam)],
)
def test_each_name_builds_its_optimizer_with_its_settings(name, kind):
    settings = OptimizerParams(name=name, learning_rate=0.0125, momentum=0.5 if name != "adam" else 0.0)
    optimizer = build_optimizer(settings)
    assert type(optimizer) is kind
    assert float(optimizer.learning_rate) == pytest.approx(0.0125)
    if name != "adam":
        assert optimizer.momentum == 0.5


def test_an_unknown_name_is_an_error_not_a_default():
    # model_copy skips validation, as settings built in code would: the registry still refuses.
    settings = OptimizerParams(name="sgd", learning_rate=0.1).model_copy(update={"name": "adamw"})
    with pytest.raises(UserError, match="unknown optimizer 'adamw'; known: adam, rmsprop, sgd"):
        build_optimizer(settings)


@pytest.mark.parametrize("name", ["sgd", "rmsprop", "adam"])
def test_decay_is_the_legacy_keras_inverse_time_schedule(name):
    # Article 003: SGD(lr=0.01, decay=1e-6); Keras 2 used lr / (1 + decay * iterations) before each update.
    optimizer = build_optimizer(OptimizerParams(name=name, learning_rate=0.01, decay=1e-6))
    for step, expected in [(0, 0.01), (1, 0.01 / 1.000001), (100_000, 0.01 / 1.1), (1_000_000, 0.005)]:
        optimizer.iterations.assign(step)
        assert float(optimizer.learning_rate) == pytest.approx(expected, rel=1e-6), step


def test_no_decay_is_a_constant_rate():
    optimizer = build_optimizer(OptimizerParams(name="sgd", learning_rate=0.01))
    optimizer.iterations.assign(1_000_000)
    assert float(optimizer.learning_rate) == pytest.approx(0.01)
    assert not isinstance(optimizer._learning_rate, keras.optimizers.schedules.LearningRateSchedule)


# Article 000's rmsprop: standalone Keras 2.2 divided by sqrt(a) + eps, Keras 3 divides by sqrt(a + eps).
# Tiny, small and large gradients over a few steps: the tiny ones are where the two differ (a sigmoid net without BN).
GRADIENTS = [[1e-5, -2e-4, 0.3], [2e-5, -1e-4, -0.2], [-1e-5, 3e-4, 0.1], [1e-5, 1e-4, 0.05]]
RATE, RHO, EPSILON = 0.001, 0.9, 1e-7

STEPS_SCRIPT = """
import json, sys
import keras, numpy as np
from pipeline.cell.optimizers import build_optimizer
from pipeline.study.schema import OptimizerParams

def run(placement, gradients):
    weights = keras.Variable(np.zeros(3, dtype="float32"))
    optimizer = build_optimizer(OptimizerParams(name="rmsprop", learning_rate=0.001, epsilon_placement=placement))
    for gradient in gradients:
        optimizer.apply_gradients([(keras.ops.convert_to_tensor(np.asarray(gradient, dtype="float32")), weights)])
    return keras.ops.convert_to_numpy(weights).tolist()

gradients = json.loads(sys.argv[1])
print(json.dumps({p: run(p, gradients) for p in ("after_sqrt", "in_sqrt")}))
"""


def _formula(gradients: list[list[float]], after_sqrt: bool) -> np.ndarray:
    """Both updates written out: a = rho a + (1 - rho) g^2, then p -= lr g / (sqrt(a) + eps) or lr g / sqrt(a + eps)."""
    weights, accumulator = np.zeros(3), np.zeros(3)
    for gradient in np.asarray(gradients, dtype=float):
        accumulator = RHO * accumulator + (1 - RHO) * gradient**2
        denominator = np.sqrt(accumulator) + EPSILON if after_sqrt else np.sqrt(accumulator + EPSILON)
        weights = weights - RATE * gradient / denominator
    return weights


def _steps_on(backend: str) -> dict[str, list[float]]:
    env = {**os.environ, "KERAS_BACKEND": backend, "PYTHONPATH": str(REPO)}
    done = subprocess.run(
        [sys.executable, "-c", STEPS_SCRIPT, json.dumps(GRADIENTS)], env=env, capture_output=True, text=True, cwd=REPO
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("backend", ["tensorflow", "jax"])
def test_keras2_rmsprop_is_the_keras_2_formula_on_each_backend(backend):
    if backend == "jax":
        pytest.importorskip("jax", reason="JAX is an extra: uv sync --extra jax")
    weights = _steps_on(backend)
    assert weights["after_sqrt"] == pytest.approx(_formula(GRADIENTS, after_sqrt=True), rel=1e-4, abs=1e-9)
    assert weights["in_sqrt"] == pytest.approx(_formula(GRADIENTS, after_sqrt=False), rel=1e-4, abs=1e-9)
    # where it matters: the tiny gradient moves its weight about a hundred times further under Keras 2
    assert abs(weights["after_sqrt"][0]) > 50 * abs(weights["in_sqrt"][0])


def test_keras2_epsilon_is_for_plain_rmsprop_only():
    for bad in ({"name": "adam"}, {"name": "rmsprop", "momentum": 0.9}):
        with pytest.raises(ValueError, match="Keras 2's plain rmsprop"):
            OptimizerParams(learning_rate=0.001, epsilon_placement="after_sqrt", **bad)
