"""Links from each run of the report to its page in the MLflow UI, when there is a server to link to.

With a tracking server (pipeline/tracking/settings.py: an http(s) store), the runs are looked up there by
their `bnbench.cell` tag under this study's key (the one `pipeline.tracking.runs` tags
them with). With the local SQLite store there is no page to link to: the report
says how to open the UI instead. An unreachable server costs the links, not the report.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from pipeline.study.schema import Params
from pipeline.tracking.settings import TrackingSettings


@dataclass(frozen=True)
class RunLinks:
    by_cell: dict[str, str] = field(default_factory=dict)  # cell name -> URL of its run page
    note: str = ""  # where the links come from, or why there are none


def run_links(params: Params, cell_names: list[str], tracking: TrackingSettings) -> RunLinks:
    """The newest finished run of each cell of this study on the tracking server, if `tracking` names one."""
    if not tracking.is_server:
        return RunLinks(note="")
    uri = tracking.uri.rstrip("/")
    # Imported here: MLflow is only needed when there is a server, and it is slow to import.
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
