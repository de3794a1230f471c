"""The parent run of a study in MLflow: found by its study key, created once, settled after a race.

Cells that start at once may each find no parent and create one. Every creator then keeps the
first run by (start time, run id) and deletes its own if another precedes it: the run id breaks
ties in the same millisecond, so of two runs exactly one precedes the other and never both
creators keep their own, whatever order the store returns them in.

That first check cannot see a run whose creation is still on its way (a request retried after a
server error, or another machine's clock behind this one's: start times are the client's). So
each cell, once it has ended, settles its study again: the first parent stays, the children of
any other move to it and the others are deleted, pass after pass until a pass changes nothing.
The last cell to settle sees every parent ever created, so the study ends with one.
"""

from __future__ import annotations

from collections.abc import Iterable

from mlflow.entities import Param, Run
from mlflow.tracking import MlflowClient

PARENT_TAG = "mlflow.parentRunId"  # how MLflow nests a child under its parent, across processes
MAX_PARAMS = 100  # MLflow's limit on params per log_batch call
SETTLE_PASSES = 10  # a pass repairs what it sees; more than two only while creators keep arriving


def _precedes(a: Run, b: Run) -> bool:
    """Whether parent run `a` comes before `b`: the older, or on a tie the smaller run id."""
    return (a.info.start_time, a.info.run_id) < (b.info.start_time, b.info.run_id)


def first_parent(runs: Iterable[Run]) -> Run:
    """The one run of `runs` that no other precedes."""
    runs = list(runs)
    return next(run for run in runs if not any(_precedes(other, run) for other in runs))


def _search_all(client: MlflowClient, experiment_id: str, query: str) -> list[Run]:
    runs, token = [], None
    while True:
        page = client.search_runs([experiment_id], query, page_token=token)
        runs += page
        token = page.token
        if not token:
            return runs


def _parents(client: MlflowClient, experiment_id: str, key: str) -> list[Run]:
    return _search_all(client, experiment_id, f"tags.`bnbench.role` = 'study' AND tags.`bnbench.study_key` = '{key}'")


def keep_first(client: MlflowClient, experiment_id: str, key: str, mine: str) -> str:
    """After creating parent run `mine`: delete it if another parent precedes it; returns the one kept."""
    found = _parents(client, experiment_id, key)
    own = client.get_run(mine)
    found = [own, *(run for run in found if run.info.run_id != mine)]
    if any(_precedes(other, own) for other in found):
        client.delete_run(mine)
    return first_parent(found).info.run_id


def find_or_create(
    client: MlflowClient, experiment_id: str, key: str, run_name: str, params: dict[str, object], tags: dict[str, str]
) -> str:
    """The id of the study's parent run, created (with `params` and `tags`) when there is none; RUNNING until its report."""
    existing = _parents(client, experiment_id, key)
    if existing:
        first = first_parent(existing)
        if first.info.status != "RUNNING":  # a report ended it; this cell extends the study (more seeds, say)
            client.update_run(first.info.run_id, status="RUNNING")
        return first.info.run_id
    run_id = client.create_run(
        experiment_id, run_name=run_name, tags={"bnbench.role": "study", "bnbench.study_key": key, **tags}
    ).info.run_id
    items = [Param(name, str(value)) for name, value in params.items()]
    for start in range(0, len(items), MAX_PARAMS):
        client.log_batch(run_id, params=items[start : start + MAX_PARAMS], synchronous=True)
    # Left RUNNING: the study runs until its report ends it (pipeline/tracking/study_run.py), so the
    # parent's duration is the study's, from its first cell to its report.
    return keep_first(client, experiment_id, key, run_id)


def settle(client: MlflowClient, experiment_id: str, key: str) -> None:
    """One parent for the study `key`: children of any other move to the first, the others are deleted."""
    for _ in range(SETTLE_PASSES):
        parents = _parents(client, experiment_id, key)
        if not parents:
            return
        first = first_parent(parents).info.run_id
        strays = _search_all(
            client,
            experiment_id,
            f"tags.`bnbench.study_key` = '{key}' AND tags.`bnbench.role` != 'study' AND tags.`{PARENT_TAG}` != '{first}'",
        )
        others = [run.info.run_id for run in parents if run.info.run_id != first]
        if not strays and not others:
            return
        for run in strays:
            client.set_tag(run.info.run_id, PARENT_TAG, first)
        for run_id in others:
            client.delete_run(run_id)  # deleting a run twice (two cells settling at once) is harmless
