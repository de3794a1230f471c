"""Answer each declared claim from the per-run results.

Reads one row per run (the axes, settings, outcomes and times to each target, as
`collect.collect_results` builds them) and the claims of `questions.py`. For each claim
and each value of the answer-columns axis (the dataset) it pairs treatment and reference
runs by seed within every condition (each combination of the other axes, and each target
for a time to target), and estimates per condition the effect, its paired bootstrap
interval, the t check and a verdict (verdicts.py).

The headline pools the conditions, resampling seeds jointly across them (a seed pairs
runs across the whole matrix): the geometric mean of the speed-ups or ratios, or the
mean of the differences. Where the conditions disagree in direction it gives no pooled
verdict: it says which axis the effect depends on and answers each side of it
(heterogeneity.py). A stated range is judged per configuration, never on an average of
different models; an interaction is the change of an effect along an axis.

Divergence is an outcome (outcomes.py), so no condition is dropped: each shows how many
of its runs diverged. A target no run of either configuration reached has no speed-up:
it is listed and left out of the pooled one. A verdict in seconds uses only runs whose
timing compares (timing.py); one on accuracy targets uses, for BN runs, the accuracy with
recomputed BN statistics (collect.py), the moving-statistics figure beside it. Where the
results cannot answer (a configuration absent from the matrix), the answer says exactly
what is missing.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace

import numpy as np
import pandas as pd

from pipeline.report import heterogeneity, outcomes
from pipeline.report.effects import Effect, level_effect, paired_effect
from pipeline.report.questions import (
    ANSWER_COLUMNS_AXIS,
    QUESTIONS,
    Claim,
    Difference,
    Interaction,
    Learns,
    Level,
    Question,
    Spread,
    TimeToTarget,
    describe,
)
from pipeline.report.survival import RECOMPUTED_SUFFIX, CensoredTimes, censored_times, follow_up, restricted_mean
from pipeline.report.timing import TimedRuns, comparable_timing
from pipeline.report.verdicts import INCONCLUSIVE, Rule, compare_stated
from pipeline.study.targets import VAL_ACCURACY

SEED_AXIS = "seed"
TARGET = "target"


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
    left_out: int = 0  # pairs without a value (a metric a run did not record)
    treatment_diverged: int = 0  # runs of each configuration that diverged
    reference_diverged: int = 0
    moving_estimate: float | None = None  # the speed-up on moving BN statistics, where the verdict used recomputed
    at: tuple[tuple[str, object], ...] = ()  # the condition's own axis values, as the runs hold them
    # what pooling resamples: per-seed effects (a Series by seed) or a time pair with its seeds; and, for a time
    # to an accuracy target, the pair on the moving-statistics accuracy
    samples: object = field(default=None, repr=False, compare=False)
    moving_samples: object = field(default=None, repr=False, compare=False)


@dataclass(frozen=True)
class Side:
    """A headline verdict: pooled over all conditions (label ""), or over one side of a split ("activation relu")."""

    label: str
    effect: Effect
    conditions: int  # how many conditions it pools


@dataclass(frozen=True)
class Answer:
    """A claim's answer on one value of the answer-columns axis."""

    column: str
    sides: tuple[Side, ...]
    conditions: tuple[Condition, ...]
    pooled_over: tuple[tuple[str, tuple[str, ...]], ...]  # axes that vary between the conditions, and their values
    depends_on: str | None = None  # the axis along which the conditions disagree in direction (one side per value)
    left_out: int = 0
    missing: str | None = None  # why there is no effect
    unreached: tuple[str, ...] = ()  # conditions no run of either configuration reached: out of the pooled speed-up
    timing: TimedRuns | None = None  # a claim in seconds: which runs' timings compared
    moving_estimate: float | None = None  # the pooled speed-up on moving BN statistics, beside the verdict's

    @property
    def effect(self) -> Effect | None:
        """The one pooled effect; None where the answer is split into sides (or per configuration)."""
        return self.sides[0].effect if len(self.sides) == 1 and not self.sides[0].label else None

    @property
    def diverged(self) -> int:
        return sum(c.treatment_diverged + c.reference_diverged for c in self.conditions)

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

    def judged_key(self, key: str) -> str:
        """The columns a speed verdict reads for a target: accuracy targets on the recomputed-statistics accuracy."""
        return key + RECOMPUTED_SUFFIX if self.target_quantities.get(key) == VAL_ACCURACY else key


def _values_text(values: list) -> str:
    return ", ".join(f"{v:g}" if isinstance(v, float) else str(v) for v in values)


def _present(results: pd.DataFrame, axis: str) -> list:
    return sorted(results[axis].unique().tolist(), key=lambda v: (str(type(v)), v))


def _absent(results: pd.DataFrame, axis: str, wanted: tuple) -> str:
    words = " or ".join(describe(axis, v) for v in wanted)
    return f"no runs with {words}; this study's {axis} values are {_values_text(_present(results, axis))}"


def rule_of(claim: Claim) -> Rule:
    quantity = claim.quantity
    return Rule(claim.predicts, quantity.margin, quantity.ratio, claim.test)


def _paired(treatment: pd.DataFrame, reference: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The runs of seeds present in both, in the same seed order."""
    seeds = sorted(set(treatment[SEED_AXIS]) & set(reference[SEED_AXIS]))
    return (
        treatment.set_index(SEED_AXIS).loc[seeds].reset_index(),
        reference.set_index(SEED_AXIS).loc[seeds].reset_index(),
    )


def _condition_axes(claim: Claim, design: Design) -> list[str]:
    """Everything that identifies a run except its seed, the compared axis and the answer column."""
    return [a for a in design.axes if a not in (SEED_AXIS, claim.axis, ANSWER_COLUMNS_AXIS)]


def paired_groups(claim: Claim, treatment_value: object, rows: pd.DataFrame, design: Design):
    """Per condition: its labels (the axes that vary), its axis values, and the two configurations' runs by seed."""
    condition_axes = _condition_axes(claim, design)
    varying = [a for a in condition_axes if rows[a].nunique() > 1]
    groups = rows.groupby(condition_axes, sort=True, dropna=False) if condition_axes else [((), rows)]
    for keys, group in groups:
        keys = keys if isinstance(keys, tuple) else (keys,)
        labels = tuple((a, _values_text([v])) for a, v in zip(condition_axes, keys, strict=True) if a in varying)
        at = tuple((a, v) for a, v in zip(condition_axes, keys, strict=True) if a in varying)
        treated, reference = _paired(
            group[group[claim.axis] == treatment_value], group[group[claim.axis] == claim.reference]
        )
        if not treated.empty:
            yield labels, at, treated, reference


def claim_rows(claim: Claim, results: pd.DataFrame) -> pd.DataFrame:
    """The runs a claim is about: those with the axis values its `where` names."""
    rows = results
    for axis, wanted in claim.where.items():
        rows = rows[rows[axis].isin(wanted)]
    return rows


def _diverged_count(runs: pd.DataFrame) -> int:
    return int(outcomes.diverged(runs).sum())


# -- time to target ------------------------------------------------------------------------------


@dataclass(frozen=True)
class _TimePair:
    seeds: pd.Index
    treatment: CensoredTimes
    reference: CensoredTimes
    horizon: float  # the longest time both configurations were followed

    def restricted_to(self, seeds: list) -> _TimePair:
        at = self.seeds.get_indexer(seeds)
        return _TimePair(
            pd.Index(seeds),
            CensoredTimes(self.treatment.times[at], self.treatment.reached[at]),
            CensoredTimes(self.reference.times[at], self.reference.reached[at]),
            self.horizon,
        )

    @property
    def reached_by_any(self) -> bool:
        return bool(self.treatment.hits or self.reference.hits)


def _time_pair(treatment: pd.DataFrame, reference: pd.DataFrame, key: str, unit: str) -> _TimePair:
    # Up to the shorter follow-up of the two: past it one of them was not followed at all.
    horizon = min(follow_up(treatment, unit).max(), follow_up(reference, unit).max())
    return _TimePair(
        pd.Index(treatment[SEED_AXIS]),
        censored_times(treatment, key, unit),
        censored_times(reference, key, unit),
        float(horizon),
    )


NOTHING_REACHED = "no run of either configuration reached the target"


def _log_speedup(pairs: list[_TimePair], indices: np.ndarray) -> np.ndarray:
    return np.mean(
        [
            np.log(restricted_mean(p.reference.times[indices], p.reference.reached[indices], p.horizon))
            - np.log(restricted_mean(p.treatment.times[indices], p.treatment.reached[indices], p.horizon))
            for p in pairs
        ],
        axis=0,
    )


def _speedup_effect(pairs: list[_TimePair], rule: Rule, confidence: float) -> Effect:
    """Geometric mean over `pairs` of restricted mean (reference) / restricted mean (treatment)."""

    def statistic(indices: np.ndarray) -> np.ndarray:
        return np.exp(_log_speedup(pairs, indices))

    # The t check's per-seed effect: each run's time capped at the horizon (a miss: the time it trained).
    with np.errstate(divide="ignore"):
        per_seed = np.mean(
            [
                np.log(np.minimum(p.reference.times, p.horizon)) - np.log(np.minimum(p.treatment.times, p.horizon))
                for p in pairs
            ],
            axis=0,
        )
    if not any(p.reached_by_any for p in pairs):
        # Both never reached it: a ratio of 1 here would read as a measured null effect.
        return Effect(math.nan, None, None, len(per_seed), True, INCONCLUSIVE, NOTHING_REACHED, margin=rule.margin)
    return paired_effect(statistic, per_seed, rule=rule, confidence=confidence)


def _moving_speedup(pairs: list[_TimePair]) -> float | None:
    """The point estimate alone (no interval): what the moving-statistics accuracy says beside the verdict's."""
    if not pairs or not any(p.reached_by_any for p in pairs):
        return None
    return float(np.exp(_log_speedup(pairs, np.arange(pairs[0].treatment.runs))))


def _reached_text(data: CensoredTimes) -> str:
    return f"{data.hits}/{data.runs}"


def _same_times(one: _TimePair, other: _TimePair) -> bool:
    return all(
        np.array_equal(a.times, b.times) and np.array_equal(a.reached, b.reached)
        for a, b in ((one.treatment, other.treatment), (one.reference, other.reference))
    )


def _time_conditions(claim: Claim, paired: list, column: str, design: Design) -> list[Condition]:
    """Speed-up per condition and target: misses censored at the budget, diverged runs among them."""
    unit = claim.quantity.unit
    rule = rule_of(claim)
    conditions = []
    for labels, at, treated, reference in paired:
        for key in design.targets_on(column, claim.quantity.on):
            pair = _time_pair(treated, reference, design.judged_key(key), unit)
            moving = _time_pair(treated, reference, key, unit)
            conditions.append(
                Condition(
                    labels=(*labels, (TARGET, design.target_labels[key])),
                    effect=_speedup_effect([pair], rule, design.confidence),
                    treatment_value=float(restricted_mean(pair.treatment.times, pair.treatment.reached, pair.horizon)),
                    reference_value=float(restricted_mean(pair.reference.times, pair.reference.reached, pair.horizon)),
                    horizon=pair.horizon,
                    treatment_reached=_reached_text(pair.treatment),
                    reference_reached=_reached_text(pair.reference),
                    treatment_diverged=_diverged_count(treated),
                    reference_diverged=_diverged_count(reference),
                    moving_estimate=None if _same_times(pair, moving) else _moving_speedup([moving]),
                    at=at,
                    samples=pair,
                    moving_samples=moving,
                )
            )
    return conditions


def _pool_times(conditions: list[Condition], rule: Rule, confidence: float) -> Effect:
    # Seeds present in every condition: a resample draws a seed for all of them at once.
    common = sorted(set.intersection(*(set(c.samples.seeds) for c in conditions)))
    return _speedup_effect([c.samples.restricted_to(common) for c in conditions], rule, confidence)


# -- per-run values: differences and ratios ------------------------------------------------------


def _values(quantity, runs: pd.DataFrame) -> pd.Series:
    if isinstance(quantity, Learns):
        return outcomes.learned(runs, quantity.above_chance)
    return outcomes.run_values(runs, quantity.metric)


def _per_seed(quantity, treated: pd.DataFrame, reference: pd.DataFrame) -> pd.Series:
    """Each seed's effect on the analysis scale: a difference, or a log ratio (a non-positive value: none)."""
    mine, theirs = _values(quantity, treated).to_numpy(), _values(quantity, reference).to_numpy()
    if quantity.ratio:
        with np.errstate(divide="ignore", invalid="ignore"):
            effect = np.log(np.where(mine > 0, mine, np.nan)) - np.log(np.where(theirs > 0, theirs, np.nan))
    else:
        effect = mine - theirs
    return pd.Series(effect, index=pd.Index(treated[SEED_AXIS]), dtype=float)


def _mean_effect(per_seed: np.ndarray, rule: Rule, confidence: float) -> Effect:
    """The mean over seeds (for a ratio: of the logs, shown as the geometric mean ratio)."""

    def statistic(indices: np.ndarray) -> np.ndarray:
        mean = per_seed[indices].mean(axis=-1)
        return np.exp(mean) if rule.ratio else mean

    return paired_effect(statistic, per_seed, rule=rule, confidence=confidence)


NO_VALUES = "no paired runs with a value"


def _no_values(seeds: int, rule: Rule, reason: str = NO_VALUES) -> Effect:
    return Effect(math.nan, None, None, seeds, rule.ratio, INCONCLUSIVE, reason, margin=rule.margin, test=rule.test)


def _value_conditions(claim: Claim, paired: list, design: Design) -> list[Condition]:
    """The effect per condition; a diverged run counts (outcomes.py), a run without a value is left out, counted."""
    quantity, rule = claim.quantity, rule_of(claim)
    conditions = []
    for labels, at, treated, reference in paired:
        per_seed = _per_seed(quantity, treated, reference)
        usable = per_seed.dropna()
        effect = _mean_effect(usable.to_numpy(), rule, design.confidence) if len(usable) else _no_values(0, rule)
        conditions.append(
            Condition(
                labels=labels,
                effect=effect,
                treatment_value=float(np.nanmean(_values(quantity, treated))) if len(treated) else math.nan,
                reference_value=float(np.nanmean(_values(quantity, reference))) if len(reference) else math.nan,
                horizon=None,
                left_out=int(per_seed.isna().sum()),
                treatment_diverged=_diverged_count(treated),
                reference_diverged=_diverged_count(reference),
                at=at,
                samples=usable,
            )
        )
    return conditions


def _pool_values(conditions: list[Condition], rule: Rule, confidence: float) -> Effect:
    """Each seed's mean over the conditions where its pair has a value."""
    per_seed = pd.concat([c.samples for c in conditions], axis=1).mean(axis=1, skipna=True).dropna()
    if per_seed.empty:
        return _no_values(0, rule)
    return _mean_effect(per_seed.to_numpy(), rule, confidence)


# -- the headline: pooled, or split where the conditions disagree -------------------------------


def _pool(claim: Claim, conditions: list[Condition], confidence: float) -> Effect:
    rule = rule_of(claim)
    if isinstance(claim.quantity, TimeToTarget):
        return _pool_times(conditions, rule, confidence)
    return _pool_values(conditions, rule, confidence)


def _judged_side(claim: Claim, label: str, conditions: list[Condition], confidence: float) -> Side:
    """One headline verdict over `conditions`; none where they themselves disagree in direction."""
    effect = _pool(claim, conditions, confidence)
    directions = [heterogeneity.direction(c.effect, claim.predicts) for c in conditions]
    if heterogeneity.disagree(directions):
        effect = replace(effect, verdict=INCONCLUSIVE, reason="its conditions disagree in direction", p_value=1.0)
    return Side(label, effect, len(conditions))


def _headline(claim: Claim, conditions: list[Condition], confidence: float) -> tuple[tuple[Side, ...], str | None]:
    """The pooled verdict, or one per value of the axis the conditions' directions depend on."""
    directions = [heterogeneity.direction(c.effect, claim.predicts) for c in conditions]
    axis = heterogeneity.split_axis([dict(c.labels) for c in conditions], directions)
    if axis is None:
        return (_judged_side(claim, "", conditions, confidence),), None
    values = list(dict.fromkeys(dict(c.labels)[axis] for c in conditions))
    return tuple(
        _judged_side(claim, f"{axis} {value}", [c for c in conditions if dict(c.labels)[axis] == value], confidence)
        for value in values
    ), axis


def _with_stated(claim: Claim, sides: tuple[Side, ...]) -> tuple[Side, ...]:
    """Each side's effect with where the claim's own number lies against its intervals."""
    if claim.stated is None:
        return sides
    stated = []
    for side in sides:
        bounds = [(i.low, i.high) for i in (side.effect.interval, side.effect.check) if i is not None]
        comparison = compare_stated(bounds, claim.stated) if bounds else ""
        stated.append(replace(side, effect=replace(side.effect, stated=comparison)))
    return tuple(stated)


# -- an interaction: how an effect changes along an axis ----------------------------------------


def _interaction_side(claim: Claim, conditions: list[Condition], confidence: float) -> Side:
    """Per seed: the mean effect at the upper half of the axis's values minus the mean at the lower half."""
    axis = claim.quantity.across
    values = sorted({dict(c.at)[axis] for c in conditions})
    upper = set(values[len(values) // 2 :])
    high = [c.samples for c in conditions if dict(c.at)[axis] in upper]
    low = [c.samples for c in conditions if dict(c.at)[axis] not in upper]
    per_seed = (pd.concat(high, axis=1).mean(axis=1) - pd.concat(low, axis=1).mean(axis=1)).dropna()
    rule = rule_of(claim)
    if per_seed.empty:
        return Side("", _no_values(0, rule), len(conditions))
    return Side("", _mean_effect(per_seed.to_numpy(), rule, confidence), len(conditions))


# -- answering a claim on one column -------------------------------------------------------------


def _pooled_over(claim: Claim, rows: pd.DataFrame, design: Design) -> tuple[tuple[str, tuple[str, ...]], ...]:
    return tuple(
        (a, tuple(_values_text([v]) for v in _present(rows, a)))
        for a in _condition_axes(claim, design)
        if rows[a].nunique() > 1
    )


def _answer_column(claim: Claim, treatment_value: object, rows: pd.DataFrame, column: str, design: Design) -> Answer:
    quantity = claim.quantity
    timing = None
    if quantity.timed:
        timing = comparable_timing(rows)
        rows = timing.kept
    if isinstance(quantity, Spread):
        rows, design = _spread_rows(quantity, rows, design)
        claim = replace(claim, quantity=Difference("spread", quantity.label, quantity.margin))
    if isinstance(quantity, Interaction) and (
        quantity.across not in design.axes or rows[quantity.across].nunique() < 2
    ):
        return Answer(column, (), (), (), missing=f"{quantity.across} does not vary in this study")
    paired = list(paired_groups(claim, treatment_value, rows, design))
    pooled_over = _pooled_over(claim, rows, design)
    if not paired:
        return Answer(column, (), (), pooled_over, missing="no paired runs", timing=timing)
    if isinstance(quantity, TimeToTarget):
        conditions = _time_conditions(claim, paired, column, design)
        keys = design.targets_on(column, quantity.on)
        if len(keys) > 1:
            pooled_over += ((TARGET, tuple(design.target_labels[k] for k in keys)),)
        if not conditions:
            return Answer(column, (), (), pooled_over, missing="no targets on this quantity", timing=timing)
        reached = [c for c in conditions if c.samples.reached_by_any]
        unreached = tuple(_condition_text(c) for c in conditions if not c.samples.reached_by_any)
        sides, depends_on = _headline(claim, reached or conditions, design.confidence)
        return Answer(
            column, _with_stated(claim, sides), tuple(conditions), pooled_over, depends_on,
            unreached=unreached if reached else (), timing=timing,
            moving_estimate=_pooled_moving(reached) if reached else None,
        )  # fmt: skip
    conditions = _value_conditions(claim, paired, design)
    if isinstance(quantity, Interaction):
        sides, depends_on = (_interaction_side(claim, conditions, design.confidence),), None
    else:
        sides, depends_on = _headline(claim, conditions, design.confidence)
    left_out = sum(c.left_out for c in conditions)
    return Answer(
        column, _with_stated(claim, sides), tuple(conditions), pooled_over, depends_on,
        left_out=left_out, timing=timing,
    )  # fmt: skip


def _pooled_moving(conditions: list[Condition]) -> float | None:
    """The pooled speed-up on moving BN statistics, over the same conditions and seeds as the verdict's;
    None where no condition's times differ from the verdict's (no BN, or no recomputed statistics)."""
    if all(c.moving_estimate is None for c in conditions):
        return None
    common = sorted(set.intersection(*(set(c.samples.seeds) for c in conditions)))
    return _moving_speedup([c.moving_samples.restricted_to(common) for c in conditions])


def _condition_text(condition: Condition) -> str:
    return ", ".join(f"{axis} {value}" for axis, value in condition.labels) or "all runs"


def _spread_rows(quantity: Spread, rows: pd.DataFrame, design: Design) -> tuple[pd.DataFrame, Design]:
    """One row per run of the other axes: the metric's max - min across the values of `quantity.across`.

    A diverged run enters at chance accuracy (outcomes.py): the worst outcome, so the spread it leaves is
    the largest its group could show, never one over the runs that happened to survive.
    """
    others = [a for a in design.axes if a != quantity.across]
    values = outcomes.run_values(rows, quantity.metric)
    grouped = values.groupby([rows[a] for a in others], sort=True, dropna=False)
    spread = (grouped.max() - grouped.min()).where(grouped.count() == grouped.size())
    broken = outcomes.diverged(rows).groupby([rows[a] for a in others], sort=True, dropna=False).any()
    table = spread.rename("spread").reset_index()
    table["outcome"] = np.where(broken.to_numpy(), outcomes.DIVERGED, "completed")
    return table, replace(design, axes=others)


def _level_answer(claim: Claim, rows: pd.DataFrame, column: str, design: Design) -> Answer:
    """The metric's mean per configuration (every axis but the seed and the column), each judged on its own."""
    quantity: Level = claim.quantity
    condition_axes = [a for a in design.axes if a not in (SEED_AXIS, ANSWER_COLUMNS_AXIS)]
    varying = [a for a in condition_axes if rows[a].nunique() > 1]
    conditions = []
    groups = rows.groupby(condition_axes, sort=True, dropna=False) if condition_axes else [((), rows)]
    for keys, group in groups:
        keys = keys if isinstance(keys, tuple) else (keys,)
        labels = tuple((a, _values_text([v])) for a, v in zip(condition_axes, keys, strict=True) if a in varying)
        values = outcomes.run_values(group, quantity.metric)
        usable = values.dropna().to_numpy()
        effect = (
            level_effect(usable, quantity.low, quantity.high, design.confidence)
            if len(usable)
            else Effect(math.nan, None, None, 0, False, INCONCLUSIVE, NO_VALUES, within=(quantity.low, quantity.high))
        )
        conditions.append(
            Condition(
                labels,
                effect,
                effect.estimate,
                math.nan,
                None,
                left_out=int(values.isna().sum()),
                treatment_diverged=_diverged_count(group),
            )  # fmt: skip
        )
    pooled_over = tuple(
        (a, tuple(_values_text([v]) for v in _present(rows, a))) for a in condition_axes if a in varying
    )
    if not conditions:
        return Answer(column, (), (), pooled_over, missing="no runs with a value")
    sides = tuple(Side(_condition_text(c) if len(conditions) > 1 else "", c.effect, 1) for c in conditions)
    verdicts = {c.effect.verdict for c in conditions}
    depends_on = " × ".join(varying) if len(verdicts) > 1 else None
    return Answer(
        column, _with_stated(claim, sides), tuple(conditions), pooled_over, depends_on,
        left_out=sum(c.left_out for c in conditions),
    )  # fmt: skip


def answer_claim(question: Question, claim: Claim, results: pd.DataFrame, design: Design) -> list[Finding]:
    """One finding per treatment value: the claim answered on each dataset, or why it cannot be."""

    def statement_of(treatment: object | None) -> str:
        return claim.statement.format(
            treatment=describe(claim.axis, treatment) if treatment is not None else f"any other {claim.axis}",
            reference=describe(claim.axis, claim.reference),
        )

    def missing(reason: str, treatment: object | None = claim.treatment) -> list[Finding]:
        return [Finding(question, claim, statement_of(treatment), treatment, missing=reason)]

    for axis, wanted in claim.where.items():
        if not results[axis].isin(wanted).any():
            return missing(_absent(results, axis, wanted))
    rows = claim_rows(claim, results)
    if rows.empty:
        return missing(f"no runs with {', '.join(f'{a} {_values_text(list(w))}' for a, w in claim.where.items())}")
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


def headline_sides(answered: list[tuple[Question, list[Finding]]]) -> list[Side]:
    """Every headline verdict the answers make, in page order (what multiplicity.py controls)."""
    return [side for _, findings in answered for f in findings for a in f.answers for side in a.sides]
