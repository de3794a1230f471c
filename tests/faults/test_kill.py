"""SIGKILL of a whole process group at chosen points of a real `dvc repro` (and of the runner), then again.

One copy of the repository with a shrunk quick study (Fashion-MNIST only, 4 cells of 2 epochs) goes
through the kills in order, each followed by the next run, which must pick up where the last one
stopped:

  1. `dvc repro`, killed while a file downloads (the mirror sends half the body, then stalls)
  2. `dvc repro`, killed in prepare (paused after its first two arrays are written)
  3. `dvc repro`, killed in the second cell before its first checkpoint
  4. `dvc repro`, killed in the third cell after its first epoch's checkpoint
  5. the runner (2 slots), killed once it has recorded the third cell while the fourth trains
  6. the runner again, killed in the report (its page written, its table not)
  7. `dvc repro`: finishes

Every kill waits for a marker that the process reached its point: the mirror's stall, or a file that
tests/fault_hook/sitecustomize.py writes when the process stops at a chosen call (it sleeps there
until killed), so each kill lands where it says, however slow the machine. A test per kill checks
what that kill left and what the next run made of it; the last test checks the whole: DVC clean,
nothing retrained, each cell with exactly one FINISHED MLflow run.
"""

from __future__ import annotations

import functools
import hashlib
import http.server
import json
import os
import re
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient
from ruamel.yaml import YAML

from pipeline.data.prepared import load_prepared
from tests.helpers import (
    QUICK_STUDY,
    QuietHandler,
    dvc,
    kill_group,
    pause_env,
    regenerate_pipeline,
    start_group,
    wait_for,
)
from tools.fake_data import md5, write_mirror
from tools.repo_copy import copy_repo

pytestmark = pytest.mark.e2e

CELLS = [f"fashion_mnist-relu-{bn}-0.0-{seed}" for bn in ("off", "post") for seed in (0, 1)]
STUDY_LOCK = Path(QUICK_STUDY) / "dvc.lock"
RAW = Path("data") / "raw" / "fashion_mnist"
PREPARED = Path(QUICK_STUDY) / "data" / "prepared" / "fashion_mnist"
REPORTS = Path(QUICK_STUDY) / "reports"
CHECKPOINTS = Path(".bnbench") / "checkpoints" / "bnbench-quick" / "fixed"
STALLED_FILE = "t10k-images-idx3-ubyte.gz"  # the third of four: the first two are already copied when it stalls
SAVE = "pipeline.cell.checkpoints:FileCheckpoint.save"
STEPS_PER_EPOCH = 12  # 360 training images (400 less a tenth for validation) in batches of 32


# -- the mirror, the repository, what a run left --------------------------------------------------


class StallingMirror:
    """The mirror over HTTP on 127.0.0.1; a request for the file `stall` names gets its headers and half
    its body, then nothing until `release` is set (the connection then closes short)."""

    def __init__(self, directory: Path):
        self.requests: Counter[str] = Counter()
        self.stall: str | None = None
        self.stalled, self.release = threading.Event(), threading.Event()
        mirror = self

        class Handler(QuietHandler):
            def copyfile(self, source, outputfile):
                name = Path(self.path).name
                mirror.requests[name] += 1
                if name != mirror.stall:
                    return super().copyfile(source, outputfile)
                body = source.read()
                outputfile.write(body[: len(body) // 2])
                outputfile.flush()
                mirror.stalled.set()
                mirror.release.wait(timeout=600)

        self.server = http.server.ThreadingHTTPServer(
            ("127.0.0.1", 0), functools.partial(Handler, directory=str(directory))
        )
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"

    def close(self) -> None:
        self.release.set()
        self.server.shutdown()
        self.server.server_close()


def _shrink(repo: Path) -> None:
    """The quick study on Fashion-MNIST only: 4 cells, 2 epochs of 12 steps, one evaluation per epoch."""
    path = repo / QUICK_STUDY / "params.yaml"
    yaml = YAML(typ="rt")
    overlay = yaml.load(path)
    overlay["prepare"].update(max_train_examples=400, max_test_examples=200)
    overlay["matrix"].update(dataset=["fashion_mnist"], activation=["relu"], bn=["off", "post"], seed=[0, 1])
    overlay["train"].update(epochs=2, evals_per_epoch=1, gradient_probe=32, bn_probe=64)
    yaml.dump(overlay, path)
    regenerate_pipeline(repo)


def lock_stages(repo: Path, lock: Path = STUDY_LOCK) -> set[str]:
    """The stages dvc.lock records (empty while it is missing or half written)."""
    try:
        return set(YAML(typ="safe").load((repo / lock).read_text())["stages"])
    except Exception:  # a lock being rewritten, or not there yet, records nothing yet
        return set()


def outputs_of(repo: Path, cell: str) -> dict[str, tuple[int, str]]:
    """Each output file of a cell: its mtime (ns) and sha256."""
    folder = repo / QUICK_STUDY / "results" / "cells" / cell
    return {
        p.name: (p.stat().st_mtime_ns, hashlib.sha256(p.read_bytes()).hexdigest())
        for p in sorted(folder.iterdir())
        if p.is_file()
    }


def summary_of(repo: Path, cell: str) -> dict:
    return json.loads((repo / QUICK_STUDY / "results" / "cells" / cell / "metrics.json").read_text())


def run_statuses(repo: Path) -> dict[str, list[str]]:
    """Each cell's MLflow runs, oldest first, as their statuses."""
    client = MlflowClient(f"sqlite:///{repo / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("bnbench-quick")
    if experiment is None:
        return {}
    runs = client.search_runs(
        [experiment.experiment_id], "tags.`bnbench.role` = 'cell'", order_by=["attributes.start_time ASC"]
    )
    statuses: dict[str, list[str]] = {}
    for run in runs:
        statuses.setdefault(run.data.tags["bnbench.cell"], []).append(run.info.status)
    return statuses


def checkpoint_files(repo: Path, cell: str) -> list[str]:
    folder = repo / CHECKPOINTS / cell
    return sorted(p.name for p in folder.iterdir()) if folder.is_dir() else []


def dead_rwlock_entries(repo: Path) -> dict[str, list[int]]:
    """PIDs that DVC's rwlock file still names, as readers and as writers, but that no longer run.

    A SIGKILLed dvc leaves its entries there. DVC drops a dead one itself when a later run wants that path
    (it checks the PID, with a warning); a dead reader blocks nothing meanwhile.
    """
    path = repo / ".dvc" / "tmp" / "rwlock"
    lock = json.loads(path.read_text() or "{}") if path.is_file() else {}
    infos = {
        "write": list(lock.get("write", {}).values()),
        "read": [info for infos in lock.get("read", {}).values() for info in infos],
    }
    return {
        mode: sorted({i["pid"] for i in found if not Path(f"/proc/{i['pid']}").exists()})
        for mode, found in infos.items()
    }


# -- the scenario: kills in order, run once for the module ------------------------------------------


class Scenario:
    def __init__(self, root: Path):
        self.root = root
        self.repo = root / "repo"
        copy_repo(self.repo)
        _shrink(self.repo)
        checksums = write_mirror(root / "mirror", cifar_per_batch=10, cifar_test=10, fmnist_train=500, fmnist_test=200)
        self.checksums = json.loads(checksums.read_text())["fashion_mnist"]
        self.mirror = StallingMirror(root / "mirror")
        env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "DVC_", "BNBENCH_"))}
        env.update(
            BNBENCH_DATA_MIRROR=self.mirror.url,
            BNBENCH_DATA_CHECKSUMS=str(checksums),
            BNBENCH_CACHE_DIR=str(root / "download-cache"),
            PYTHONPATH=str(self.repo),  # the copy's package, not the one installed from the original checkout
            PATH=f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}",
            # DVC orders stages it does not order by their dependencies by iterating a set of them, whose order
            # follows the string hashes of their names: fixed here, so the cell a kill is aimed at is known ahead
            # (each run checks that DVC kept to it).
            PYTHONHASHSEED="0",
        )
        self.env = env
        self.facts: dict[str, dict] = {}
        self.order: list[str] = []  # the cells in the order dvc repro trains them
        self.finished: dict[str, dict] = {}  # each cell's outputs when it first finished
        self.steps: list[tuple[str, Callable[[], dict]]] = [
            ("download", self.kill_download),
            ("prepare", self.kill_prepare),
            ("before-checkpoint", self.kill_cell_before_checkpoint),
            ("after-checkpoint", self.kill_cell_after_checkpoint),
            ("runner", self.kill_runner),
            ("report", self.kill_report),
            ("end", self.finish),
        ]
        self.failed: BaseException | None = None

    def reach(self, name: str) -> dict[str, dict]:
        """Run the steps up to `name`, each once; the facts every step run so far recorded."""
        for step, run in self.steps:
            if self.failed is not None:
                raise AssertionError(f"an earlier step of the scenario failed: {self.failed!r}")
            if step not in self.facts:
                try:
                    self.facts[step] = run()
                except BaseException as error:
                    self.failed = error
                    raise
                self._note_finished()
            if step == name:
                return self.facts
        raise KeyError(name)

    def _note_finished(self) -> None:
        for cell in CELLS:
            if cell not in self.finished and f"train@{cell}" in lock_stages(self.repo):
                self.finished[cell] = outputs_of(self.repo, cell)

    # the commands, killed once a marker appears

    def _log(self, name: str) -> Path:
        return self.root / f"{name}.log"

    def _repro_command(self) -> list[str]:
        return [sys.executable, "-m", "dvc", "repro", f"{QUICK_STUDY}/dvc.yaml"]

    def _runner_command(self) -> list[str]:
        return [sys.executable, "-m", "pipeline.runner", f"{QUICK_STUDY}/dvc.yaml", "--slots", "2"]

    def _killed_at(self, name: str, command: list[str], env: dict, reached: Callable[[], object], what: str) -> dict:
        began = time.monotonic()
        process = start_group(command, self.repo, env, self._log(name))
        try:
            wait_for(reached, what, process)
        finally:  # also when the marker never came: nothing of the group outlives the test
            kill_group(process)
        log = self._log(name).read_text()
        if self.order and command[2] == "dvc":  # the cells it went through, in the order the dry run gave
            seen = re.findall(r"Stage '[^']*train@([^']+)' didn't change|Running stage '[^']*train@([^']+)'", log)
            cells = [a or b for a, b in seen]
            assert cells == self.order[: len(cells)], f"DVC changed its order: {cells} after {self.order}"
        return {"rwlock_dead": dead_rwlock_entries(self.repo), "log": log, "seconds": time.monotonic() - began}

    def _paused(self, name: str, command: list[str], target: str, what: str, **where) -> dict:
        marker = self.root / f"paused-{name}"
        env = pause_env(self.env, marker, target, **where)
        return self._killed_at(name, command, env, marker.exists, what)

    # the steps

    def kill_download(self) -> dict:
        self.mirror.stall = STALLED_FILE
        facts = self._killed_at(
            "download", self._repro_command(), self.env, self.mirror.stalled.is_set, f"{STALLED_FILE} half sent"
        )
        cache = self.root / "download-cache" / "fashion_mnist"
        facts.update(
            root_lock=lock_stages(self.repo, Path("dvc.lock")),
            cached=sorted(p.name for p in cache.iterdir()) if cache.is_dir() else [],
            raw=sorted(p.name for p in (self.repo / RAW).iterdir()) if (self.repo / RAW).is_dir() else [],
        )
        self.mirror.stall = None
        self.mirror.release.set()
        return facts

    def kill_prepare(self) -> dict:
        # numpy.save's second call in prepare: train_images.npy and train_labels.npy written, the rest not
        facts = self._paused(
            "prepare",
            self._repro_command(),
            "numpy:save",
            "prepare paused",
            call=2,
            when="after",
            argv="pipeline.prepare",
        )
        facts.update(
            requests=dict(self.mirror.requests),
            root_lock=lock_stages(self.repo, Path("dvc.lock")),
            study_lock=lock_stages(self.repo),
            prepared=sorted(p.name for p in (self.repo / PREPARED).iterdir()),
            raw={p.name: (p.stat().st_mtime_ns, md5(p)) for p in sorted((self.repo / RAW).iterdir())},
        )
        return facts

    def _cell_order(self) -> list[str]:
        # DVC's own order; the dry run lists every stage, then fails at the report (no cell outputs yet)
        command = [sys.executable, "-m", "dvc", "repro", "--dry", f"{QUICK_STUDY}/dvc.yaml"]
        dry = subprocess.run(command, cwd=self.repo, env=self.env, capture_output=True, text=True).stdout
        order = re.findall(r"Running stage '[^']*train@([^']+)'", dry)
        assert sorted(order) == sorted(CELLS), dry
        return order

    def kill_cell_before_checkpoint(self) -> dict:
        self.order = self._cell_order()
        target = self.order[1]  # the first cell finishes; the second stops as it is about to save epoch 1
        facts = self._paused(
            "before-checkpoint", self._repro_command(), SAVE, f"{target} about to save its first checkpoint",
            call=1, env={"DVC_STAGE": f"{QUICK_STUDY}/dvc.yaml:train@{target}"},
        )  # fmt: skip
        facts.update(
            target=target,
            study_lock=lock_stages(self.repo),
            checkpoints=checkpoint_files(self.repo, target),
            runs=run_statuses(self.repo),
            prepared_meta=(self.repo / PREPARED / "meta.json").is_file(),
            prepared_examples=len(load_prepared(self.repo / PREPARED).train.labels),
        )
        return facts

    def kill_cell_after_checkpoint(self) -> dict:
        target = self.order[2]  # stops as it is about to save epoch 2: epoch 1's checkpoint is on disk
        facts = self._paused(
            "after-checkpoint", self._repro_command(), SAVE, f"{target} about to save its second checkpoint",
            call=2, env={"DVC_STAGE": f"{QUICK_STUDY}/dvc.yaml:train@{target}"},
        )  # fmt: skip
        facts.update(
            target=target,
            study_lock=lock_stages(self.repo),
            checkpoints=checkpoint_files(self.repo, target),
            runs=run_statuses(self.repo),
        )
        return facts

    def kill_runner(self) -> dict:
        recorded, target = self.order[2], self.order[3]
        marker = self.root / "paused-runner"
        env = pause_env(self.env, marker, SAVE, call=2, env={"DVC_STAGE": f"{QUICK_STUDY}/dvc.yaml:train@{target}"})

        def reached() -> bool:  # the resumed cell recorded by the runner, the other one paused in its slot
            return marker.exists() and f"train@{recorded}" in lock_stages(self.repo)

        facts = self._killed_at("runner", self._runner_command(), env, reached, f"{recorded} recorded, {target} paused")
        facts.update(
            target=target,
            study_lock=lock_stages(self.repo),
            checkpoints=checkpoint_files(self.repo, target),
            runs=run_statuses(self.repo),
        )
        return facts

    def kill_report(self) -> dict:
        # the report's first table: index.html is written, results.csv is not
        facts = self._paused(
            "report", self._runner_command(), "pandas:DataFrame.to_csv", "the report paused", argv="pipeline.report"
        )
        facts.update(
            study_lock=lock_stages(self.repo),
            reports=sorted(p.name for p in (self.repo / REPORTS).iterdir()),
            runs=run_statuses(self.repo),
        )
        return facts

    def finish(self) -> dict:
        began = time.monotonic()
        done = dvc(self.repo, self.env, "repro", f"{QUICK_STUDY}/dvc.yaml")
        status = dvc(self.repo, self.env, "status", f"{QUICK_STUDY}/dvc.yaml")
        return {
            "log": done.stdout + done.stderr,
            "seconds": time.monotonic() - began,
            "status": status.stdout,
            "study_lock": lock_stages(self.repo),
            "runs": run_statuses(self.repo),
            "requests": dict(self.mirror.requests),
            "raw": {p.name: (p.stat().st_mtime_ns, md5(p)) for p in sorted((self.repo / RAW).iterdir())},
        }

    def ran(self, step: str) -> list[str]:
        """The stages the run after step `step`'s kill started, from its log (DVC prints each one)."""
        names = [name for name, _ in self.steps]
        log = self.facts[names[names.index(step) + 1]]["log"]
        return re.findall(r"Running stage '([^']+)'", log)


@pytest.fixture(scope="module")
def scenario(tmp_path_factory):
    scenario = Scenario(tmp_path_factory.mktemp("kill"))
    yield scenario
    scenario.mirror.close()
    print("\nkill scenario, seconds per run:", {step: round(f["seconds"]) for step, f in scenario.facts.items()})


# -- one test per kill ----------------------------------------------------------------------------


@pytest.mark.fault(
    area="kill",
    case="SIGKILL of dvc repro while a file downloads (the mirror stalls mid-body)",
    holds="the half-downloaded file is never used: fetch reruns, downloads it again, md5 verified",
)
def test_kill_during_download(scenario):
    facts = scenario.reach("prepare")
    killed, after = facts["download"], facts["prepare"]
    assert "fetch@fashion_mnist" not in killed["root_lock"]
    assert STALLED_FILE not in killed["cached"]  # only under a temporary name, never as the verified file
    # Files verified before the stall stay in the cache; the stage's folder gets none until all are.
    assert {"train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"} <= set(killed["cached"])
    assert not killed["raw"]
    # the next run: fetch again, the stalled file requested again, every file the published bytes
    assert "fetch@fashion_mnist" in after["root_lock"]
    assert after["requests"][STALLED_FILE] == 2
    assert {name: digest for name, (_, digest) in after["raw"].items() if name != "files.json"} == scenario.checksums


@pytest.mark.fault(
    area="kill",
    case="SIGKILL of dvc repro in prepare, two of its arrays written",
    holds="the fetched data are kept; prepare reruns in full; its partial folder is never used",
)
def test_kill_during_prepare(scenario):
    facts = scenario.reach("before-checkpoint")
    killed, after = facts["prepare"], facts["before-checkpoint"]
    assert killed["prepared"] == ["train_images.npy", "train_labels.npy"]  # partial: no meta.json
    assert "fetch@fashion_mnist" in killed["root_lock"] and "prepare@fashion_mnist" not in killed["study_lock"]
    assert f"{QUICK_STUDY}/dvc.yaml:prepare@fashion_mnist" in scenario.ran("prepare")
    assert "fetch@fashion_mnist" not in scenario.ran("prepare")
    assert after["prepared_meta"] and after["prepared_examples"] == 360
    assert "prepare@fashion_mnist" in after["study_lock"]


@pytest.mark.fault(
    area="kill",
    case="SIGKILL of dvc repro in a cell before its first checkpoint",
    holds="the cells before it are kept; it trains from the start; its MLflow run ends KILLED",
)
def test_kill_in_a_cell_before_its_first_checkpoint(scenario):
    facts = scenario.reach("after-checkpoint")
    killed, after = facts["before-checkpoint"], facts["after-checkpoint"]
    first, target = scenario.order[0], killed["target"]
    assert killed["checkpoints"] == []
    assert killed["runs"] == {first: ["FINISHED"], target: ["RUNNING"]}
    assert f"train@{first}" in killed["study_lock"] and f"train@{target}" not in killed["study_lock"]
    ran = scenario.ran("before-checkpoint")
    assert f"{QUICK_STUDY}/dvc.yaml:train@{target}" in ran and f"{QUICK_STUDY}/dvc.yaml:train@{first}" not in ran
    assert after["runs"][target] == ["KILLED", "FINISHED"] and after["runs"][first] == ["FINISHED"]
    assert summary_of(scenario.repo, target)["resumed_from_step"] is None  # nothing to resume: from the start


@pytest.mark.fault(
    area="kill",
    case="SIGKILL of dvc repro in a cell after its first epoch's checkpoint",
    holds="the cell resumes from that epoch (its summary says so); its killed run ends KILLED",
)
def test_kill_in_a_cell_after_its_first_checkpoint(scenario):
    facts = scenario.reach("runner")
    killed, after = facts["after-checkpoint"], facts["runner"]
    target = killed["target"]
    assert len(killed["checkpoints"]) == 1 and killed["checkpoints"][0].endswith(".npz")
    assert killed["runs"][target] == ["RUNNING"]
    # the runner trained it next: from the checkpoint, its killed run marked
    summary = summary_of(scenario.repo, target)
    assert summary["resumed_from_step"] == STEPS_PER_EPOCH and summary["timing_comparable"] is False
    assert summary["steps_trained"] == 2 * STEPS_PER_EPOCH
    assert after["runs"][target] == ["KILLED", "FINISHED"]
    assert checkpoint_files(scenario.repo, target) == []  # deleted with the outputs written


@pytest.mark.fault(
    area="kill",
    case="SIGKILL of the runner (2 slots): one cell recorded, one training",
    holds="the recorded cell is kept; the other resumes from its checkpoint on the next run",
)
def test_kill_the_runner(scenario):
    facts = scenario.reach("report")
    killed, after = facts["runner"], facts["report"]
    target = killed["target"]
    assert len(killed["checkpoints"]) == 1 and killed["runs"][target] == ["RUNNING"]
    assert f"train@{target}" not in killed["study_lock"]
    assert "1 of 4 cells out of date" in after["log"]  # only the killed one trains again
    summary = summary_of(scenario.repo, target)
    assert summary["resumed_from_step"] == STEPS_PER_EPOCH
    assert after["runs"][target] == ["KILLED", "FINISHED"]


@pytest.mark.fault(
    area="kill",
    case="SIGKILL in the report stage, its page written and its table not",
    holds="the next dvc repro reruns the report alone and trains nothing",
)
def test_kill_during_the_report(scenario):
    facts = scenario.reach("end")
    killed = facts["report"]
    assert "index.html" in killed["reports"] and "results.csv" not in killed["reports"]  # a partial output
    assert "report" not in killed["study_lock"] and {f"train@{c}" for c in CELLS} <= killed["study_lock"]
    assert scenario.ran("report") == [f"{QUICK_STUDY}/dvc.yaml:report"]
    assert {"index.html", "results.csv", "findings.json"} <= {p.name for p in (scenario.repo / REPORTS).iterdir()}


@pytest.mark.fault(
    area="kill",
    case="after six kills at different points, one more dvc repro",
    holds="DVC status clean, no lock to clear by hand; no finished cell retrained; one FINISHED run per cell",
)
def test_nothing_lost_after_all_the_kills(scenario):
    facts = scenario.reach("end")
    end = facts["end"]
    assert "up to date" in end["status"] and "report" in end["study_lock"]
    # a cell's outputs, once recorded, never change: no cell trained twice to the end
    assert set(scenario.finished) == set(CELLS)
    for cell in CELLS:
        assert outputs_of(scenario.repo, cell) == scenario.finished[cell], cell
    # each cell: exactly one FINISHED run, every earlier one killed
    assert sorted(end["runs"]) == sorted(CELLS)
    for cell, statuses in end["runs"].items():
        assert statuses[-1] == "FINISHED" and set(statuses[:-1]) <= {"KILLED"}, (cell, statuses)
    assert end["runs"][scenario.order[0]] == ["FINISHED"]
    # the data were fetched once after the stalled attempt, never again
    assert end["requests"] == facts["prepare"]["requests"]
    assert end["raw"] == facts["prepare"]["raw"]
    # no checkpoint left behind
    assert not any((scenario.repo / CHECKPOINTS).rglob("*.npz"))
    # SIGKILL leaves DVC's rwlock naming dead processes (writers of the killed stage's outputs among them);
    # later runs drop those in their way themselves, so no run failed on a lock and none is left on an output
    assert any(facts[step]["rwlock_dead"]["write"] for step in ("prepare", "before-checkpoint", "after-checkpoint"))
    assert any("had been killed. Auto removed it from the lock file" in facts[s]["log"] for s in facts)
    assert dead_rwlock_entries(scenario.repo)["write"] == []
