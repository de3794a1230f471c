"""The page's tables and wording: numbers from the results, formatted once, here.

Reads the per-run results and the answered findings; returns plain dicts and
strings for the template. Every sentence about an effect is built from its numbers.
"""

from __future__ import annotations

import math

import pandas as pd

from pipeline.report.effects import Effect, Interval
from pipeline.report.questions import Level, TimeToTarget, describe
from pipeline.report.stats import fmt_ci, mean_ci
from pipeline.report.survival import Median, censored_times, median_time, reach_rate, restricted_mean
from pipeline.report.verdicts import INSIDE, LARGER, NON_INFERIORITY, SMALLER, VERDICTS


def number(value: object, digits: int = 3) -> str:
    if value is None or pd.isna(value):
        return "–"
    return f"{value:.{digits}f}"


def _effect_number(value: float, ratio: bool) -> str:
    return f"{value:.2f}×" if ratio else f"{value:+.3f}"


def interval_text(interval: Interval | None, ratio: bool, level: bool = False) -> str:
    if interval is None:
        return "no interval"
    if ratio:
        return f"[{interval.low:.2f}, {interval.high:.2f}]"
    if level:
        return f"[{interval.low:.3f}, {interval.high:.3f}]"
    return f"[{interval.low:+.3f}, {interval.high:+.3f}]"


def effect_text(effect: Effect) -> str:
    if not math.isfinite(effect.estimate):
        return "no estimate"
    return f"{effect.estimate:.3f}" if effect.within else _effect_number(effect.estimate, effect.ratio)


def effect_interval_text(effect: Effect, interval: Interval | None) -> str:
    return interval_text(interval, effect.ratio, level=effect.within is not None)


def effect_sentence(finding, effect: Effect) -> str:
    """What the estimate says, in words, e.g. "no BN needed 2.31× the optimizer steps of BN after the activation"."""
    claim = finding.claim
    quantity = claim.quantity
    if effect.within is not None:
        low, high = effect.within
        where = "within" if low <= effect.estimate <= high else "outside"
        return (
            f"the runs' mean {quantity.metric.replace('_', ' ')} was {effect.estimate:.3f}, {where} [{low:g}, {high:g}]"
        )
    treatment = describe(claim.axis, finding.treatment)
    reference = describe(claim.axis, claim.reference)
    if isinstance(quantity, TimeToTarget):
        unit = "optimizer steps" if quantity.unit == "steps" else "training seconds"
        if not math.isfinite(effect.estimate):
            return f"neither {treatment} nor {reference} reached the target within the budget"
        if math.isclose(effect.estimate, 1.0):
            return f"{treatment} and {reference} needed the same {unit} (restricted means)"
        slow, fast, factor = (
            (reference, treatment, effect.estimate)
            if effect.estimate > 1
            else (treatment, reference, 1 / effect.estimate)
        )
        return f"{slow} needed {factor:.2f}× the {unit} of {fast} (restricted means)"
    if effect.estimate == 0:
        return f"{treatment} and {reference} ended level in {quantity.label}"
    direction = "higher" if effect.estimate > 0 else "lower"
    return f"{treatment} ended {abs(effect.estimate):.3f} {direction} in {quantity.label} than {reference}"


def condition_headers(finding) -> dict[str, str]:
    """Column headers of a finding's per-condition table, naming its two configurations and units."""
    claim = finding.claim
    quantity = claim.quantity
    if isinstance(quantity, TimeToTarget):
        unit = "steps" if quantity.unit == "steps" else "seconds"
        what, horizon = f"restricted mean {unit} (reached)", f"horizon ({unit})"
    elif isinstance(quantity, Level):
        return {"treatment": f"mean {quantity.metric.replace('_', ' ')}", "reference": "", "horizon": ""}
    else:
        what, horizon = f"mean {quantity.label}", ""
    return {
        "treatment": f"{describe(claim.axis, finding.treatment)}: {what}",
        "reference": f"{describe(claim.axis, claim.reference)}: {what}",
        "horizon": horizon,
    }


def pooled_over_text(answer) -> str:
    """ "activation relu, sigmoid × target 0.3, 0.4": what an answer pools over, with the values."""
    return " × ".join(f"{axis} {', '.join(values)}" for axis, values in answer.pooled_over)


def conditions_text(answer) -> str:
    """ "4 conditions (activation × target): 3 supported, 1 inconclusive"; "" for a single condition."""
    if len(answer.conditions) < 2:
        return ""
    counts = answer.verdict_counts()
    axes = " × ".join(axis for axis, _ in answer.pooled_over)
    tally = ", ".join(f"{counts[v]} {v}" for v in VERDICTS if v in counts)
    return f"{len(answer.conditions)} conditions ({axes}): {tally}"


def verdict_class(verdict: str) -> str:
    """The CSS class of a verdict ("no meaningful difference" -> "no-difference")."""
    return "no-difference" if verdict not in ("supported", "refuted", "inconclusive") else verdict


def margin_text(effect: Effect) -> str:
    """The smallest effect of interest as the verdict used it: "margin 1.1×", "margin ±0.010"."""
    if effect.margin is None:
        return ""
    if effect.ratio:
        text = f"margin {effect.margin:g}×"
    else:
        text = f"margin ±{effect.margin:.3g}"
    return f"non-inferiority {text}" if effect.test == NON_INFERIORITY else text


def detectable_text(effect: Effect) -> str:
    """ "n = 5 detects 1.42× (80% power)": the smallest effect the seeds can detect."""
    if effect.detectable is None:
        return ""
    if effect.ratio:
        size = f"{effect.detectable:.2f}×" if effect.detectable >= 1 else f"{1 / effect.detectable:.2f}×"
    else:
        size = f"±{effect.detectable:.3f}"
    return f"n = {effect.seeds} detects {size} (80% power)"


def stated_text(effect: Effect, said: str | None) -> str:
    """Where the article's own number lies against the intervals, in words."""
    said = said or "the article's number"
    return {
        INSIDE: f"{said}: inside the interval",
        SMALLER: f"{said}: the effect is smaller than claimed",
        LARGER: f"{said}: the effect is larger than claimed",
    }.get(effect.stated, f"{said}: the interval overlaps it" if effect.stated else "")


def timing_left_out_text(timing) -> str:
    """The first screen's word on a verdict in seconds: how many runs' timings it left out ("" for none)."""
    if timing is None or not timing.left_out:
        return ""
    return f"{timing.left_out} run(s)' seconds left out (not comparable)"


def timing_text(timing) -> str:
    """Which runs' seconds a verdict compared, and how many it left out and why."""
    if timing is None:
        return ""
    kept = len(timing.kept)
    parts = []
    if timing.resumed:
        parts.append(f"{timing.resumed} resumed")
    if timing.shared:
        parts.append(f"{timing.shared} that shared their device")
    if timing.other_device:
        parts.append(f"{timing.other_device} on another device")
    text = f"seconds of {kept} runs on {timing.device}" if timing.device else "no runs with comparable seconds"
    if parts:
        text += f"; left out: {', '.join(parts)}"
    if timing.sharing_unknown:
        text += f"; whether {timing.sharing_unknown} of them shared their device is not recorded"
    return text


def _median_text(median: Median, digits: int) -> str:
    if median.value is None:
        return f"not reached (> {median.followed:.{digits}f})"
    low = "–" if median.low is None else f"{median.low:.{digits}f}"
    high = "–" if median.high is None else f"{median.high:.{digits}f}"
    return f"{median.value:.{digits}f} [{low}, {high}]"


def value_text(value: object) -> str:
    """An axis value as the page shows it: 0.5, 0, 1e-05, true."""
    if isinstance(value, bool):
        return str(value).lower()
    return f"{value:g}" if isinstance(value, float) else str(value)


def configuration_rows(
    results: pd.DataFrame, by: list[str], target_keys: list[str], confidence: float
) -> list[dict[str, object]]:
    """One row per configuration (a value of each axis in `by`): time to each target (censored) and accuracy."""
    rows = []
    for keys, group in results.groupby(by, sort=False):
        keys = keys if isinstance(keys, tuple) else (keys,)
        budget = float(group["budget_steps"].max())
        targets = []
        for key in target_keys:
            steps = censored_times(group, key, "steps")
            seconds = censored_times(group, key, "seconds")
            rate = reach_rate(steps, confidence)
            targets.append(
                {
                    "reached": f"{rate.successes}/{rate.trials}",
                    "missed": rate.successes < rate.trials,
                    "wilson": f"[{rate.low:.2f}, {rate.high:.2f}]",
                    "median_steps": _median_text(median_time(steps, confidence), 0),
                    "restricted_steps": f"{float(restricted_mean(steps.times, steps.reached, budget)):.0f}",
                    "median_seconds": _median_text(median_time(seconds, confidence), 1),
                }
            )
        test = mean_ci(pd.to_numeric(group["test_accuracy"], errors="coerce"), confidence)
        throughput = mean_ci(pd.to_numeric(group["throughput_images_per_s"], errors="coerce"), confidence)
        rows.append(
            {
                "axes": [value_text(v) for v in keys],
                "seeds": len(group),
                "diverged": int((group["outcome"] == "diverged").sum()),
                "budget": f"{budget:.0f}",
                "targets": targets,
                "test": fmt_ci(test["mean"], test["ci_low"], test["ci_high"], 3, (0, 1)),
                "test_n": test["n"],
                "throughput": number(throughput["mean"], 0),
            }
        )
    return rows


def run_rows(results: pd.DataFrame, target_keys: list[str], links: dict[str, str]) -> list[dict[str, object]]:
    """One row per run, in matrix order; a miss shows where it was censored."""
    rows = []
    for _, run in results.iterrows():
        targets = []
        for key in target_keys:
            if bool(run[f"reached_{key}"]):
                targets.append(
                    {
                        "steps": f"{round(float(run[f'steps_to_{key}']), 1):g}",
                        "seconds": number(run[f"seconds_to_{key}"], 1),
                        "miss": False,
                    }
                )
            elif run["outcome"] == "diverged":  # stopped early, and never reaches it
                targets.append(
                    {"steps": f"never (diverged at {int(run['steps_trained'])})", "seconds": "", "miss": True}
                )
            else:  # censored where its budget ended
                targets.append(
                    {
                        "steps": f"miss (> {int(run['steps_trained'])})",
                        "seconds": f"> {number(run['train_seconds'], 1)}",
                        "miss": True,
                    }
                )
        rows.append(
            {
                "name": run["cell"],
                "link": links.get(run["cell"]),
                "outcome": run["outcome"],
                "targets": targets,
                "best_val": number(run.get("best_val_accuracy")),
                "final_val": number(run.get("final_val_accuracy")),
                "test": number(run.get("test_accuracy")),
                "throughput": number(run.get("throughput_images_per_s"), 0),
                "train_s": number(run.get("train_seconds"), 1),
            }
        )
    return rows
