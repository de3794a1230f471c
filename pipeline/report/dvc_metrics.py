"""The study's DVC metrics: each headline answer as numbers and a verdict, under short stable keys.

`dvc metrics show` lists them and `dvc metrics diff` says which answer moved. One entry per
headline verdict of the page (after the multiplicity correction, as the page shows it):

    <claim>.<column>[.<side>]:  effect, ci_low, ci_high, n, verdict

`<claim>` is the finding's anchor, built from the claim keys declared in questions.py
(`bn-post-steps`, `001a`, `003a-pre`); `<column>` is the answers' column (the dataset); `<side>`
names one side of an answer split along an axis (`activation_relu`). The tuned-rate answers of a
study with `sweep:` sit under `tuned.`. The effect is a speed-up or ratio (1 is no effect) or a
difference (0 is no effect), in the claim's own unit; `n` is the paired seeds behind it. An
interval or estimate that does not exist (fewer than 2 seeds, a target no run reached) is null.
The verdict is the page's word; DVC shows strings in both views (`metrics diff` prints the old and
new word, with no numeric change).
"""

from __future__ import annotations

import math
import re

from pipeline.report.effects import Effect
from pipeline.report.findings import Finding
from pipeline.report.questions import Question

Answered = list[tuple[Question, list[Finding]]]
TUNED = "tuned"  # the key the tuned-rate answers sit under


def _number(value: float) -> float | None:
    """JSON has no infinity or NaN (DVC would fail to read the file): a missing number is null."""
    return round(float(value), 6) if math.isfinite(value) else None


def _side_key(label: str) -> str:
    """'activation relu' -> 'activation_relu': one key segment, no dots (DVC splits keys on dots)."""
    return re.sub(r"[^A-Za-z0-9_-]+", "_", label.strip()).strip("_")


def effect_metrics(effect: Effect) -> dict[str, object]:
    interval = effect.interval
    return {
        "effect": _number(effect.estimate),
        "ci_low": _number(interval.low) if interval else None,
        "ci_high": _number(interval.high) if interval else None,
        "n": effect.seeds,
        "verdict": effect.verdict,
    }


def headline_metrics(answered: Answered) -> dict[str, dict]:
    """Per finding, per column (and side), its headline effect; answers the runs cannot give are left out."""
    metrics: dict[str, dict] = {}
    for _question, findings in answered:
        for finding in findings:
            for answer in finding.answers:
                if answer.missing:
                    continue
                for side in answer.sides:
                    column = metrics.setdefault(finding.anchor, {}).setdefault(answer.column, {})
                    if side.label:
                        column[_side_key(side.label)] = effect_metrics(side.effect)
                    else:
                        column.update(effect_metrics(side.effect))
    return metrics


def study_metrics(fixed: Answered, tuned: Answered | None = None) -> dict[str, dict]:
    """The study's metrics file: the fixed-rate answers, and the tuned ones under `tuned.`."""
    metrics = headline_metrics(fixed)
    if tuned is not None:
        metrics[TUNED] = headline_metrics(tuned)
    return metrics
