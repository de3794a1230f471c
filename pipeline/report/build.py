"""Build the report from the cells' outputs: answers, evidence, every run, provenance.

Reads <cells>/*/metrics.json and history.csv (through `collect`), the params, and
optionally a dvc.lock (its digest goes into provenance) and an MLflow server (run
links, when MLFLOW_TRACKING_URI is one). Returns the page, the tidy per-run table
and the DVC metrics; writes nothing itself.
"""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd

from pipeline.cells import Cell
from pipeline.convergence import target_key
from pipeline.params import Params
from pipeline.provenance import library_versions
from pipeline.report import effects, figures, tables
from pipeline.report.collect import AXES, SETTINGS, collect_results
from pipeline.report.findings import Design, answer_questions
from pipeline.report.lockfile import lock_digest
from pipeline.report.mlflow_links import RunLinks, run_links
from pipeline.report.questions import ANSWER_COLUMNS_AXIS, TimeToTarget
from pipeline.report.render import png_data_uri, render_report
from pipeline.report.stats import summarize


def _design(params: Params) -> Design:
    datasets = params.matrix.dataset
    return Design(
        axes=AXES,
        targets={d: [target_key(t) for t in getattr(params.targets, d)] for d in datasets},
        target_labels={target_key(t): f"{t:g}" for d in datasets for t in getattr(params.targets, d)},
        confidence=params.report.confidence,
        settings=SETTINGS,
    )


def _setup_text(results: pd.DataFrame, params: Params) -> str:
    """The conditions every answer holds under, from the runs: architecture, optimizer, learning rate, budget."""

    def values(column: str) -> str:
        return ", ".join(sorted({f"{v:g}" if isinstance(v, float) else str(v) for v in results[column]}))

    fixed = "a fixed learning rate" if results["learning_rate"].nunique() == 1 else "fixed learning rates"
    budgets = ", ".join(
        f"{d} {int(group['budget_steps'].max())} steps" for d, group in results.groupby("dataset", sort=False)
    )
    return (
        f"architecture {values('architecture')}, {values('optimizer')} at {fixed} {values('learning_rate')} "
        f"(not tuned per configuration), {params.train.epochs} epoch{'s' if params.train.epochs != 1 else ''} "
        f"of batch {params.train.batch_size} ({budgets})"
    )


def _answer_view(finding, answer) -> dict[str, object]:
    effect = answer.effect
    view: dict[str, object] = {
        "column": answer.column,
        "missing": answer.missing,
        "pooled_over": tables.pooled_over_text(answer),
    }
    if effect is None:
        return view
    view.update(
        headers=tables.condition_headers(finding),
        effect=tables.effect_text(effect),
        # no estimate (no run reached the target): nothing to bound either
        interval=tables.interval_text(effect.interval, effect.ratio) if math.isfinite(effect.estimate) else "",
        method=effect.interval.method if effect.interval else "",
        check=tables.interval_text(effect.check, effect.ratio),
        seeds=effect.seeds,
        verdict=effect.verdict,
        reason=effect.reason,
        sentence=tables.effect_sentence(finding, effect),
        conditions=tables.conditions_text(answer),
        left_out=answer.left_out,
        rows=[
            {
                "labels": ", ".join(f"{axis} {value}" for axis, value in c.labels) or "all runs",
                "treatment": _condition_value(finding, c.treatment_value, c.treatment_reached),
                "reference": _condition_value(finding, c.reference_value, c.reference_reached),
                "horizon": "" if c.horizon is None else f"{c.horizon:.{0 if _is_steps(finding) else 1}f}",
                "effect": tables.effect_text(c.effect),
                "interval": tables.interval_text(c.effect.interval, c.effect.ratio),
                "check": tables.interval_text(c.effect.check, c.effect.ratio),
                "seeds": c.effect.seeds,
                "left_out": c.left_out,
                "verdict": c.effect.verdict,
                "reason": c.effect.reason,
            }
            for c in answer.conditions
        ],
    )
    return view


def _is_steps(finding) -> bool:
    return isinstance(finding.claim.quantity, TimeToTarget) and finding.claim.quantity.unit == "steps"


def _condition_value(finding, value: float, reached: str) -> str:
    if isinstance(finding.claim.quantity, TimeToTarget):
        return f"{value:.{0 if _is_steps(finding) else 1}f} (reached {reached})"
    return tables.number(value)


def _questions_view(results: pd.DataFrame, design: Design) -> list[dict[str, object]]:
    """Per question: its answered findings, then the unanswerable ones grouped by why."""
    view = []
    for question, findings in answer_questions(results, design):
        unanswerable: dict[str, list[str]] = {}
        for f in findings:
            if f.missing:
                unanswerable.setdefault(f.missing, []).append(f"{f.statement} ({f.claim.quantity.label})")
        view.append(
            {
                "key": question.key,
                "text": question.text,
                "source": question.source,
                "findings": [
                    {
                        "anchor": f.anchor,
                        "statement": f.statement[0].upper() + f.statement[1:],
                        "quantity": f.claim.quantity.label,
                        "answers": {a.column: _answer_view(f, a) for a in f.answers},
                    }
                    for f in findings
                    if not f.missing
                ],
                "unanswerable": [{"reason": r, "claims": claims} for r, claims in unanswerable.items()],
            }
        )
    return view


def _dataset_view(
    params: Params, dataset: str, results: pd.DataFrame, histories: dict[Cell, pd.DataFrame], links: RunLinks
) -> dict:
    targets = getattr(params.targets, dataset)
    keys = [target_key(t) for t in targets]
    runs = results[results["dataset"] == dataset]
    labels = {target_key(t): f"{t:g}" for t in targets}
    return {
        "name": dataset,
        "targets": [f"{t:g}" for t in targets],
        "budget": int(runs["budget_steps"].max()),
        "steps_per_epoch": int(runs["steps_per_epoch"].max()),
        "curves": png_data_uri(figures.plot_curves(dataset, histories, targets, _diverged(runs))),
        "survival_steps": png_data_uri(figures.plot_survival(dataset, results, labels, "steps")),
        "survival_seconds": png_data_uri(figures.plot_survival(dataset, results, labels, "seconds")),
        "configurations": tables.configuration_rows(runs, keys, params.report.confidence),
        "runs": tables.run_rows(runs, keys, links.by_cell),
    }


def build_report(
    params: Params, cells_dir: Path, lock_path: Path | None = None, links: RunLinks | None = None
) -> tuple[str, pd.DataFrame, dict]:
    """The page, the tidy table (one row per run) and the DVC metrics, all from the cells' outputs."""
    results, histories = collect_results(params, cells_dir)
    design = _design(params)
    m = params.matrix
    if links is None:
        links = run_links(params, [Cell(*row).name for row in results[AXES].itertuples(index=False)])
    lock = lock_digest(lock_path)
    has_bn_contrast = results["bn"].nunique() > 1
    html = render_report(
        study=params.study.name,
        n_cells=len(results),
        axes_text=(
            f"datasets {', '.join(m.dataset)}; activations {', '.join(m.activation)}; BN {', '.join(m.bn)}; "
            f"dropout {', '.join(f'{d:g}' for d in m.dropout)}; seeds {', '.join(map(str, m.seed))}"
        ),
        setup=_setup_text(results, params),
        confidence_pct=f"{params.report.confidence * 100:g}",
        min_seeds=effects.MIN_PAIRED_SEEDS,
        resamples=effects.BOOTSTRAP_RESAMPLES,
        bootstrap_seed=effects.BOOTSTRAP_SEED,
        columns=sorted(results[ANSWER_COLUMNS_AXIS].unique()),
        questions=_questions_view(results, design),
        unpublished=sorted(results.loc[~results["published_data"].astype(bool), "dataset"].unique()),
        batch_size=params.train.batch_size,
        evals_per_epoch=params.train.evals_per_epoch,
        warmup_steps=int(results["throughput_warmup_steps"].max()),
        datasets=[_dataset_view(params, d, results, histories, links) for d in m.dataset],
        heatmap=png_data_uri(figures.plot_accuracy_heatmap(results)),
        profiles=png_data_uri(figures.plot_performance_profiles(results, design.targets)) if has_bn_contrast else None,
        not_measured=_not_measured(results, histories),
        links_note=links.note,
        git_commits=sorted(results["git_commit"].dropna().unique()),
        data_digests={d: results.loc[results["dataset"] == d, "data_digest"].iloc[0] for d in m.dataset},
        devices=sorted(results["device"].dropna().unique()) if "device" in results else [],
        versions=library_versions(),
        lock=lock,
        mlflow_command="uv run mlflow ui --backend-store-uri sqlite:///mlflow.db",
    )
    return html, _tidy(results), _dvc_metrics(results, params)


def _diverged(runs: pd.DataFrame) -> frozenset[Cell]:
    diverged = runs[runs["outcome"] == "diverged"]
    return frozenset(Cell(*row) for row in diverged[AXES].itertuples(index=False))


def _not_measured(results: pd.DataFrame, histories: dict[Cell, pd.DataFrame]) -> list[str]:
    """Evidence the page would show if the runs recorded it."""
    missing = []
    if results["learning_rate"].nunique() < 2:
        missing.append("learning-rate sensitivity (the runs share one learning rate: no sweep)")
    if not any(c.startswith("grad_norm") for h in histories.values() for c in h.columns):
        missing.append("per-layer gradient norms (the histories record none)")
    return missing


def _tidy(results: pd.DataFrame) -> pd.DataFrame:
    """One row per run: the axes first, then the settings, then every measurement."""
    first = AXES + SETTINGS
    return results[first + [c for c in results.columns if c not in first]]


def _dvc_metrics(results: pd.DataFrame, params: Params) -> dict:
    summary = summarize(results, ["test_accuracy", "val_auc"], params.report.confidence)
    metrics: dict = {}
    for _, row in summary.iterrows():
        config = f"{row['activation']}-bn_{row['bn']}-dropout_{row['dropout']:g}"
        metrics.setdefault(row["dataset"], {})[config] = {
            "test_accuracy": row["test_accuracy.mean"],
            "val_auc": row["val_auc.mean"],
            "seeds": int(row["seeds"]),
        }
    return metrics
