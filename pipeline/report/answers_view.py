"""The answers as the page shows them and findings.json stores them: plain dicts and strings.

Reads the answered (and multiplicity-controlled) findings; returns, per question, its findings
with every headline verdict (one, or one per side where the effect depends on an axis), each
condition's row, the claims no study answers here and why, and for an article's question how the
study differs from the article and where the article's text and code disagree. Every number is
formatted from the answers, here or in tables.py.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import pandas as pd

from pipeline.report import tables
from pipeline.report.articles import ARTICLES, differences
from pipeline.report.effects import Effect
from pipeline.report.findings import Answer, Condition, Finding
from pipeline.report.questions import Level, Question, TimeToTarget

CURVE = "curve"  # an answer's speed-up-over-every-target figure: on the page, not in findings.json


def effect_view(effect: Effect, said: str | None = None) -> dict[str, object]:
    finite = math.isfinite(effect.estimate)
    return {
        "effect": tables.effect_text(effect),
        # no estimate (no run reached the target): nothing to bound either
        "interval": tables.effect_interval_text(effect, effect.interval) if finite else "",
        "method": effect.interval.method if effect.interval else "",
        "check": tables.effect_interval_text(effect, effect.check),
        "seeds": effect.seeds,
        "verdict": effect.verdict,
        "verdict_class": tables.verdict_class(effect.verdict),
        "reason": effect.reason,
        "margin": tables.margin_text(effect),
        "detectable": tables.detectable_text(effect),
        "stated": tables.stated_text(effect, said) if effect.stated else "",
        "p_value": f"{effect.p_value:.2g}",
    }


def _is_steps(finding: Finding) -> bool:
    return isinstance(finding.claim.quantity, TimeToTarget) and finding.claim.quantity.unit == "steps"


def _condition_value(finding: Finding, value: float, reached: str, diverged: int, seeds: int) -> str:
    if isinstance(finding.claim.quantity, TimeToTarget):
        text = f"{value:.{0 if _is_steps(finding) else 1}f} (reached {reached})"
    else:
        text = tables.number(value)
    return f"{text}, {diverged} of {seeds} diverged" if diverged else text


def _condition_row(finding: Finding, condition: Condition) -> dict[str, object]:
    c = condition
    runs = c.effect.seeds + c.left_out
    return {
        "labels": ", ".join(f"{axis} {value}" for axis, value in c.labels) or "all runs",
        "treatment": _condition_value(finding, c.treatment_value, c.treatment_reached, c.treatment_diverged, runs),
        "reference": _condition_value(finding, c.reference_value, c.reference_reached, c.reference_diverged, runs),
        "horizon": "" if c.horizon is None else f"{c.horizon:.{0 if _is_steps(finding) else 1}f}",
        "moving": "" if c.moving_estimate is None else f"{c.moving_estimate:.2f}×",
        "left_out": c.left_out,
        **effect_view(c.effect),
    }


def answer_view(finding: Finding, answer: Answer) -> dict[str, object]:
    view: dict[str, object] = {
        "column": answer.column,
        "missing": answer.missing,
        "pooled_over": tables.pooled_over_text(answer),
        CURVE: None,
    }
    if answer.missing:
        return view
    said = finding.claim.article_says
    view.update(
        headers=tables.condition_headers(finding),
        sides=[{"label": side.label, **effect_view(side.effect, said)} for side in answer.sides],
        depends_on=answer.depends_on,
        sentence=tables.effect_sentence(finding, answer.effect) if answer.effect else "",
        conditions=tables.conditions_text(answer),
        left_out=answer.left_out,
        diverged=answer.diverged,
        unreached=list(answer.unreached),
        timing=tables.timing_text(answer.timing),
        timing_left_out=tables.timing_left_out_text(answer.timing),
        moving="" if answer.moving_estimate is None else f"{answer.moving_estimate:.2f}×",
        rows=[_condition_row(finding, c) for c in answer.conditions],
    )
    return view


def margins_text(question: Question) -> str:
    """The question's smallest effects of interest, one per quantity: "speed-up 1.1×; test accuracy ±0.01"."""
    seen: dict[str, str] = {}
    for claim in question.claims:
        quantity = claim.quantity
        if isinstance(quantity, Level):
            continue
        name = "speed-up" if isinstance(quantity, TimeToTarget) else quantity.label
        size = f"{quantity.margin:g}×" if quantity.ratio else f"±{quantity.margin:g}"
        seen.setdefault(name, f"{name} {size}")
    return "; ".join(seen.values())


def questions_view(
    answered: list[tuple[Question, list[Finding]]],
    results: pd.DataFrame,
    curve: Callable[[Finding, str], str | None] = lambda finding, column: None,
) -> list[dict[str, object]]:
    """Per question: its answered findings, the unanswerable ones grouped by why, the untested claims, and
    for an article's question how the runs differ from the article; `curve` draws a speed finding's curve."""
    view = []
    for question, findings in answered:
        unanswerable: dict[str, list[str]] = {}
        for f in findings:
            if f.missing:
                unanswerable.setdefault(f.missing, []).append(f"{f.statement} ({f.claim.quantity.label})")
        article = ARTICLES.get(question.article) if question.article else None
        shown = []
        for f in findings:
            if f.missing:
                continue
            answers = {}
            for a in f.answers:
                answers[a.column] = answer_view(f, a)
                if not a.missing and isinstance(f.claim.quantity, TimeToTarget):
                    answers[a.column][CURVE] = curve(f, a.column)
            shown.append(
                {
                    "anchor": f.anchor,
                    "statement": f.statement[0].upper() + f.statement[1:],
                    "quantity": f.claim.quantity.label,
                    "article_says": f.claim.article_says,
                    "answers": answers,
                }
            )
        view.append(
            {
                "key": question.key,
                "text": question.text,
                "source": question.source,
                "margins": margins_text(question),
                "findings": shown,
                "unanswerable": [{"reason": r, "claims": claims} for r, claims in unanswerable.items()],
                "untested": [{"text": u.text, "why": u.why} for u in question.untested],
                "differences": differences(article, results) if article else [],
                "text_vs_code": list(article.text_vs_code) if article else [],
                "unstated": article.unstated if article else "",
            }
        )
    return view


def without_figures(questions: list[dict]) -> list[dict]:
    """The view as findings.json stores it: the same, less the inlined figures."""
    return [
        {
            **q,
            "findings": [
                {**f, "answers": {c: {k: v for k, v in a.items() if k != CURVE} for c, a in f["answers"].items()}}
                for f in q["findings"]
            ],
        }
        for q in questions
    ]
