"""Links from each run of the report to its page in the MLflow UI, when there is a server to link to.

With MLFLOW_TRACKING_URI set to an http(s) server, the runs are looked up there by
their `bnbench.cell` tag under this study's key (the one `pipeline.tracking` tags
them with). With the local SQLite store there is no page to link to: the report
says how to open the UI instead. An unreachable server costs the links, not the report.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from pipeline.params import Params

URI_ENV = "MLFLOW_TRACKING_URI"


@dataclass(frozen=True)
class RunLinks:
    by_cell: dict[str, str] = field(default_factory=dict)  # cell name -> URL of its run page
    note: str = ""  # where the links come from, or why there are none


def server_uri() -> str | None:
    uri = os.environ.get(URI_ENV, "")
    return uri.rstrip("/") if uri.startswith(("http://", "https://")) else None


def run_links(params: Params, cell_names: list[str], uri: str | None = None) -> RunLinks:
    """The newest finished run of each cell of this study on the tracking server at `uri`."""
    uri = uri or server_uri()
    if uri is None:
        return RunLinks(note="")
    # Imported here: MLflow is only needed when there is a server, and it is slow to import.
    from mlflow.tracking import MlflowClient

    from pipeline.errors import UserError
    from pipeline.tracking import check_reachable, study_key

    try:
        check_reachable(uri)  # seconds, instead of the client's long retries
    except UserError:
        return RunLinks(note=f"The MLflow server at {uri} did not answer while this page was built: no run links.")
    client = MlflowClient(uri)
    experiment = client.get_experiment_by_name(params.study.name)
    if experiment is None:
        return RunLinks(note=f"The MLflow server at {uri} has no experiment {params.study.name}: no run links.")
    query = f"tags.`bnbench.role` = 'cell' AND tags.`bnbench.study_key` = '{study_key(params)}'"
    runs = client.search_runs(
        [experiment.experiment_id], query, order_by=["attributes.start_time DESC"], max_results=50_000
    )
    wanted = set(cell_names)
    by_cell: dict[str, str] = {}
    for run in runs:  # newest first: the first finished run of a cell is the one its outputs came from
        cell = run.data.tags.get("bnbench.cell")
        if cell in wanted and cell not in by_cell and run.info.status == "FINISHED":
            by_cell[cell] = f"{uri}/#/experiments/{experiment.experiment_id}/runs/{run.info.run_id}"
    return RunLinks(by_cell, f"Each run links to its page on the MLflow server at {uri} ({len(by_cell)} found).")
