"""The optimizer registry: every name the schema allows builds its optimizer; any other name is refused."""

from __future__ import annotations

import typing

import keras
import pytest

from pipeline.cell.optimizers import OPTIMIZERS, build_optimizer
from pipeline.errors import UserError
from pipeline.study.schema import OptimizerParams


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
