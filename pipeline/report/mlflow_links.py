"""Links from each run of the report to its page in the MLflow UI, for any tracking store.

The runs are looked up in the store by their `bnbench.cell` tag under this study's key (the one
`pipeline.tracking.runs` tags them with). With a tracking server (an http(s) store) the links go to
that server. With a store opened in-process (the repository's SQLite file, by default) they go to the
UI a person starts over it, `uv run mlflow ui --backend-store-uri sqlite:///mlflow.db`, at
http://127.0.0.1:5000 or BNBENCH_MLFLOW_UI_URL (pipeline/tracking/settings.py), and the note beside
them gives that command. An unreachable server costs the links, not the report.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from pipeline.study.schema import Params
from pipeline.tracking.settings import TrackingSettings


@dataclass(frozen=True)
class RunLinks:
    by_cell: dict[str, str] = field(default_factory=dict)  # cell name -> URL of its run page
    note: str = ""  # where the links come from, or why there are none


def _sqlite_file(uri: str) -> Path | None:
    """The file of a `sqlite:///` store, None for other stores."""
    return Path(urlsplit(uri).path) if uri.startswith("sqlite:///") else None


def run_links(params: Params, cell_names: list[str], tracking: TrackingSettings) -> RunLinks:
    """The newest finished run of each cell of this study in the tracking store, linked in its MLflow UI."""
    uri = tracking.uri.rstrip("/")
    where = f"the MLflow server at {uri}" if tracking.is_server else f"the store {uri}"
    database = _sqlite_file(uri)
    if database is not None and not database.is_file():  # nothing tracked yet; do not create the file here
        return RunLinks(note=f"The store {uri} does not exist: no run links.")
    # Imported here: MLflow is slow to import, and a page built without a store needs none of it.
    from mlflow.tracking import MlflowClient

    from pipeline.errors import UserError
    from pipeline.tracking.runs import check_reachable, study_key

    try:
        check_reachable(uri)  # seconds, instead of the client's long retries
    except UserError:
        return RunLinks(note=f"The MLflow server at {uri} did not answer while this page was built: no run links.")
    client = MlflowClient(uri)
    experiment = client.get_experiment_by_name(params.study.name)
    if experiment is None:
        return RunLinks(note=f"{where[0].upper()}{where[1:]} has no experiment {params.study.name}: no run links.")
    query = f"tags.`bnbench.role` = 'cell' AND tags.`bnbench.study_key` = '{study_key(params)}'"
    runs = client.search_runs(
        [experiment.experiment_id], query, order_by=["attributes.start_time DESC"], max_results=50_000
    )
    wanted = set(cell_names)
    by_cell: dict[str, str] = {}
    ui = tracking.ui_url
    for run in runs:  # newest first: the first finished run of a cell is the one its outputs came from
        cell = run.data.tags.get("bnbench.cell")
        if cell in wanted and cell not in by_cell and run.info.status == "FINISHED":
            by_cell[cell] = f"{ui}/#/experiments/{experiment.experiment_id}/runs/{run.info.run_id}"
    if tracking.is_server:
        return RunLinks(by_cell, f"Each run links to its page on the MLflow server at {uri} ({len(by_cell)} found).")
    return RunLinks(
        by_cell,
        f"Each run links to its page in the MLflow UI at {ui} ({len(by_cell)} found), "
        f"which `{tracking.ui_command}` serves from the repository root "
        "(BNBENCH_MLFLOW_UI_URL says where, if yours listens elsewhere).",
    )
