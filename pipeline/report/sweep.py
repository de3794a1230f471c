"""The learning-rate sweep as the report reads it: one row per sweep run, checked against the choice.

Reads <sweep>/<sweep cell>/metrics.json for every sweep cell of the study (pipeline/study/cells.py
`expand_sweep`) and the choose stage's file (already read, as a dict). Returns the tidy table
written as reports/sweep.csv; writes nothing itself. The choice is recomputed from these runs
by the choose stage's own rule (pipeline/study/choice.py) and must match chosen.json, so the page's
sweep figure (drawn from chosen.json) and sweep.csv show the same runs the choice was made on.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from pipeline.cell.outputs import METRICS, read_cell_outputs
from pipeline.errors import UserError
from pipeline.report.collect import SEED, check_trained_as_the_study_says, configuration_axes
from pipeline.study import choice
from pipeline.study.axes import format_value
from pipeline.study.cells import expand_sweep, sweep_settings
from pipeline.study.schema import LEARNING_RATE, Params

SWEEP_POLICY = "sweep"  # metrics.json `lr_policy` of a sweep run


def sweep_columns(params: Params) -> list[str]:
    """sweep.csv's columns: the run, its configuration and axes, its rate and seed, then what the choice saw."""
    return [
        "cell",
        "configuration",
        *configuration_axes(params),
        LEARNING_RATE,
        SEED,
        "choose_by",
        "score",  # the run's value of choose_by as the rule counts it: empty (worst) where it diverged or has none
        "rate_score",  # the rate's score in chosen.json: the mean over the sweep seeds, empty where worst
        "diverged",
        "chosen",  # the rate is the one chosen for the run's configuration
    ]


def collect_sweep(params: Params, sweep_dir: Path, chosen: dict, chosen_path: Path) -> pd.DataFrame:
    """One row per sweep run (`sweep_columns`), in the sweep's order; refuses runs that disagree with chosen.json."""
    sweep = params.sweep
    if sweep is None:
        raise UserError("--sweep: the study has no `sweep:` section (no sweep runs to read)")
    stale = f"{chosen_path} is out of date with the sweep"
    for key, expected in (
        ("choose_by", sweep.choose_by),
        ("epochs", sweep.epochs),
        ("seeds", list(sweep.seeds)),
        ("learning_rates", list(sweep.learning_rates)),
    ):
        if chosen.get(key) != expected:
            raise UserError(
                f"{stale}: its {key} is {chosen.get(key)!r}, the study's sweep.{key} {expected!r}; "
                "run `dvc repro` (its stage choose)"
            )
    rows, by_rate = [], {}
    for cell in expand_sweep(params):
        folder = sweep_dir / cell.name
        if not (folder / METRICS).is_file():
            raise UserError(f"{folder}: no results for the sweep cell; run `dvc repro` (its stage sweep@{cell.name})")
        summary = read_cell_outputs(folder).summary
        check_trained_as_the_study_says(sweep_settings(params, cell), summary, folder)
        if summary.get("lr_policy") != SWEEP_POLICY:
            raise UserError(f"{folder} holds a {summary.get('lr_policy')} run, not a sweep one; run `dvc repro` again")
        entry = chosen["configurations"].get(cell.configuration)
        if entry is None:
            raise UserError(f"{stale}: it has no {cell.configuration}; run `dvc repro` (its stage choose)")
        rate = float(cell[LEARNING_RATE])
        by_rate.setdefault((cell.configuration, rate), []).append(summary)
        # this run alone, as the rule counts it: None (worst) where it diverged, whatever it reached before
        counted = choice.score([summary], sweep.choose_by)
        rows.append(
            {
                "cell": cell.name,
                "configuration": cell.configuration,
                **{axis: cell[axis] for axis in configuration_axes(params)},
                LEARNING_RATE: rate,
                SEED: cell.seed,
                "choose_by": sweep.choose_by,
                "score": counted,
                "rate_score": entry["scores"].get(format_value(rate)),
                "diverged": summary.get("outcome") == "diverged",
                "chosen": rate == float(entry["learning_rate"]),
            }
        )
    for (configuration, rate), runs in by_rate.items():
        entry = chosen["configurations"][configuration]
        recorded = entry["scores"].get(format_value(rate))
        if recorded != choice.score(runs, sweep.choose_by):
            raise UserError(
                f"{stale}: {configuration} at learning rate {format_value(rate)} scores {recorded!r} there, "
                f"{choice.score(runs, sweep.choose_by)!r} from the runs in {sweep_dir}; run `dvc repro` (its stage choose)"
            )
    return pd.DataFrame(rows, columns=sweep_columns(params))
