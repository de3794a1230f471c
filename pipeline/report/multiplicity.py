"""How the page controls its headline verdicts together: Holm's step-down procedure.

Every headline verdict other than inconclusive rests on one-sided paired t tests at the level
of one end of the page's two-sided intervals (verdicts.py), and a page makes many of them. Over
the m headline verdicts of a page (inconclusive ones counted, with p = 1), Holm's procedure
keeps the verdicts whose p-values pass its step-down thresholds: sorted from the smallest, the
i-th (from 0) must be at most alpha / (m - i), and the first that fails stops it. The chance that
any kept verdict rests on a test that rejected by chance is then at most alpha, whatever the
dependence between the tests. A verdict that is not kept reads inconclusive, and says why.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np

from pipeline.report.findings import Finding, Side, headline_sides
from pipeline.report.questions import Question
from pipeline.report.verdicts import INCONCLUSIVE


def holm(p_values: Sequence[float], alpha: float) -> np.ndarray:
    """Which hypotheses Holm's step-down procedure rejects at family-wise level `alpha`."""
    p = np.asarray(p_values, dtype=float)
    m = len(p)
    keep = np.zeros(m, dtype=bool)
    for rank, index in enumerate(np.argsort(p, kind="stable")):
        if p[index] > alpha / (m - rank):
            break
        keep[index] = True
    return keep


def family_alpha(confidence: float) -> float:
    """The family-wise level: one end of the page's two-sided intervals, the level each verdict's test has alone."""
    return (1 - confidence) / 2


@dataclass(frozen=True)
class Family:
    """What the page states about its headline verdicts."""

    verdicts: int  # m: every headline verdict of the page, inconclusive ones included
    decided: int  # those that are not inconclusive after the correction
    demoted: int  # those that were decided alone and are inconclusive after the correction
    alpha: float


Answered = list[tuple[Question, list[Finding]]]


def control(answered_sets: list[Answered], confidence: float) -> tuple[list[Answered], Family]:
    """The answers with every headline verdict that does not pass Holm's procedure, over all of them, inconclusive."""
    alpha = family_alpha(confidence)
    sides = [side for answered in answered_sets for side in headline_sides(answered)]
    passes = holm([side.effect.p_value for side in sides], alpha)
    kept = {id(side): bool(ok) for side, ok in zip(sides, passes, strict=True)}
    m = len(sides)

    def adjusted(side: Side) -> Side:
        effect = side.effect
        if effect.verdict == INCONCLUSIVE or kept[id(side)]:
            return side
        reason = (
            f"{effect.verdict} alone (p = {effect.p_value:.2g}), but not after Holm's correction over this page's "
            f"{m} headline verdicts"
        )
        return replace(side, effect=replace(effect, verdict=INCONCLUSIVE, reason=reason))

    result = [
        [
            (
                question,
                [
                    replace(f, answers=tuple(replace(a, sides=tuple(adjusted(s) for s in a.sides)) for a in f.answers))
                    for f in findings
                ],
            )
            for question, findings in answered
        ]
        for answered in answered_sets
    ]
    decided = sum(side.effect.verdict != INCONCLUSIVE for answered in result for side in headline_sides(answered))
    demoted = sum(side.effect.verdict != INCONCLUSIVE and not kept[id(side)] for side in sides)
    return result, Family(m, decided, demoted, alpha)
