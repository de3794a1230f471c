"""Answer each declared claim from the per-run results.

Reads one row per run (the axes, settings, outcomes and times to each target, as
`collect.collect_results` builds them) and the claims of `questions.py`. For each
claim and each value of the answer-columns axis (the dataset) it pairs treatment
and reference runs by seed within every condition (each combination of the other
axes, and each target for a time to target), and estimates:

- per condition: the effect, its paired bootstrap interval, the t check, a verdict;
- pooled over the conditions: the geometric mean of the speed-ups or the mean of
  the differences, resampling seeds jointly across conditions (a seed pairs runs
  across the whole matrix), with its own interval and verdict.

Where the results cannot answer (a configuration absent from the matrix), the
answer says exactly what is missing.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace

import numpy as np
import pandas as pd

from pipeline.report.effects import INCONCLUSIVE, Effect, level_effect, paired_effect
from pipeline.report.questions import (
    ANSWER_COLUMNS_AXIS,
    QUESTIONS,
    Claim,
    Difference,
    Level,
    Question,
    Spread,
    TimeToTarget,
    describe,
)
from pipeline.report.survival import CensoredTimes, censored_times, follow_up, restricted_mean

SEED_AXIS = "seed"


@dataclass(frozen=True)
class Condition:
    """One comparison inside a condition: the settings it holds under and its effect."""

    labels: tuple[tuple[str, str], ...]  # (axis, value) of what varies between conditions, e.g. target
    effect: Effect
    treatment_value: float  # restricted mean time, or mean metric, of the paired treatment runs
    reference_value: float
    horizon: float | None  # restricted-mean horizon of a time to target
    treatment_reached: str = ""  # "k/n" reached, for a time to target
    reference_reached: str = ""
    left_out: int = 0  # pairs without a value (a diverged run has no accuracy)


@dataclass(frozen=True)
class Answer:
    """A claim's answer on one value of the answer-columns axis, pooled over its conditions."""

    column: str
    effect: Effect | None
    conditions: tuple[Condition, ...]
    pooled_over: tuple[tuple[str, tuple[str, ...]], ...]  # axes that vary between the conditions, and their values
    left_out: int = 0
    missing: str | None = None  # why there is no effect

    def verdict_counts(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for condition in self.conditions:
            counts[condition.effect.verdict] = counts.get(condition.effect.verdict, 0) + 1
        return counts


@dataclass(frozen=True)
class Finding:
    """A claim for one treatment value: a row of the page's answers."""

    question: Question
    claim: Claim
    statement: str
    treatment: object | None
    answers: tuple[Answer, ...] = ()
    missing: str | None = None  # why the whole study cannot answer it

    @property
    def anchor(self) -> str:
        suffix = (
            "" if self.claim.treatment is not None or self.treatment is None else f"-{_values_text([self.treatment])}"
        )
        return f"{self.claim.key}{suffix}"


@dataclass
class Design:
    """What the answers are computed over: the axes of a run, the targets, the interval level."""

    axes: list[str]  # columns that identify a run, the seed last
    targets: dict[str, list[str]]  # answer-column value (dataset) -> its target keys, e.g. ["acc50"]
    target_labels: dict[str, str]  # target key -> how the page shows it
    confidence: float
    target_quantities: dict[str, str] = field(default_factory=dict)  # target key -> "val_accuracy" / "train_loss"

    def targets_on(self, column: str, quantity: str | None) -> list[str]:
        """The column's target keys, only those on `quantity` when one is given."""
        keys = self.targets[column]
        return keys if quantity is None else [k for k in keys if self.target_quantities.get(k) == quantity]


def _values_text(values: list) -> str:
    return ", ".join(f"{v:g}" if isinstance(v, float) else str(v) for v in values)


def _present(results: pd.DataFrame, axis: str) -> list:
    return sorted(results[axis].unique().tolist(), key=lambda v: (str(type(v)), v))


def _absent(results: pd.DataFrame, axis: str, wanted: tuple) -> str:
    words = " or ".join(describe(axis, v) for v in wanted)
    return f"no runs with {words}; this study's {axis} values are {_values_text(_present(results, axis))}"


def _paired(treatment: pd.DataFrame, reference: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The runs of seeds present in both, in the same seed order."""
    seeds = sorted(set(treatment[SEED_AXIS]) & set(reference[SEED_AXIS]))
    return (
        treatment.set_index(SEED_AXIS).loc[seeds].reset_index(),
        reference.set_index(SEED_AXIS).loc[seeds].reset_index(),
    )


@dataclass(frozen=True)
class _TimePair:
    treatment: CensoredTimes
    reference: CensoredTimes
    horizon: float  # the longest time both configurations were followed


def _time_pair(treatment: pd.DataFrame, reference: pd.DataFrame, key: str, unit: str) -> _TimePair:
    horizon = min(follow_up(treatment, unit).max(), follow_up(reference, unit).max())
    return _TimePair(censored_times(treatment, key, unit), censored_times(reference, key, unit), float(horizon))


NOTHING_REACHED = "no run of either configuration reached the target"


def _speedup_effect(pairs: list[_TimePair], predicts: int, confidence: float) -> Effect:
    """Geometric mean over `pairs` of restricted mean (reference) / restricted mean (treatment).

    Where no run reached any target there is no estimate, and the reason says so.
    """

    def statistic(indices: np.ndarray) -> np.ndarray:
        logs = [
            np.log(restricted_mean(p.reference.times[indices], p.reference.reached[indices], p.horizon))
            - np.log(restricted_mean(p.treatment.times[indices], p.treatment.reached[indices], p.horizon))
            for p in pairs
        ]
        return np.exp(np.mean(logs, axis=0))

    # The t check's per-seed effect: each run's time capped at the horizon (a miss: the time it trained).
    with np.errstate(divide="ignore"):
        per_seed = np.mean(
            [
                np.log(np.minimum(p.reference.times, p.horizon)) - np.log(np.minimum(p.treatment.times, p.horizon))
                for p in pairs
            ],
            axis=0,
        )
    if not any(p.treatment.hits or p.reference.hits for p in pairs):
        # Both never reached it: a ratio of 1 here would read as a measured null effect.
        return Effect(math.nan, None, None, len(per_seed), True, INCONCLUSIVE, NOTHING_REACHED)
    return paired_effect(statistic, per_seed, ratio=True, predicts=predicts, confidence=confidence)


def _difference_effect(per_seed: np.ndarray, predicts: int, confidence: float) -> Effect:
    def statistic(indices: np.ndarray) -> np.ndarray:
        return per_seed[indices].mean(axis=-1)

    return paired_effect(statistic, per_seed, ratio=False, predicts=predicts, confidence=confidence)


def _reached_text(data: CensoredTimes) -> str:
    return f"{data.hits}/{data.runs}"


def _condition_axes(claim: Claim, design: Design) -> list[str]:
    """Everything that identifies a run except its seed, the compared axis and the answer column."""
    return [a for a in design.axes if a not in (SEED_AXIS, claim.axis, ANSWER_COLUMNS_AXIS)]


def _paired_groups(claim: Claim, treatment_value: object, rows: pd.DataFrame, design: Design):
    """Per condition: its labels (the axes that vary), and the treatment and reference runs paired by seed."""
    condition_axes = _condition_axes(claim, design)
    varying = [a for a in condition_axes if rows[a].nunique() > 1]
    groups = rows.groupby(condition_axes, sort=True, dropna=False) if condition_axes else [((), rows)]
    for keys, group in groups:
        keys = keys if isinstance(keys, tuple) else (keys,)
        labels = tuple((a, _values_text([v])) for a, v in zip(condition_axes, keys, strict=True) if a in varying)
        treated, reference = _paired(
            group[group[claim.axis] == treatment_value], group[group[claim.axis] == claim.reference]
        )
        if not treated.empty:
            yield labels, treated, reference


def _time_answer(claim: Claim, paired: list, column: str, design: Design) -> tuple[list[Condition], Effect | None]:
    """Speed-up per condition and target, then pooled with seeds resampled jointly across all of them."""
    conditions, pairs = [], []
    for labels, treated, reference in paired:
        for key in design.targets_on(column, claim.quantity.on):
            pair = _time_pair(treated, reference, key, claim.quantity.unit)
            conditions.append(
                Condition(
                    labels=(*labels, ("target", design.target_labels[key])),
                    effect=_speedup_effect([pair], claim.predicts, design.confidence),
                    treatment_value=float(restricted_mean(pair.treatment.times, pair.treatment.reached, pair.horizon)),
                    reference_value=float(restricted_mean(pair.reference.times, pair.reference.reached, pair.horizon)),
                    horizon=pair.horizon,
                    treatment_reached=_reached_text(pair.treatment),
                    reference_reached=_reached_text(pair.reference),
                )
            )
            pairs.append((pd.Index(treated[SEED_AXIS]), pair))
    if not pairs:
        return conditions, None
    # Seeds present in every condition: a resample draws a seed for all of them at once.
    common = sorted(set.intersection(*(set(seeds) for seeds, _ in pairs)))
    pooled = _speedup_effect(
        [_restrict(seeds, pair, common) for seeds, pair in pairs], claim.predicts, design.confidence
    )
    return conditions, pooled


def _difference_answer(claim: Claim, paired: list, design: Design) -> tuple[list[Condition], Effect | None, int]:
    """Difference per condition, then each seed's mean over the conditions where both of its runs have a value."""
    metric = claim.quantity.metric
    conditions, differences = [], []
    for labels, treated, reference in paired:
        treated_values = pd.to_numeric(treated[metric], errors="coerce").to_numpy(dtype=float)
        reference_values = pd.to_numeric(reference[metric], errors="coerce").to_numpy(dtype=float)
        diff = pd.Series(treated_values - reference_values, index=pd.Index(treated[SEED_AXIS]))
        if diff.isna().all():
            continue
        conditions.append(
            Condition(
                labels=labels,
                effect=_difference_effect(diff.dropna().to_numpy(), claim.predicts, design.confidence),
                treatment_value=float(np.nanmean(treated_values)),
                reference_value=float(np.nanmean(reference_values)),
                horizon=None,
                left_out=int(diff.isna().sum()),
            )
        )
        differences.append(diff)
    if not differences:
        return conditions, None, 0
    table = pd.concat(differences, axis=1)
    per_seed = table.mean(axis=1, skipna=True).dropna()
    pooled = _difference_effect(per_seed.to_numpy(), claim.predicts, design.confidence)
    return conditions, pooled, int(table.isna().to_numpy().sum())


def _answer_column(claim: Claim, treatment_value: object, rows: pd.DataFrame, column: str, design: Design) -> Answer:
    if isinstance(claim.quantity, Spread):
        rows, design = _spread_rows(claim.quantity, rows, design)
        claim = replace(claim, quantity=Difference("spread", claim.quantity.label))
    paired = list(_paired_groups(claim, treatment_value, rows, design))
    pooled_over = tuple(
        (a, tuple(_values_text([v]) for v in _present(rows, a)))
        for a in _condition_axes(claim, design)
        if rows[a].nunique() > 1
    )
    if isinstance(claim.quantity, TimeToTarget):
        conditions, effect = _time_answer(claim, paired, column, design)
        left_out = 0  # a miss is censored, never left out
        keys = design.targets_on(column, claim.quantity.on)
        if len(keys) > 1:
            pooled_over += (("target", tuple(design.target_labels[k] for k in keys)),)
    else:
        conditions, effect, left_out = _difference_answer(claim, paired, design)
    if effect is None:
        return Answer(column, None, (), pooled_over, missing="no paired runs with a value")
    return Answer(column, effect, tuple(conditions), pooled_over, left_out=left_out)


def _spread_rows(quantity: Spread, rows: pd.DataFrame, design: Design) -> tuple[pd.DataFrame, Design]:
    """One row per run of the other axes: the metric's max - min across the values of `quantity.across`.

    A run without a value (diverged) leaves its group's spread undefined: a spread over
    the values that happened to survive would understate it.
    """
    others = [a for a in design.axes if a != quantity.across]
    values = pd.to_numeric(rows[quantity.metric], errors="coerce")
    grouped = values.groupby([rows[a] for a in others], sort=True, dropna=False)
    spread = (grouped.max() - grouped.min()).where(grouped.count() == grouped.size())
    return spread.rename("spread").reset_index(), replace(design, axes=others)


def _level_answer(claim: Claim, rows: pd.DataFrame, column: str, design: Design) -> Answer:
    """The metric's mean per configuration (every axis but the seed and the column), and over all of them."""
    quantity: Level = claim.quantity
    condition_axes = [a for a in design.axes if a not in (SEED_AXIS, ANSWER_COLUMNS_AXIS)]
    varying = [a for a in condition_axes if rows[a].nunique() > 1]
    conditions, per_condition = [], []
    groups = rows.groupby(condition_axes, sort=True, dropna=False) if condition_axes else [((), rows)]
    for keys, group in groups:
        keys = keys if isinstance(keys, tuple) else (keys,)
        labels = tuple((a, _values_text([v])) for a, v in zip(condition_axes, keys, strict=True) if a in varying)
        values = pd.Series(
            pd.to_numeric(group[quantity.metric], errors="coerce").to_numpy(dtype=float), index=group[SEED_AXIS]
        )
        if values.dropna().empty:
            continue
        effect = level_effect(values.dropna().to_numpy(), quantity.low, quantity.high, design.confidence)
        conditions.append(Condition(labels, effect, effect.estimate, math.nan, None, left_out=int(values.isna().sum())))
        per_condition.append(values)
    pooled_over = tuple(
        (a, tuple(_values_text([v]) for v in _present(rows, a))) for a in condition_axes if a in varying
    )
    if not per_condition:
        return Answer(column, None, (), pooled_over, missing="no runs with a value")
    per_seed = pd.concat(per_condition, axis=1).mean(axis=1, skipna=True).dropna()
    pooled = level_effect(per_seed.to_numpy(), quantity.low, quantity.high, design.confidence)
    return Answer(column, pooled, tuple(conditions), pooled_over, left_out=sum(c.left_out for c in conditions))


def _restrict(seeds: pd.Index, pair: _TimePair, keep: list) -> _TimePair:
    at = seeds.get_indexer(keep)
    return _TimePair(
        CensoredTimes(pair.treatment.times[at], pair.treatment.reached[at]),
        CensoredTimes(pair.reference.times[at], pair.reference.reached[at]),
        pair.horizon,
    )


def answer_claim(question: Question, claim: Claim, results: pd.DataFrame, design: Design) -> list[Finding]:
    """One finding per treatment value: the claim answered on each dataset, or why it cannot be."""

    def statement_of(treatment: object | None) -> str:
        return claim.statement.format(
            treatment=describe(claim.axis, treatment) if treatment is not None else f"any other {claim.axis}",
            reference=describe(claim.axis, claim.reference),
        )

    def missing(reason: str, treatment: object | None = claim.treatment) -> list[Finding]:
        return [Finding(question, claim, statement_of(treatment), treatment, missing=reason)]

    rows = results
    for axis, wanted in claim.where.items():
        rows = rows[rows[axis].isin(wanted)]
        if rows.empty:
            return missing(_absent(results, axis, wanted))
    metric = getattr(claim.quantity, "metric", None)
    if metric is not None and (metric not in rows or rows[metric].isna().all()):
        return missing(f"the runs do not record {metric}")
    if isinstance(claim.quantity, Spread) and claim.quantity.across not in design.axes:
        return missing(f"{claim.quantity.across} is not an axis of this study")
    if isinstance(claim.quantity, Level):
        answers = tuple(
            _level_answer(claim, rows[rows[ANSWER_COLUMNS_AXIS] == column], column, design)
            for column in _present(rows, ANSWER_COLUMNS_AXIS)
        )
        return [Finding(question, claim, claim.statement, None, answers)]
    present = _present(rows, claim.axis)
    if claim.reference not in present:
        return missing(_absent(results, claim.axis, (claim.reference,)))
    if claim.treatment is None:
        treatments = [v for v in present if v != claim.reference]
        if not treatments:
            return missing(
                f"no {claim.axis} other than {_values_text([claim.reference])} in this study", treatment=None
            )
    elif claim.treatment not in present:
        return missing(_absent(results, claim.axis, (claim.treatment,)))
    else:
        treatments = [claim.treatment]
    findings = []
    for treatment in treatments:
        answers = tuple(
            _answer_column(claim, treatment, rows[rows[ANSWER_COLUMNS_AXIS] == column], column, design)
            for column in _present(rows, ANSWER_COLUMNS_AXIS)
        )
        findings.append(Finding(question, claim, statement_of(treatment), treatment, answers))
    return findings


def answer_questions(
    results: pd.DataFrame, design: Design, questions: tuple[Question, ...] = QUESTIONS
) -> list[tuple[Question, list[Finding]]]:
    """Every declared question with its findings, in the order declared."""
    return [
        (question, [f for claim in question.claims for f in answer_claim(question, claim, results, design)])
        for question in questions
    ]
