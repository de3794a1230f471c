"""Build the report from the cells' outputs: answers, evidence, every run, provenance.

Reads <cells>/*/metrics.json and history.csv (through `collect`), the params, and
optionally a dvc.lock (its digest goes into provenance) and an MLflow server (run
links, when MLFLOW_TRACKING_URI is one). Returns the page, the tidy per-run table
and the DVC metrics; writes nothing itself.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import NamedTuple

import pandas as pd

from pipeline.errors import UserError
from pipeline.provenance import library_versions
from pipeline.report import diagnostics, effects, figures, multiplicity, tables, thresholds
from pipeline.report.answers_view import questions_view, without_figures
from pipeline.report.collect import LR_POLICY, Runs, axes_of, collect_runs, configuration_axes
from pipeline.report.dvc_curves import curves_by_dataset
from pipeline.report.dvc_metrics import study_metrics
from pipeline.report.findings import Design, Finding, answer_questions
from pipeline.report.lockfile import lock_digest
from pipeline.report.mlflow_links import RunLinks, run_links
from pipeline.report.power import POWER
from pipeline.report.questions import ANSWER_COLUMNS_AXIS, questions_for
from pipeline.report.render import png_data_uri, render_report
from pipeline.report.setup_text import setup_text
from pipeline.report.sweep import collect_sweep
from pipeline.report.verdicts import MIN_PAIRED_SEEDS
from pipeline.study.axes import format_value
from pipeline.study.cells import Cell, axis_label
from pipeline.study.chosen import read_chosen
from pipeline.study.schema import LEARNING_RATE, Params
from pipeline.study.targets import TRAIN_LOSS, VAL_ACCURACY, target_key
from pipeline.tracking.settings import TrackingSettings


def design_of(params: Params) -> Design:
    datasets = params.matrix["dataset"]
    return Design(
        axes=axes_of(params),
        targets={d: [t.key for t in params.targets_for(d)] for d in datasets},
        target_labels={t.key: t.label for d in datasets for t in params.targets_for(d)},
        confidence=params.report.confidence,
        target_quantities={t.key: t.quantity for d in datasets for t in params.targets_for(d)},
    )


def _values(results: pd.DataFrame, column: str) -> str:
    """The distinct values of a column, in their own order (0.001 before 0.01, 32 before 128)."""
    return ", ".join(tables.value_text(v) for v in sorted(results[column].unique()))


def _span(values: pd.Series) -> str:
    """ "1400", or "700–1400" where runs differ (a batch-size or epochs axis)."""
    low, high = int(values.min()), int(values.max())
    return f"{low}" if low == high else f"{low}–{high}"


def _curve_drawer(
    results: pd.DataFrame, runs: Runs, design: Design, params: Params
) -> Callable[[Finding, str], str | None]:
    """Draws a speed finding's speed-up over every target level of one column (thresholds.py)."""
    histories, steps = thresholds.by_name(runs.histories), thresholds.by_name(runs.steps)

    def draw(finding: Finding, column: str) -> str | None:
        curves = thresholds.finding_curves(
            finding, column, results, design, histories, steps, params.report.loss_window
        )
        declared = {
            quantity: [t.value for t in params.targets_for(column) if t.quantity == quantity]
            for quantity in (VAL_ACCURACY, TRAIN_LOSS)
        }
        png = figures.plot_speedup_curves(curves, declared, finding.claim.quantity.margin, finding.statement)
        return png_data_uri(png) if png else None

    return draw


def _dataset_view(
    params: Params, dataset: str, results: pd.DataFrame, histories: dict[Cell, pd.DataFrame], links: RunLinks
) -> dict:
    targets = params.targets_for(dataset)
    axes = axes_of(params)
    by = [axis for axis in configuration_axes(params) if axis != "dataset"]
    keys = [t.key for t in targets]
    runs = results[results["dataset"] == dataset]
    labels = {t.key: t.label for t in targets}
    accuracies = [t.value for t in targets if t.quantity == VAL_ACCURACY]
    return {
        "name": dataset,
        "targets": [t.label for t in targets],
        "budget": _span(runs["budget_steps"]),
        "steps_per_epoch": _span(runs["steps_per_epoch"]),
        "curves": png_data_uri(figures.plot_curves(dataset, histories, accuracies, axes, _diverged(runs, histories))),
        "survival_steps": png_data_uri(figures.plot_survival(dataset, results, labels, "steps", axes)),
        "survival_seconds": png_data_uri(figures.plot_survival(dataset, results, labels, "seconds", axes)),
        **_diagnostics_view(dataset, runs, histories, axes),
        "axis_labels": [axis_label(axis) for axis in by],
        "configurations": tables.configuration_rows(runs, by, keys, params.report.confidence),
        "runs": tables.run_rows(runs, keys, links.by_cell),
    }


def _diagnostics_view(dataset: str, runs: pd.DataFrame, histories: dict[Cell, pd.DataFrame], axes: list[str]) -> dict:
    """The gradient-norm and BN-statistics figures of a dataset, the scalars' spread and the BN text (None: not recorded)."""
    mine = {cell: history for cell, history in histories.items() if cell.dataset == dataset}
    gradient_norms = figures.plot_gradient_norms(dataset, mine, axes)
    bn_statistics = figures.plot_bn_statistics(dataset, mine, axes)
    ratios = pd.to_numeric(runs[diagnostics.GRAD_RATIO], errors="coerce").dropna()
    return {
        "gradient_norms": png_data_uri(gradient_norms) if gradient_norms else None,
        "grad_ratio_range": (
            f"{ratios.min():.3g} to {ratios.max():.3g} over {len(ratios)} runs" if len(ratios) else None
        ),
        "bn_statistics": png_data_uri(bn_statistics) if bn_statistics else None,
        "bn_explanation": diagnostics.bn_gap_explanation(mine, axes),
        "bn_tolerance": f"{diagnostics.BN_GAP_TOLERANCE:g}",
    }


def _grid_edge(rate: float, grid: list[float]) -> str:
    """ "lowest" or "highest" where a chosen rate lies at an end of the grid (the best may lie beyond it), else ""."""
    if len(grid) > 1 and rate == min(grid):
        return "lowest"
    if len(grid) > 1 and rate == max(grid):
        return "highest"
    return ""


def _tuned_view(
    params: Params, tuned: pd.DataFrame, chosen: dict, questions: list[dict], sweep: pd.DataFrame | None = None
) -> dict:
    """The tuned runs beside the fixed ones: what was chosen from which scores (a table, and per dataset the
    sweep's learning-rate sensitivity, drawn from chosen.json), the answers, the tables."""
    rates = [format_value(r) for r in chosen["learning_rates"]]
    grid = [float(r) for r in chosen["learning_rates"]]
    rows = []
    for name, entry in chosen["configurations"].items():
        scores = entry["scores"]
        rows.append(
            {
                "name": name,
                "rate": format_value(entry["learning_rate"]),
                "edge": _grid_edge(float(entry["learning_rate"]), grid),
                "scores": [
                    {
                        "text": "diverged" if r in entry["diverged"] else tables.number(scores.get(r)),
                        "diverged": r in entry["diverged"],
                    }
                    for r in rates
                ],
            }
        )
    by = [axis for axis in configuration_axes(params) if axis != "dataset"]
    datasets = []
    for dataset in params.matrix["dataset"]:
        keys = [target_key(t) for t in params.targets_for(dataset)]
        runs = tuned[tuned["dataset"] == dataset]
        sweep_png = figures.plot_sweep(dataset, chosen, axes_of(params))
        datasets.append(
            {
                "name": dataset,
                "sweep_figure": png_data_uri(sweep_png) if sweep_png else None,
                "targets": [t.label for t in params.targets_for(dataset)],
                "axis_labels": [axis_label(axis) for axis in by],
                "configurations": tables.configuration_rows(runs, by, keys, params.report.confidence),
            }
        )
    return {
        "grid": ", ".join(rates),
        "rates": rates,
        "budget": f"{chosen['epochs']} epoch(s), sweep seeds {', '.join(map(str, chosen['seeds']))}",
        "epochs": chosen["epochs"],
        "seeds": ", ".join(map(str, chosen["seeds"])),
        "sweep_runs": None if sweep is None else len(sweep),
        "rule": chosen["rule"],
        "choose_by": chosen["choose_by"],
        "n_cells": len(tuned),
        "chosen": rows,
        "at_edge": sum(bool(row["edge"]) for row in rows),
        "reported_seeds": ", ".join(tables.value_text(s) for s in sorted(tuned["seed"].unique())),
        "columns": sorted(tuned[ANSWER_COLUMNS_AXIS].unique()),
        "questions": questions,
        "datasets": datasets,
    }


def build_report(
    params: Params,
    cells_dir: Path,
    lock_path: Path | None = None,
    links: RunLinks | None = None,
    tuned_dir: Path | None = None,
    chosen_path: Path | None = None,
    claims_files: Sequence[Path] = (),
    out_dir: Path = Path("reports"),
    sweep_dir: Path | None = None,
    tracking: TrackingSettings | None = None,
) -> Report:
    """The page, the tidy table (one row per run), the DVC metrics and the answers, all from the cells' outputs.

    `claims_files` are other studies' answers (their findings.json: the claim studies run with
    this one), shown on this page as the articles' claims, each linking to its study's page
    (relative to `out_dir`, where this page goes).

    With `tuned_dir` and `chosen_path` (a study with `sweep:`), the tuned runs are read too:
    answered and tabled on their own, beside the fixed-rate ones, never pooled with them; and per
    dataset the sweep's learning-rate sensitivity is drawn from chosen.json. With `sweep_dir` the
    sweep runs are read too (`sweep_table`), and must be those chosen.json was computed from.
    """
    runs = collect_runs(params, cells_dir)
    results, histories = runs.results, runs.histories
    design = design_of(params)
    axes = axes_of(params)
    questions_declared = questions_for(params.report.questions)
    answered = [answer_questions(results, design, questions_declared)]
    tuned = None
    if tuned_dir is not None and chosen_path is not None:
        chosen = read_chosen(chosen_path)
        sweep = None if sweep_dir is None else collect_sweep(params, sweep_dir, chosen, chosen_path)
        rates = {name: float(entry["learning_rate"]) for name, entry in chosen["configurations"].items()}
        tuned_runs = collect_runs(params, tuned_dir, rates)
        tuned = tuned_runs.results
        answered.append(answer_questions(tuned, design, questions_declared))
    # The fixed-rate and the tuned answers are this page's headline verdicts: controlled together.
    answered, family = multiplicity.control(answered, params.report.confidence)
    questions = questions_view(answered[0], results, _curve_drawer(results, runs, design, params))
    tuned_view = None
    if tuned is not None:
        tuned_questions = questions_view(answered[1], tuned, _curve_drawer(tuned, tuned_runs, design, params))
        tuned_view = _tuned_view(params, tuned, chosen, tuned_questions, sweep)
    if links is None:
        links = run_links(params, list(results["cell"]), tracking) if tracking is not None else RunLinks()
    lock = lock_digest(lock_path)
    has_bn_contrast = results["bn"].nunique() > 1
    html = render_report(
        study=params.study.name,
        n_cells=len(results),
        axes_text="; ".join(
            f"{axis_label(axis)} {', '.join(tables.value_text(v) for v in values)}"
            for axis, values in params.matrix.items()
        ),
        problem_axes=", ".join(axis_label(a) for a in axes if a not in ("bn", "seed")),
        setup=setup_text(results, axes),
        confidence_pct=f"{params.report.confidence * 100:g}",
        family=family,
        family_alpha_pct=f"{family.alpha * 100:g}",
        power_pct=f"{POWER * 100:g}",
        min_seeds=MIN_PAIRED_SEEDS,
        resamples=effects.BOOTSTRAP_RESAMPLES,
        bootstrap_seed=effects.BOOTSTRAP_SEED,
        columns=sorted(results[ANSWER_COLUMNS_AXIS].unique()),
        questions=questions,
        article_claims=[_article_claims_view(path, out_dir) for path in claims_files],
        unpublished=sorted(results.loc[~results["published_data"].astype(bool), "dataset"].unique()),
        batch_size=_values(results, "train.batch_size"),
        evals_per_epoch=_values(results, "train.evals_per_epoch"),
        warmup_steps=int(results["throughput_warmup_steps"].max()),
        loss_window=params.report.loss_window,
        datasets=[_dataset_view(params, d, results, histories, links) for d in params.matrix["dataset"]],
        heatmap=png_data_uri(figures.plot_accuracy_heatmap(results, axes)),
        profiles=(
            png_data_uri(figures.plot_performance_profiles(results, design.targets, axes)) if has_bn_contrast else None
        ),
        learning_rates=(
            png_data_uri(figures.plot_learning_rate_sensitivity(results, axes)) if LEARNING_RATE in axes else None
        ),
        not_measured=_not_measured(results, histories, swept=tuned_view is not None),
        links_note=links.note,
        git_commits=sorted(results["git_commit"].dropna().unique()),
        data_digests={d: results.loc[results["dataset"] == d, "data_digest"].iloc[0] for d in params.matrix["dataset"]},
        devices=sorted(results["device"].dropna().unique()) if "device" in results else [],
        backends=sorted(results["backend"].dropna().unique()) if "backend" in results else [],
        versions=library_versions(),
        lock=lock,
        mlflow_command="uv run mlflow ui --backend-store-uri sqlite:///mlflow.db",
        tuned=tuned_view,
    )
    tidy = _tidy(results, axes)
    if tuned is not None:
        tidy = pd.concat([tidy, _tidy(tuned, axes)], ignore_index=True)
    metrics = study_metrics(answered[0], answered[1] if tuned is not None else None)
    answers = {
        "study": params.study.name,
        "columns": sorted(results[ANSWER_COLUMNS_AXIS].unique()),
        "questions": without_figures(questions),
        "setup": setup_text(results, axes),
        "multiplicity": {"verdicts": family.verdicts, "decided": family.decided, "demoted": family.demoted},
    }
    return Report(html, tidy, metrics, answers, curves_by_dataset(histories))


SWEEP_CSV = "sweep.csv"


def sweep_table(params: Params, sweep_dir: Path, chosen_path: Path) -> pd.DataFrame:
    """sweep.csv: one row per sweep run (its configuration's axes, rate, seed, score, diverged, chosen).

    The runs must be those chosen.json was computed from (pipeline/report/sweep.py checks it).
    """
    return collect_sweep(params, sweep_dir, read_chosen(chosen_path), chosen_path)


class Report(NamedTuple):
    html: str
    results: pd.DataFrame  # results.csv: one row per run
    metrics: dict  # the study's DVC metrics: each headline answer (dvc_metrics.py)
    answers: dict  # findings.json: the study, its answer columns and its questions' view, for another page
    curves: dict[str, pd.DataFrame]  # per dataset, the validation curves DVC's plot overlays (dvc_curves.py)


def _article_claims_view(path: Path, out_dir: Path) -> dict:
    """Another study's answers (its findings.json), with links into its page relative to this one."""
    if not path.is_file():
        raise UserError(f"{path}: no answers of that study; run its report stage first (`dvc repro`)")
    answers = json.loads(path.read_text(encoding="utf-8"))
    page = os.path.relpath(path.parent / "index.html", out_dir)
    return {**answers, "page": Path(page).as_posix()}


def _diverged(runs: pd.DataFrame, histories: dict[Cell, pd.DataFrame]) -> frozenset[Cell]:
    names = set(runs.loc[runs["outcome"] == "diverged", "cell"])
    return frozenset(cell for cell in histories if cell.name in names)


def _not_measured(results: pd.DataFrame, histories: dict[Cell, pd.DataFrame], swept: bool = False) -> list[str]:
    """Evidence the page would show if the runs recorded it (`swept`: the sweep's sensitivity is shown)."""
    missing = []
    if results[LEARNING_RATE].nunique() < 2 and not swept:
        missing.append(
            f"learning-rate sensitivity (the runs share one learning rate; a study sweeps it with the axis {LEARNING_RATE})"
        )
    if not any(diagnostics.gradient_layers(h) for h in histories.values()):
        missing.append("per-layer gradient norms (the histories record none)")
    if not any(diagnostics.RECOMPUTED in h.columns for h in histories.values()):
        missing.append("validation accuracy with recomputed BN statistics (the histories record none)")
    return missing


def _tidy(results: pd.DataFrame, axes: list[str]) -> pd.DataFrame:
    """One row per run: its name and axes first, then its settings, then every measurement."""
    settings = sorted(c for c in results.columns if c.startswith("train.") and c not in axes)
    first = ["cell", *axes, LR_POLICY, *settings]
    return results[first + [c for c in results.columns if c not in first]]


def write_report(
    params: Params,
    cells_dir: Path,
    out_dir: Path,
    lock_path: Path | None = None,
    tuned_dir: Path | None = None,
    chosen_path: Path | None = None,
    claims_files: Sequence[Path] = (),
    sweep_dir: Path | None = None,
    tracking: TrackingSettings | None = None,
    metrics_path: Path | None = None,
    curves_prefix: Path | None = None,
) -> int:
    """Build the report and write index.html, results.csv and findings.json into `out_dir`,
    and with `sweep_dir` (and `chosen_path`) sweep.csv: one row per sweep run (`sweep_table`).

    DVC's views, where asked: the headline answers at `metrics_path` (dvc_metrics.py), and per
    dataset the validation curves at `<curves_prefix>_<dataset>.csv` (dvc_curves.py).
    Returns the run count.
    """
    report = build_report(
        params,
        cells_dir,
        lock_path=lock_path,
        tuned_dir=tuned_dir,
        chosen_path=chosen_path,
        claims_files=claims_files,
        out_dir=out_dir,
        sweep_dir=sweep_dir,
        tracking=tracking,
    )
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "index.html").write_text(report.html, encoding="utf-8")
    report.results.to_csv(out_dir / "results.csv", index=False, float_format="%.6g")
    if sweep_dir is not None and chosen_path is not None:
        sweep_table(params, sweep_dir, chosen_path).to_csv(out_dir / SWEEP_CSV, index=False, float_format="%.6g")
    _write_json(out_dir / "findings.json", report.answers)
    if metrics_path is not None:
        _write_json(metrics_path, report.metrics)
    if curves_prefix is not None:
        for dataset, curves in report.curves.items():
            path = curves_prefix.with_name(f"{curves_prefix.name}_{dataset}.csv")
            path.parent.mkdir(parents=True, exist_ok=True)
            curves.to_csv(path, index=False, float_format="%.6g")
    return len(report.results)


def _write_json(path: Path, content: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    # allow_nan=False: a NaN or infinity would make a file DVC cannot read; dvc_metrics.py writes null
    path.write_text(json.dumps(content, indent=2, sort_keys=True, allow_nan=False) + "\n", encoding="utf-8")
