"""MLflow, behind one small interface: a parent run per study, a child run per cell.

The tracking URI is MLFLOW_TRACKING_URI when set, else `sqlite:///<repo>/mlflow.db`
(with artifacts in `<repo>/mlruns`), where <repo> is DVC's root while a stage runs.
Children point at their parent with the `mlflow.parentRunId` tag, which works
across processes; the parent is found again by its study key, a digest of the
settings every cell of the study shares.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import mlflow
from mlflow.entities import Metric
from mlflow.tracking import MlflowClient

from pipeline import backend
from pipeline.cells import Cell
from pipeline.errors import UserError
from pipeline.params import CellSettings, Params, flatten, format_value
from pipeline.provenance import git_commit, library_versions

URI_ENV = "MLFLOW_TRACKING_URI"
HEALTH_TIMEOUT_S = 5
SYSTEM_METRICS_INTERVAL_S = 5


def repo_root() -> Path:
    """DVC's root while a stage runs; otherwise the nearest folder above with a .dvc/ (else the cwd)."""
    if os.environ.get("DVC_ROOT"):
        return Path(os.environ["DVC_ROOT"]).resolve()
    here = Path.cwd().resolve()
    return next((p for p in (here, *here.parents) if (p / ".dvc").is_dir()), here)


def tracking_uri() -> str:
    return os.environ.get(URI_ENV) or f"sqlite:///{repo_root() / 'mlflow.db'}"


def check_reachable(uri: str) -> None:
    """Fail in seconds, before any training, when a tracking server does not answer."""
    if not uri.startswith(("http://", "https://")):
        return
    try:
        with urllib.request.urlopen(f"{uri.rstrip('/')}/health", timeout=HEALTH_TIMEOUT_S) as response:
            response.read()
    except (urllib.error.URLError, OSError) as error:
        raise UserError(
            f"the MLflow tracking server at {uri} is unreachable ({error}). Start it "
            f"(`docker compose up -d mlflow`, or `mlflow server`), or unset {URI_ENV} to log to the local mlflow.db."
        ) from None


def study_key(params: Params) -> str:
    """Digest of what all cells of a study share; a change starts a new parent run."""
    shared = {
        "study": params.study.model_dump(),
        "prepare": params.prepare.model_dump(),
        "train": params.train.model_dump(),
    }
    return hashlib.sha256(json.dumps(shared, sort_keys=True).encode()).hexdigest()[:12]


def _experiment_id(client: MlflowClient, name: str, uri: str) -> str:
    experiment = client.get_experiment_by_name(name)
    if experiment is not None:
        return experiment.experiment_id
    location = (repo_root() / "mlruns").as_uri() if uri.startswith("sqlite:") else None
    return client.create_experiment(name, artifact_location=location)


def study_run_id(client: MlflowClient, experiment_id: str, params: Params) -> str:
    """The parent run of this study, created on first use."""
    key = study_key(params)
    query = f"tags.`bnbench.role` = 'study' AND tags.`bnbench.study_key` = '{key}'"

    def find() -> list:
        return client.search_runs([experiment_id], query, order_by=["attributes.start_time ASC"])

    existing = find()
    if existing:
        return existing[0].info.run_id
    run = client.create_run(
        experiment_id,
        run_name=f"{params.study.name}-{key}",
        tags={"bnbench.role": "study", "bnbench.study_key": key, "git_commit": git_commit()},
    )
    for name, value in flatten(
        "", {"prepare": params.prepare.model_dump(), "train": params.train.model_dump()}
    ).items():
        client.log_param(run.info.run_id, name, value)
    client.set_terminated(run.info.run_id)
    # Two cells starting at once may both create one: keep the oldest, drop ours.
    oldest = find()[0].info.run_id
    if oldest != run.info.run_id:
        client.delete_run(run.info.run_id)
    return oldest


def prepare_study(params: Params) -> str:
    """Create the store, the study's experiment and its parent run now, once; returns the parent run's id.

    For a runner about to start several cells at once: on a fresh SQLite store, first writers that
    start together race in MLflow's schema migration, and two cells could both create the experiment.
    """
    uri = tracking_uri()
    check_reachable(uri)
    client = MlflowClient(uri)
    return study_run_id(client, _experiment_id(client, params.study.name, uri), params)


STEP_LOSS_METRIC = "train_loss_step"  # the per-step training loss, one value per optimizer step
LOG_BATCH_SIZE = 1000  # MLflow's limit on metrics per log_batch call


class CellRun:
    """What a training cell logs to MLflow while it runs, and when it ends."""

    def log_steps(self, steps) -> None:
        """Each step's training loss as `train_loss_step` at its step, in batches (not one call per step)."""
        run_id = mlflow.active_run().info.run_id
        client = MlflowClient(mlflow.get_tracking_uri())
        now = int(time.time() * 1000)
        metrics = [
            Metric(STEP_LOSS_METRIC, float(loss), now, int(step))
            for step, loss in zip(steps["step"], steps["train_loss"], strict=True)
            if math.isfinite(loss)
        ]
        for start in range(0, len(metrics), LOG_BATCH_SIZE):
            client.log_batch(run_id, metrics=metrics[start : start + LOG_BATCH_SIZE])

    def log_eval(self, row: dict) -> None:
        metrics = {k: v for k, v in row.items() if k not in ("step", "epoch") and v is not None and math.isfinite(v)}
        metrics["epoch"] = row["epoch"]
        mlflow.log_metrics(metrics, step=int(row["step"]))

    def finish(self, summary: dict, target_metrics: dict, artifacts: list[Path]) -> None:
        """Logs the cell's summary and times to target as measured elsewhere, and its output files."""
        numbers = {
            k: float(v)
            for k, v in {**summary, **target_metrics}.items()
            if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
        }
        mlflow.log_metrics(numbers, step=int(summary["steps_trained"]))
        mlflow.set_tag("bnbench.outcome", summary["outcome"])
        for path in artifacts:
            mlflow.log_artifact(str(path))


@contextmanager
def track_cell(
    params: Params, cell: Cell, settings: CellSettings, data_meta: dict, device: str, lr_policy: str = "fixed"
) -> Iterator[CellRun]:
    """A child run for `cell` under the study's parent; marked FAILED if training raises.

    Params: the cell's effective settings under their dotted keys (its axes among
    them), the study's prepare settings and the data digest. Tags: the axes again,
    so that the UI can filter and group by them, and the provenance. Sweep and tuned runs
    (params `sweep:`) are tracked the same way, with the role "sweep" or "tuned" instead of
    "cell" and the tag `bnbench.lr_policy` (fixed, sweep or tuned) on every run.
    """
    uri = tracking_uri()
    mlflow.set_tracking_uri(uri)
    client = MlflowClient(uri)
    experiment_id = _experiment_id(client, params.study.name, uri)
    parent = study_run_id(client, experiment_id, params)
    tags = {
        "mlflow.parentRunId": parent,
        "bnbench.role": "cell" if lr_policy == "fixed" else lr_policy,
        "bnbench.lr_policy": lr_policy,
        "bnbench.cell": cell.name,
        "bnbench.study_key": study_key(params),
        "bnbench.axes": ",".join(key for key, _ in cell.axes),
        "bnbench.dvc_stage": os.environ.get("DVC_STAGE", "(outside dvc)"),
        "bnbench.data_digest": data_meta["data_digest"],
        # False when BNBENCH_DATA_CHECKSUMS admitted files other than the published dataset.
        "bnbench.published_data": str(data_meta["published_data"]).lower(),
        "git_commit": git_commit(),
        "device": device,
        "bnbench.backend": backend.name(),  # the Keras backend the cell trained on
        **{f"version.{name}": version for name, version in library_versions().items()},
        **{key: format_value(value) for key, value in cell.axes},
    }
    mlflow.set_system_metrics_sampling_interval(SYSTEM_METRICS_INTERVAL_S)
    run_name = cell.name if lr_policy == "fixed" else f"{lr_policy}-{cell.name}"
    with mlflow.start_run(experiment_id=experiment_id, run_name=run_name, tags=tags, log_system_metrics=True):
        mlflow.log_params(
            {
                **flatten("", settings.model_dump()),
                **flatten("prepare", params.prepare.model_dump()),
                "data_digest": data_meta["data_digest"],
            }
        )
        yield CellRun()
