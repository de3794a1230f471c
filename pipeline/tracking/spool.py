"""A run's tracking data, kept on disk until its MLflow server has taken it.

Everything a cell sends to its run (params, metrics, tags, datasets, artifacts, its end) goes first into
a journal, `<repo>/.bnbench/tracking-spool/<run id>/journal.jsonl`: one JSON line per entry,
each with its own id, written and synced to disk before it is sent (artifacts are copied into
the run's folder). An entry sent is recorded in `delivered.txt` beside it. So a server that
vanishes mid-cell costs no data: what it missed stays in the journal and goes after a later log
call (the cell's delivery thread, pipeline/tracking/delivery.py), at the cell's end, or with
`python -m pipeline.tracking.sync`. Once everything, the run's
end included, is delivered, the run's folder goes.

Delivering an entry twice (a crash between sending it and recording it) adds nothing: a metric
keeps the timestamp it was logged with, and MLflow's store keeps one metric per key, value,
step and timestamp; params, tags, artifacts and the end are written again with the same values.

A cell holds a lock on its run's folder (flock, released by the kernel when its process dies),
so the sync command (pipeline/tracking/sync.py) leaves the runs of cells still running alone.
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import time
from collections.abc import Iterator
from pathlib import Path

from mlflow.entities import Dataset, DatasetInput, InputTag, Metric, Param, RunTag
from mlflow.tracking import MlflowClient
from mlflow.utils.mlflow_tags import MLFLOW_DATASET_CONTEXT

from pipeline.tracking import parent

MAX_METRICS = 1000  # MLflow's limits per log_batch call
MAX_PARAMS = MAX_TAGS = 100


def now_ms() -> int:
    """A metric's timestamp (ms since the epoch), taken when it is logged: it travels with it in the journal."""
    return int(time.time() * 1000)


def _append_synced(path: Path, line: str) -> None:
    with path.open("a", encoding="utf-8") as file:
        file.write(line + "\n")
        file.flush()
        os.fsync(file.fileno())


def _complete_lines(path: Path) -> list[str]:
    """The file's lines, without a last one cut short (its writer died mid-write: never acknowledged)."""
    if not path.exists():
        return []
    text = path.read_text(encoding="utf-8")
    return text[: text.rfind("\n") + 1].splitlines()


class RunSpool:
    """The journal of one MLflow run: entries appended, then delivered in order."""

    def __init__(self, folder: Path):
        self.folder = folder
        self._lock_file = None
        meta = json.loads((folder / "run.json").read_text(encoding="utf-8"))
        self.run_id: str = meta["run_id"]
        self.tracking_uri: str = meta["tracking_uri"]
        self.label: str = meta["label"]  # the cell's name, for messages
        self.experiment_id: str = meta["experiment_id"]
        self.study_key: str = meta["study_key"]  # its study's parent run is settled once it ends
        self._next_id = len(self.entries())

    @classmethod
    def create(
        cls, spool_dir: Path, run_id: str, tracking_uri: str, label: str, experiment_id: str, study_key: str
    ) -> RunSpool:
        """A new run's folder, locked by this process until it unlocks or ends."""
        folder = spool_dir / run_id
        (folder / "artifacts").mkdir(parents=True)
        meta = {
            "run_id": run_id,
            "tracking_uri": tracking_uri,
            "label": label,
            "experiment_id": experiment_id,
            "study_key": study_key,
        }
        (folder / "run.json.tmp").write_text(json.dumps(meta), encoding="utf-8")
        os.replace(folder / "run.json.tmp", folder / "run.json")
        spool = cls(folder)
        spool.lock()
        return spool

    # --- the writer's lock -------------------------------------------------------------------

    def lock(self, wait: bool = True) -> bool:
        """Take the run's lock, needed to write (a cell holds it while it runs); False if taken and not `wait`."""
        file = (self.folder / "lock").open("a")
        try:
            fcntl.flock(file, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
        except BlockingIOError:
            file.close()
            return False
        self._lock_file = file
        self._repair_torn_tail()
        self._next_id = len(self.entries())
        return True

    def unlock(self) -> None:
        if self._lock_file is not None:
            self._lock_file.close()  # closing releases the flock
            self._lock_file = None

    # --- appending ---------------------------------------------------------------------------

    def _repair_torn_tail(self) -> None:
        """Cut a last line its writer did not finish (it died mid-write), so the next entry starts a line."""
        journal = self.folder / "journal.jsonl"
        if journal.exists():
            text = journal.read_text(encoding="utf-8")
            if text and not text.endswith("\n"):
                journal.write_text(text[: text.rfind("\n") + 1], encoding="utf-8")

    def _append(self, entry: dict) -> None:
        _append_synced(self.folder / "journal.jsonl", json.dumps({"id": self._next_id, **entry}))
        self._next_id += 1

    def add_params(self, params: dict[str, str]) -> None:
        items = list(params.items())
        for start in range(0, len(items), MAX_PARAMS):
            self._append({"params": dict(items[start : start + MAX_PARAMS])})

    def add_metrics(self, metrics: list[tuple[str, float, int, int]]) -> None:
        """Metrics as (key, value, timestamp in ms, step); the timestamp travels with them."""
        for start in range(0, len(metrics), MAX_METRICS):
            self._append({"metrics": metrics[start : start + MAX_METRICS]})

    def add_tags(self, tags: dict[str, str]) -> None:
        items = list(tags.items())
        for start in range(0, len(items), MAX_TAGS):
            self._append({"tags": dict(items[start : start + MAX_TAGS])})

    def add_inputs(self, inputs: list[dict]) -> None:
        """Datasets the run used: each MLflow's dataset fields (name, digest, source...) and its context."""
        self._append({"inputs": inputs})

    def add_artifact(self, path: Path) -> None:
        """A copy of `path` now: the file may change or go before it is delivered."""
        name = f"{self._next_id}/{path.name}"
        (self.folder / "artifacts" / name).parent.mkdir()
        shutil.copyfile(path, self.folder / "artifacts" / name)
        self._append({"artifact": name})

    def add_end(self, status: str, end_time_ms: int) -> None:
        """The run's final status; then its study's parent is settled (pipeline/tracking/parent.py)."""
        self._append({"end": status, "end_time": end_time_ms})
        self._append({"settle": self.study_key})

    # --- reading and delivering --------------------------------------------------------------

    def entries(self) -> list[dict]:
        return [json.loads(line) for line in _complete_lines(self.folder / "journal.jsonl")]

    def delivered_ids(self) -> set[int]:
        return {int(line) for line in _complete_lines(self.folder / "delivered.txt")}

    def pending(self) -> list[dict]:
        delivered = self.delivered_ids()
        return [entry for entry in self.entries() if entry["id"] not in delivered]

    def last_written_ms(self) -> int:
        """When the journal was last written: a killed cell's end, as near as is known."""
        written = [p for p in (self.folder / "journal.jsonl", self.folder / "run.json") if p.exists()]
        return int(max(p.stat().st_mtime for p in written) * 1000)

    def ended(self) -> str | None:
        """The run's final status, once journaled."""
        return next((entry["end"] for entry in self.entries() if "end" in entry), None)

    def deliver(self, client: MlflowClient) -> int:
        """Send the pending entries in order, recording each; raises at the first the store refuses.

        Consecutive metric entries go together, up to MAX_METRICS per call: a cell journals one entry
        per evaluation, and one call per entry would cost a store round trip each. Returns how many
        entries were sent. When the run has ended and nothing is left, its folder goes.
        """
        sent = 0
        for group in _calls(self.pending()):
            self._send(client, group)
            # recorded after the call: a crash in between sends the group again, which adds nothing
            _append_synced(self.folder / "delivered.txt", "\n".join(str(entry["id"]) for entry in group))
            sent += len(group)
        if self.ended() and not self.pending():
            shutil.rmtree(self.folder)
        return sent

    def _send(self, client: MlflowClient, group: list[dict]) -> None:
        run_id, entry = self.run_id, group[0]
        if "metrics" in entry:
            metrics = [
                Metric(key, value, timestamp, step) for e in group for key, value, timestamp, step in e["metrics"]
            ]
            client.log_batch(run_id, metrics=metrics, synchronous=True)
        elif "params" in entry:
            params = [Param(key, value) for key, value in entry["params"].items()]
            client.log_batch(run_id, params=params, synchronous=True)
        elif "tags" in entry:
            client.log_batch(
                run_id, tags=[RunTag(key, value) for key, value in entry["tags"].items()], synchronous=True
            )
        elif "inputs" in entry:
            datasets = [
                DatasetInput(Dataset(**item["dataset"]), [InputTag(MLFLOW_DATASET_CONTEXT, item["context"])])
                for item in entry["inputs"]
            ]
            client.log_inputs(run_id, datasets=datasets)  # the store keeps one input per dataset and run
        elif "artifact" in entry:
            client.log_artifact(run_id, str(self.folder / "artifacts" / entry["artifact"]))
        elif "end" in entry:
            client.set_terminated(run_id, entry["end"], end_time=entry["end_time"])
        elif "settle" in entry:
            parent.settle(client, self.experiment_id, entry["settle"])
        else:
            raise ValueError(f"{self.folder / 'journal.jsonl'}: entry {entry['id']} is of no known kind")


def _calls(entries: list[dict]) -> Iterator[list[dict]]:
    """The entries in order, one store call each: runs of metric entries merged up to MAX_METRICS, others alone."""
    group: list[dict] = []
    count = 0
    for entry in entries:
        if group and ("metrics" not in entry or count + len(entry["metrics"]) > MAX_METRICS):
            yield group
            group, count = [], 0
        if "metrics" in entry:
            group.append(entry)
            count += len(entry["metrics"])
        else:
            yield [entry]
    if group:
        yield group


def spooled_runs(spool_dir: Path) -> Iterator[RunSpool]:
    """Every run kept in `spool_dir`, oldest folder first."""
    if not spool_dir.is_dir():
        return
    folders = [f for f in spool_dir.iterdir() if (f / "run.json").is_file()]
    for folder in sorted(folders, key=lambda f: f.stat().st_mtime_ns):
        yield RunSpool(folder)
