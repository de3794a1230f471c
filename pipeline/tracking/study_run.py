"""The report on the study's parent run: its page and answers as artifacts, its headline numbers, its end.

Called by the report stage once the report is written. On the study's parent run (the one its cells
are children of, pipeline/tracking/parent.py) it logs:
- artifacts under `report/`: index.html (the page), findings.json (the answers), results.csv (the
  report's table) and the study's DVC metrics file (metrics/<study>.json, what `dvc metrics show` reads);
- metrics under `findings/`: every number of the study's DVC metrics, by its path there joined with
  '/', so the runs table can show and sort them;
- tags: the report stage's DVC stage and experiment;
- its end: FINISHED at the report's end. The parent was created RUNNING by the study's first cell, so
  its duration in MLflow's UI is the study's, from that cell's start to this report.

A server that fails here costs the report its place in MLflow, not the report: one warning line says
how to attach it again.
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

from mlflow.entities import Metric, RunTag
from mlflow.tracking import MlflowClient

from pipeline.study.schema import Params
from pipeline.tracking.runs import (
    bounded_http_retries,
    check_reachable,
    dvc_tags,
    one_line,
    study_experiment_id,
    study_run_id,
)
from pipeline.tracking.settings import TrackingSettings
from pipeline.tracking.spool import MAX_METRICS, MAX_TAGS, now_ms

REPORT_ARTIFACTS = ("index.html", "findings.json", "results.csv")
ARTIFACT_FOLDER = "report"
FINDINGS = "findings/"
MAX_KEY_LENGTH = 250  # MLflow's limit on a metric key


def findings_metrics(metrics: dict, prefix: str = FINDINGS) -> dict[str, float]:
    """Every finite number of the study's DVC metrics under `findings/<its path joined by '/'>`."""
    flat: dict[str, float] = {}
    for key, value in metrics.items():
        path = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(findings_metrics(value, path + "/"))
        elif isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
            if len(path) <= MAX_KEY_LENGTH:
                flat[path] = float(value)
    return flat


def attach_report(tracking: TrackingSettings, params: Params, out_dir: Path, metrics_path: Path | None) -> str | None:
    """Attach the report in `out_dir` and the study's DVC metrics to its parent run and end it.

    Returns the run's id, None if the server failed.
    """
    try:
        check_reachable(tracking.uri)
        with bounded_http_retries():
            return _attach(tracking, params, out_dir, metrics_path)
    except Exception as error:  # the report is written: tracking costs its place in MLflow only
        print(
            f"bnbench: warning: the report is written, but not attached to the study's MLflow run "
            f"({one_line(error)}); run the report stage again once {tracking.uri} answers "
            "(`uv run dvc repro --force --single-item <its dvc.yaml>:report`)",
            file=sys.stderr,
            flush=True,
        )
        return None


def _attach(tracking: TrackingSettings, params: Params, out_dir: Path, metrics_path: Path | None) -> str:
    client = MlflowClient(tracking.uri)
    experiment_id = study_experiment_id(client, params.study.name, tracking)
    run_id = study_run_id(client, experiment_id, params)
    if client.get_run(run_id).info.status != "RUNNING":  # a report again: the study runs until it ends
        client.update_run(run_id, status="RUNNING")
    for name in REPORT_ARTIFACTS:
        if (out_dir / name).is_file():
            client.log_artifact(run_id, str(out_dir / name), ARTIFACT_FOLDER)
    now = now_ms()
    metrics = {}
    if metrics_path is not None:
        client.log_artifact(run_id, str(metrics_path), ARTIFACT_FOLDER)
        metrics = json.loads(metrics_path.read_text(encoding="utf-8"))
    numbers = [Metric(key, value, now, 0) for key, value in findings_metrics(metrics).items()]
    for start in range(0, len(numbers), MAX_METRICS):
        client.log_batch(run_id, metrics=numbers[start : start + MAX_METRICS], synchronous=True)
    tags = [RunTag(key, value) for key, value in {**dvc_tags(), "bnbench.report": ARTIFACT_FOLDER}.items()]
    for start in range(0, len(tags), MAX_TAGS):
        client.log_batch(run_id, tags=tags[start : start + MAX_TAGS], synchronous=True)
    client.set_terminated(run_id, "FINISHED", end_time=now_ms())
    return run_id
