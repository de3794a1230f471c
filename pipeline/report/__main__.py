"""Stage `report`: read every cell's outputs and write the report.

Reads:  <cells>/*/metrics.json and history.csv for the cells of the current matrix;
        params `matrix`, `targets`, `report`.
Writes: <out>/index.html (one self-contained page), <out>/results.csv (one row per
        cell), <out>/metrics.json (DVC metrics: per-configuration means).
Run:    python -m pipeline.report --cells results/cells --out reports
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from pipeline.cells import Cell
from pipeline.convergence import target_key
from pipeline.errors import run_cli
from pipeline.params import Params, load_params
from pipeline.provenance import library_versions
from pipeline.report.collect import AXES, collect_results
from pipeline.report.figures import plot_validation_curves
from pipeline.report.render import png_data_uri, render_report
from pipeline.report.stats import fmt_ci, summarize

SUMMARY_METRICS = ["test_accuracy", "best_val_accuracy", "val_auc", "throughput_images_per_s"]


def _number(value: object, digits: int = 3) -> str:
    if value is None or pd.isna(value):
        return "–"
    return f"{value:.{digits}f}"


def _dataset_section(
    params: Params, dataset: str, results: pd.DataFrame, summary: pd.DataFrame, histories: dict[Cell, pd.DataFrame]
) -> dict:
    targets = getattr(params.targets, dataset)
    keys = [target_key(t) for t in targets]
    rows = results[results["dataset"] == dataset]
    first = rows.iloc[0]
    config_rows = []
    for _, row in summary[summary["dataset"] == dataset].iterrows():
        config_rows.append(
            {
                "activation": row["activation"],
                "bn": row["bn"],
                "dropout": f"{row['dropout']:g}",
                "seeds": row["seeds"],
                "diverged": row["diverged"],
                "targets": [
                    {
                        "reached": row[f"reached_{k}"],
                        "steps": fmt_ci(
                            row[f"steps_to_{k}.mean"],
                            row[f"steps_to_{k}.ci_low"],
                            row[f"steps_to_{k}.ci_high"],
                            0,
                            bounds=(0, math.inf),
                        ),
                    }
                    for k in keys
                ],
                **{
                    short: fmt_ci(
                        row[f"{metric}.mean"], row[f"{metric}.ci_low"], row[f"{metric}.ci_high"], digits, bounds
                    )
                    for short, metric, digits, bounds in [
                        ("best_val", "best_val_accuracy", 3, (0, 1)),
                        ("auc", "val_auc", 3, (0, 1)),
                        ("test", "test_accuracy", 3, (0, 1)),
                        ("throughput", "throughput_images_per_s", 0, (0, math.inf)),
                    ]
                },
            }
        )
    cell_rows = []
    for _, row in rows.iterrows():
        cell = Cell(row["dataset"], row["activation"], row["bn"], float(row["dropout"]), int(row["seed"]))
        cell_rows.append(
            {
                "name": cell.name,
                "outcome": row["outcome"],
                "targets": [
                    {
                        "steps": int(row[f"steps_to_{k}"]) if row[f"reached_{k}"] else "miss",
                        "seconds": _number(row[f"seconds_to_{k}"], 1),
                    }
                    for k in keys
                ],
                "best_val": _number(row["best_val_accuracy"]),
                "final_val": _number(row["final_val_accuracy"]),
                "auc": _number(row["val_auc"]),
                "test": _number(row["test_accuracy"]),
                "throughput": _number(row["throughput_images_per_s"], 0),
                "train_s": _number(row["train_seconds"], 1),
            }
        )
    return {
        "name": dataset,
        "targets": [f"{t:g}" for t in targets],
        "budget": f"{first['steps_per_epoch']} steps per epoch, {first['budget_steps']} steps budget",
        "figure": png_data_uri(plot_validation_curves(dataset, histories, targets)),
        "summary": config_rows,
        "cells": cell_rows,
    }


def build_report(params: Params, cells_dir: Path) -> tuple[str, pd.DataFrame, dict]:
    """The page, the tidy table and the DVC metrics, all from the cells' outputs."""
    results, histories = collect_results(params, cells_dir)
    target_keys = sorted({target_key(t) for d in params.matrix.dataset for t in getattr(params.targets, d)})
    metrics = SUMMARY_METRICS + [f"steps_to_{k}" for k in target_keys] + [f"reached_{k}" for k in target_keys]
    present = [m for m in metrics if m in results.columns]
    summary = summarize(results, present, params.report.confidence)
    m = params.matrix
    html = render_report(
        study=params.study.name,
        n_cells=len(results),
        axes_text=(
            f"datasets {', '.join(m.dataset)}; activations {', '.join(m.activation)}; BN {', '.join(m.bn)}; "
            f"dropout {', '.join(f'{d:g}' for d in m.dropout)}; seeds {', '.join(map(str, m.seed))}"
        ),
        confidence_pct=f"{params.report.confidence * 100:g}",
        unpublished=sorted(results.loc[~results["published_data"].astype(bool), "dataset"].unique()),
        batch_size=params.train.batch_size,
        evals_per_epoch=params.train.evals_per_epoch,
        warmup_steps=int(results["throughput_warmup_steps"].max()),
        datasets=[_dataset_section(params, d, results, summary, histories) for d in m.dataset],
        git_commits=sorted(results["git_commit"].dropna().unique()),
        data_digests={d: results.loc[results["dataset"] == d, "data_digest"].iloc[0] for d in m.dataset},
        devices=sorted(results["device"].dropna().unique()) if "device" in results else [],
        versions=library_versions(),
        mlflow_command="uv run mlflow ui --backend-store-uri sqlite:///mlflow.db",
    )
    dvc_metrics: dict = {}
    for _, row in summary.iterrows():
        config = f"{row['activation']}-bn_{row['bn']}-dropout_{row['dropout']:g}"
        dvc_metrics.setdefault(row["dataset"], {})[config] = {
            "test_accuracy": row["test_accuracy.mean"],
            "val_auc": row["val_auc.mean"],
            "seeds": int(row["seeds"]),
        }
    columns = AXES + [c for c in results.columns if c not in AXES]
    return html, results[columns], dvc_metrics


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--params", type=Path, default=Path("params.yaml"))
    parser.add_argument("--cells", type=Path, required=True, help="directory holding one folder per cell")
    parser.add_argument("--out", type=Path, required=True)
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    params = load_params(args.params)
    html, results, dvc_metrics = build_report(params, args.cells)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "index.html").write_text(html, encoding="utf-8")
    results.to_csv(args.out / "results.csv", index=False, float_format="%.6g")
    (args.out / "metrics.json").write_text(json.dumps(dvc_metrics, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    print(f"report: {len(results)} cells -> {args.out / 'index.html'}")
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main))
