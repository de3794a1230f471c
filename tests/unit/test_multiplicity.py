"""Holm's step-down procedure over a page's headline verdicts."""

from __future__ import annotations

import numpy as np
import pytest

from pipeline.report.effects import Effect
from pipeline.report.findings import Answer, Finding, Side
from pipeline.report.multiplicity import control, holm
from pipeline.report.questions import QUESTIONS


def holm_by_definition(p_values, alpha):
    """Holm (1979): reject H_(1..k) for the largest k such that p_(i) <= alpha / (m - i + 1) for every i <= k."""
    order = sorted(range(len(p_values)), key=lambda i: p_values[i])
    m, rejected = len(p_values), set()
    for i, index in enumerate(order, start=1):
        if p_values[index] > alpha / (m - i + 1):
            break
        rejected.add(index)
    return [i in rejected for i in range(m)]


def test_holm_is_the_step_down_procedure():
    p = [0.01, 0.04, 0.03, 0.005, 1.0, 1.0]
    # alpha 0.05 over 6: 0.005 <= 0.05/6, 0.01 <= 0.05/5, then 0.03 > 0.05/4 stops it (0.04 would pass alone)
    assert holm(p, 0.05).tolist() == [True, False, False, True, False, False]
    rng = np.random.default_rng(3)
    for _ in range(200):
        p = rng.uniform(0, 0.05, size=rng.integers(1, 12)).tolist()
        assert holm(p, 0.025).tolist() == holm_by_definition(p, 0.025)


def test_one_verdict_alone_keeps_its_level():
    assert holm([0.024], 0.025).tolist() == [True] and holm([0.026], 0.025).tolist() == [False]


def _answered(p_values: list[float], verdict: str = "supported"):
    """One finding whose answer has a headline verdict per p-value (sides of a split answer)."""
    question = QUESTIONS[0]
    sides = tuple(
        Side(f"activation {i}", Effect(1.5, None, None, 5, True, verdict, "planted", p_value=p), 1)
        for i, p in enumerate(p_values)
    )
    answer = Answer("cifar10", sides, (), (), depends_on="activation")
    return [(question, [Finding(question, question.claims[0], "planted", "pre", (answer,))])]


def test_the_pages_verdicts_are_controlled_together_and_a_demoted_one_says_why():
    # Fixed-rate and tuned answers, three headline verdicts in all: at 2.5%, 0.001 <= 0.025/3 stands,
    # 0.02 > 0.025/2 does not (alone, at 0.025, it would).
    answered, family = control([_answered([0.001, 0.02]), _answered([1.0], "inconclusive")], 0.95)
    effects = [side.effect for side in answered[0][0][1][0].answers[0].sides]
    assert [e.verdict for e in effects] == ["supported", "inconclusive"]
    assert (
        "supported alone (p = 0.02), but not after Holm's correction over this page's 3 headline" in effects[1].reason
    )
    assert (family.verdicts, family.decided, family.demoted, family.alpha) == (3, 1, 1, pytest.approx(0.025))
    alone, _ = control([_answered([0.02])], 0.95)
    assert alone[0][0][1][0].answers[0].sides[0].effect.verdict == "supported"
