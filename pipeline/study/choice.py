"""The learning rate of each configuration, chosen on validation from its sweep runs.

The rule, stated in the file the choose stage writes (pipeline/choose.py): a rate's score is the
mean of `choose_by` over the sweep seeds; a rate for which any seed diverged (or has no value)
scores worst; the best score wins (highest, or lowest for a loss); equal scores go to the smaller
rate, and so does a configuration whose every rate diverged. The test set is never read.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

from pipeline.cell.outputs import METRICS
from pipeline.errors import UserError
from pipeline.study.axes import format_value
from pipeline.study.cells import expand_sweep
from pipeline.study.schema import LEARNING_RATE, SWEEP_SCORES, Params

SCORE_DECIMALS = 9  # scores equal to this many decimals are a tie: float noise in a mean decides nothing
RULE = (
    "score = mean of {choose_by} over the sweep seeds {seeds} ({epochs} epoch(s) each), rounded to "
    f"{SCORE_DECIMALS} decimals; a rate for which any seed "
    "diverged or has no value scores worst; the {direction} score wins; equal scores go to the smaller rate, "
    "and so does a configuration whose every rate diverged"
)


def score(runs: list[dict], choose_by: str) -> float | None:
    """The rate's score from its sweep runs' metrics; None (worst) when one diverged or has no finite value."""
    values = []
    for run in runs:
        value = run.get(choose_by)
        if run.get("outcome") == "diverged" or value is None or not math.isfinite(float(value)):
            return None
        values.append(float(value))
    return round(sum(values) / len(values), SCORE_DECIMALS)


def pick(scores: dict[float, float | None], choose_by: str) -> float:
    """The chosen rate: best score, ties and all-worst to the smaller rate."""
    sign = -1.0 if SWEEP_SCORES[choose_by] == "max" else 1.0
    return min(
        scores, key=lambda rate: (scores[rate] is None, 0.0 if scores[rate] is None else sign * scores[rate], rate)
    )


def choose(params: Params, sweep_dir: Path) -> dict:
    """The chosen file's contents, from the sweep cells' metrics under `sweep_dir`."""
    sweep = params.sweep
    if sweep is None:
        raise UserError("the study has no `sweep:` section: there is no learning rate to choose")
    runs: dict[str, dict[float, list[dict]]] = {}
    axes: dict[str, dict] = {}
    for cell in expand_sweep(params):
        path = sweep_dir / cell.name / METRICS
        try:
            metrics = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            raise UserError(
                f"{path}: no readable sweep result; run `dvc repro` (its stage sweep@{cell.name})"
            ) from None
        rate = float(cell[LEARNING_RATE])
        runs.setdefault(cell.configuration, {}).setdefault(rate, []).append(metrics)
        axes[cell.configuration] = {k: v for k, v in cell.axes if k not in ("seed", LEARNING_RATE)}
    configurations = {}
    for name, by_rate in runs.items():
        scores = {rate: score(by_rate[rate], sweep.choose_by) for rate in sorted(by_rate)}
        configurations[name] = {
            "axes": axes[name],
            "learning_rate": pick(scores, sweep.choose_by),
            "scores": {format_value(rate): value for rate, value in scores.items()},
            "diverged": [
                format_value(r) for r in sorted(by_rate) if any(m.get("outcome") == "diverged" for m in by_rate[r])
            ],
        }
    return {
        "choose_by": sweep.choose_by,
        "direction": SWEEP_SCORES[sweep.choose_by],
        "rule": RULE.format(
            choose_by=sweep.choose_by,
            seeds=sweep.seeds,
            epochs=sweep.epochs,
            direction="highest" if SWEEP_SCORES[sweep.choose_by] == "max" else "lowest",
        ),
        "learning_rates": list(sweep.learning_rates),
        "seeds": list(sweep.seeds),
        "epochs": sweep.epochs,
        "configurations": dict(sorted(configurations.items())),
    }
