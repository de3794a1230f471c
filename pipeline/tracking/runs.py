"""MLflow, behind one small interface: a parent run per study, a child run per cell.

Where runs go is the command's TrackingSettings (pipeline/tracking/settings.py), passed in.
Children point at their parent with the `mlflow.parentRunId` tag, which works across processes;
the parent is found again by its study key, a digest of the settings every cell of the study
shares (pipeline/tracking/parent.py). `MlflowTracker` is what the train stage hands a cell
(pipeline/cell/run.py: Tracker): the cell's code never imports this package.

A server that stops answering while a cell trains does not stop the cell: what the run logs goes
through a journal on disk first (pipeline/tracking/spool.py) and reaches the server from a thread of
its own (pipeline/tracking/delivery.py) when it is back, at the cell's end at the latest, or with
`python -m pipeline.tracking.sync`.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import sys
import tempfile
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from mlflow.exceptions import MlflowException
from mlflow.system_metrics.system_metrics_monitor import SystemMetricsMonitor
from mlflow.tracking import MlflowClient
from mlflow.tracking.context.registry import resolve_tags

from pipeline.cell import backend
from pipeline.errors import UserError
from pipeline.provenance import git_commit, library_versions
from pipeline.study.axes import flatten, format_value
from pipeline.study.cells import Cell
from pipeline.study.schema import CellSettings, Params
from pipeline.tracking import parent
from pipeline.tracking.datasets import split_datasets
from pipeline.tracking.delivery import Delivery
from pipeline.tracking.names import STEP_LOSS_METRIC, curve_key, run_name, summary_key
from pipeline.tracking.settings import URI_ENV, TrackingSettings, is_server
from pipeline.tracking.spool import RunSpool, now_ms
from pipeline.tracking.step_losses import step_loss_points

HEALTH_TIMEOUT_S = 5
SYSTEM_METRICS_INTERVAL_S = 5
SYNC_COMMAND = "uv run python -m pipeline.tracking.sync"
# MLflow's HTTP client retries a failed request for minutes by default (7 retries, backoff factor 2,
# 120 s timeout). While a cell runs, a failed request costs at most a few seconds (the server
# refuses: about 2 s; it hangs: 3 x 15 s), since what it carried waits in the spool anyway.
# Values the user set win.
HTTP_BOUNDS = {
    "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "2",
    "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
    "MLFLOW_HTTP_REQUEST_BACKOFF_JITTER": "0.5",
    "MLFLOW_HTTP_REQUEST_TIMEOUT": "15",
}
MODEL_FILE = "model.keras"  # train.log_model: the file Keras' `model.save` writes, and `keras.saving.load_model` reads


@contextmanager
def bounded_http_retries() -> Iterator[None]:
    """MLflow's HTTP retries bounded (HTTP_BOUNDS) while the block runs, then as they were."""
    added = {name: value for name, value in HTTP_BOUNDS.items() if name not in os.environ}
    os.environ.update(added)
    try:
        yield
    finally:
        for name in added:
            os.environ.pop(name, None)


def check_reachable(uri: str) -> None:
    """Fail in seconds, before any training, when a tracking server does not answer or refuses the login."""
    if not is_server(uri):
        return
    try:
        with urllib.request.urlopen(f"{uri.rstrip('/')}/health", timeout=HEALTH_TIMEOUT_S) as response:
            response.read()
    except (urllib.error.URLError, OSError) as error:
        raise UserError(
            f"the MLflow tracking server at {uri} is unreachable ({error}). Start it "
            f"(`docker compose up -d mlflow`, or `mlflow server`), or unset {URI_ENV} to log to the local mlflow.db."
        ) from None
    # /health answers anyone; a request of the API shows whether the server takes this login.
    try:
        with bounded_http_retries():
            MlflowClient(uri).search_experiments(max_results=1)
    except MlflowException as error:
        raise UserError(_refusal(uri, error)) from None


def _refusal(uri: str, error: MlflowException) -> str:
    user = os.environ.get("MLFLOW_TRACKING_USERNAME")
    login = "set MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD to a user of that server and its password"
    status = error.get_http_status_code()
    if status == 401 and user:
        return f"the MLflow tracking server at {uri} refused the login of user {user!r} (401): {login}"
    if status == 401:
        return f"the MLflow tracking server at {uri} asks for a login (401): {login}"
    if status == 403:
        return (
            f"the MLflow tracking server at {uri} does not let user {user!r} do this (403: {one_line(error)}): "
            "ask its admin for EDIT permission on the study's experiment"
        )
    return f"the MLflow tracking server at {uri} answered, but not as an MLflow server does ({error}); check {URI_ENV}"


def study_key(params: Params) -> str:
    """Digest of what all cells of a study share; a change starts a new parent run."""
    shared = {
        "study": params.study.model_dump(),
        "prepare": params.prepare.model_dump(),
        "train": params.train.model_dump(),
    }
    return hashlib.sha256(json.dumps(shared, sort_keys=True).encode()).hexdigest()[:12]


def study_experiment_id(client: MlflowClient, name: str, tracking: TrackingSettings) -> str:
    experiment = client.get_experiment_by_name(name)
    if experiment is not None:
        return experiment.experiment_id
    try:
        return client.create_experiment(name, artifact_location=tracking.artifact_location)
    except MlflowException as error:
        if error.error_code != "RESOURCE_ALREADY_EXISTS":  # another cell created it since we looked
            raise
        return client.get_experiment_by_name(name).experiment_id


def study_run_id(client: MlflowClient, experiment_id: str, params: Params) -> str:
    """The parent run of this study, created on first use."""
    key = study_key(params)
    shared = {"prepare": params.prepare.model_dump(), "train": params.train.model_dump()}
    return parent.find_or_create(
        client,
        experiment_id,
        key,
        run_name=f"{params.study.name}-{key}",
        params=flatten("", shared),
        tags={"git_commit": git_commit()},
    )


def prepare_study(tracking: TrackingSettings, params: Params) -> str:
    """Create the store, the study's experiment and its parent run now, once; returns the parent run's id.

    For a runner about to start several cells at once: on a fresh SQLite store, first writers that
    start together race in MLflow's schema migration, and two cells could both create the experiment.
    """
    check_reachable(tracking.uri)
    with bounded_http_retries():
        client = MlflowClient(tracking.uri)
        return study_run_id(client, study_experiment_id(client, params.study.name, tracking), params)


class CellRun:
    """What a training cell logs to MLflow while it runs, and when it ends.

    Each call journals its data (the run's spool, synced to disk before the call returns) and leaves
    the delivery to the run's delivery thread (pipeline/tracking/delivery.py): training never waits
    for a slow or failing store, and nothing it raises reaches training.
    """

    def __init__(self, client: MlflowClient, spool: RunSpool):
        self.spool = spool
        self.run_id = spool.run_id
        self.delivery = Delivery(spool, client)

    def log_params(self, params: dict) -> None:
        self.spool.add_params({name: str(value) for name, value in params.items()})
        self.delivery.request()

    def log_steps(self, steps) -> None:
        """The per-step training loss as `curves/train_loss_step`, at most 500 points (the first steps,
        then window means: pipeline/tracking/step_losses.py); every step is in the run's artifact steps.csv."""
        now = now_ms()
        self.spool.add_metrics([(STEP_LOSS_METRIC, loss, now, step) for step, loss in step_loss_points(steps)])
        self.delivery.request()

    def log_eval(self, row: dict) -> None:
        """One evaluation's columns at its step, under their sections (pipeline/tracking/names.py)."""
        metrics = {k: v for k, v in row.items() if k not in ("step", "epoch") and v is not None and math.isfinite(v)}
        metrics["epoch"] = row["epoch"]
        now, step = now_ms(), int(row["step"])
        self.spool.add_metrics([(curve_key(key), float(value), now, step) for key, value in metrics.items()])
        self.delivery.request()

    def finish(self, summary: dict, target_metrics: dict, artifacts: list[Path]) -> None:
        """Logs the cell's summary and times to target as measured elsewhere (one point each, under `summary/`
        at the cell's last step), and its output files."""
        numbers = {
            k: float(v)
            for k, v in {**summary, **target_metrics}.items()
            if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
        }
        now, step = now_ms(), int(summary["steps_trained"])
        self.spool.add_metrics([(summary_key(key), value, now, step) for key, value in numbers.items()])
        self.spool.add_tags({"bnbench.outcome": summary["outcome"]})
        for path in artifacts:
            self.spool.add_artifact(path)
        self.delivery.request()

    def log_model(self, model) -> None:
        """The trained Keras model as the run's artifact model.keras (architecture, weights, optimizer state).

        Load it with `keras.saving.load_model(path, compile=False)`: its compiled training metric is a
        class of pipeline/cell/training.py, which a plain load would have to import.
        """
        with tempfile.TemporaryDirectory() as folder:
            path = Path(folder) / MODEL_FILE
            model.save(path)
            self.spool.add_artifact(path)  # a copy, journaled: it reaches the server like the other files
        self.delivery.request()

    def end(self, status: str) -> None:
        """The run's final status after everything logged before it, and one warning line if the server did not take it all."""
        self.delivery.close()  # its pass under way ends first: from here on, this thread delivers
        self.spool.add_end(status, now_ms())
        undelivered = self.delivery.deliver()  # past any pause after a failure: the last chance before the sync
        self.spool.unlock()
        if undelivered is not None:
            print(
                f"bnbench: warning: the MLflow tracking server at {self.spool.tracking_uri} did not take all of run "
                f"{self.run_id} ({self.spool.label}): {one_line(undelivered)}. The rest is kept in "
                f"{self.spool.folder}; deliver it with `{SYNC_COMMAND}` once the server answers.",
                file=sys.stderr,
                flush=True,
            )


def dvc_tags(environ=os.environ) -> dict[str, str]:
    """The DVC stage and experiment a run belongs to, as DVC sets them in a stage's environment.

    `dvc exp run` names its experiment (DVC_EXP_NAME); `dvc repro` runs in the workspace and sets none.
    The runner sets DVC_STAGE for each cell as `dvc repro` would (pipeline/runner/worker.py).
    """
    return {
        "bnbench.dvc_stage": environ.get("DVC_STAGE", "(outside dvc)"),
        "bnbench.dvc_exp": environ.get("DVC_EXP_NAME", "(workspace)"),
    }


def one_line(error: Exception) -> str:
    text = " ".join(str(error).split())
    return text if len(text) <= 300 else text[:300] + "..."


def _start_run(client: MlflowClient, experiment_id: str, run_name: str, tags: dict) -> str:
    # The tags MLflow's own start_run adds (user, source), then ours.
    return client.create_run(experiment_id, run_name=run_name, tags=resolve_tags(tags)).info.run_id


@contextmanager
def track_cell(
    tracking: TrackingSettings,
    params: Params,
    cell: Cell,
    settings: CellSettings,
    data_meta: dict,
    device: str,
    lr_policy: str = "fixed",
    data_dir: Path | None = None,
    stage: str | None = None,
) -> Iterator[CellRun]:
    """A child run for `cell` under the study's parent; marked FAILED if training raises.

    Params: the cell's effective settings under their dotted keys (its axes among
    them), the study's prepare settings and the data digest. Tags: the axes again,
    so that the UI can filter and group by them, the DVC stage and experiment, and the provenance.
    Datasets: the training and validation splits in `data_dir` (pipeline/tracking/datasets.py). Sweep and tuned runs
    (params `sweep:`) are tracked the same way, with the role "sweep" or "tuned" instead of
    "cell" and the tag `bnbench.lr_policy` (fixed, sweep or tuned) on every run. `stage` names the
    cell's DVC stage where the environment's DVC_STAGE cannot (several cells trained in one process).

    The run is created on the server before training (a server that fails then stops the cell with
    one message); after that, nothing the server does stops it (see CellRun).
    """
    uri = tracking.uri
    client = MlflowClient(uri)
    tags = {
        "bnbench.role": "cell" if lr_policy == "fixed" else lr_policy,
        "bnbench.lr_policy": lr_policy,
        "bnbench.cell": cell.name,
        "bnbench.study_key": study_key(params),
        "bnbench.axes": ",".join(key for key, _ in cell.axes),
        **dvc_tags({**os.environ, "DVC_STAGE": stage} if stage else os.environ),
        "bnbench.data_digest": data_meta["data_digest"],
        # False when BNBENCH_DATA_CHECKSUMS admitted files other than the published dataset.
        "bnbench.published_data": str(data_meta["published_data"]).lower(),
        "git_commit": git_commit(),
        "device": device,
        "bnbench.backend": backend.name(),  # the Keras backend the cell trained on
        **{f"version.{name}": version for name, version in library_versions().items()},
        **{key: format_value(value) for key, value in cell.axes},
    }
    name = run_name(params, cell, lr_policy)
    with bounded_http_retries():
        try:
            experiment_id = study_experiment_id(client, params.study.name, tracking)
            parent_id = study_run_id(client, experiment_id, params)
            run_id = _start_run(client, experiment_id, name, {parent.PARENT_TAG: parent_id, **tags})
        except MlflowException as error:
            if error.get_http_status_code() in (401, 403):
                raise UserError(_refusal(uri, error)) from None
            raise UserError(
                f"the MLflow tracking server at {uri} failed while the cell's run was created, before any training "
                f"({one_line(error)}); run the stage again once it answers"
            ) from None
        label = cell.name if lr_policy == "fixed" else f"{lr_policy}-{cell.name}"  # as its DVC stage names it
        spool = RunSpool.create(tracking.spool_dir, run_id, uri, label, experiment_id, tags["bnbench.study_key"])
        monitor = SystemMetricsMonitor(run_id, sampling_interval=SYSTEM_METRICS_INTERVAL_S, tracking_uri=uri)
        monitor.start()
        run = CellRun(client, spool)  # its delivery thread starts here, and stops in run.end below
        status = "FAILED"
        try:
            run.log_params(
                {
                    **flatten("", settings.model_dump()),
                    **flatten("prepare", params.prepare.model_dump()),
                    "data_digest": data_meta["data_digest"],
                }
            )
            if data_dir is not None:
                spool.add_inputs(split_datasets(data_dir, data_meta))
            yield run
            status = "FINISHED"
        finally:
            monitor.finish()
            run.end(status)


def mark_stale_runs_killed(
    tracking: TrackingSettings, params: Params, cell: Cell, lr_policy: str = "fixed"
) -> list[str]:
    """End as KILLED every run of this cell (same study key, cell and lr policy) still marked RUNNING; their ids.

    A process killed with SIGKILL (or by the out-of-memory killer, or a lost machine) never ends its
    run. Called as the cell starts again, when no other process can be training it: DVC locks a
    stage while it runs, and the runner trains each cell once.
    """
    client = MlflowClient(tracking.uri)
    experiment = client.get_experiment_by_name(params.study.name)
    if experiment is None:
        return []
    query = (
        f"tags.`bnbench.study_key` = '{study_key(params)}' AND tags.`bnbench.cell` = '{cell.name}' "
        f"AND tags.`bnbench.lr_policy` = '{lr_policy}' AND attributes.status = 'RUNNING'"
    )
    stale = [run.info.run_id for run in client.search_runs([experiment.experiment_id], query, max_results=1000)]
    for run_id in stale:
        client.set_terminated(run_id, "KILLED")
    return stale


class MlflowTracker:
    """The cell's Tracker (pipeline/cell/run.py) for a study: its runs in the store `tracking` names."""

    def __init__(
        self, tracking: TrackingSettings, params: Params, data_dir: Path | None = None, stage: str | None = None
    ):
        self.tracking = tracking
        self.params = params
        self.data_dir = data_dir  # the prepared data, whose splits each run lists as its datasets
        self.stage = stage  # the cell's DVC stage, when not the environment's DVC_STAGE (a group of cells)

    def check(self) -> None:
        check_reachable(self.tracking.uri)

    def end_stale_runs(self, cell: Cell, lr_policy: str) -> None:
        mark_stale_runs_killed(self.tracking, self.params, cell, lr_policy)

    def open_run(self, cell: Cell, settings: CellSettings, data_meta: dict, device: str, lr_policy: str):
        return track_cell(
            self.tracking, self.params, cell, settings, data_meta, device, lr_policy, self.data_dir, self.stage
        )
