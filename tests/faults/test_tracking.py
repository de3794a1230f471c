"""The tracking server under faults, for real: `mlflow server` processes on 127.0.0.1, killed mid-cell,
written to by several cells at once (on SQLite and on PostgreSQL), and behind MLflow's basic-auth app."""

from __future__ import annotations

import base64
import json
import math
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

import click
import mlflow.cli
import pandas as pd
import pytest
from mlflow.entities import ViewType
from mlflow.tracking import MlflowClient
from ruamel.yaml import YAML

from pipeline import train
from pipeline.errors import UserError, run_cli
from pipeline.study.cells import cell_settings, expand_matrix
from pipeline.study.params import load_params
from pipeline.tracking import parent
from pipeline.tracking import runs as tracking
from pipeline.tracking.names import curve_key, summary_key
from pipeline.tracking.settings import read_tracking_settings
from pipeline.tracking.step_losses import step_loss_points
from tests.faults import tracking_writer
from tests.helpers import REPO, MlflowServer, free_port, skip_here_fail_in_ci, write_tiny_prepared

QUICK = (REPO / "params.yaml", REPO / "studies" / "quick" / "params.yaml")
CELL = "fashion_mnist-relu-post-0.0-0"


def fault(case: str, holds: str):
    return pytest.mark.fault(area="tracking", case=case, holds=holds)


@pytest.fixture
def servers(tmp_path):
    """Start `mlflow server`s (each killed in teardown): servers(backend_uri, *args, env=...)."""
    started = []

    def start(backend_uri: str | None = None, *args: str, env: dict | None = None) -> MlflowServer:
        folder = tmp_path / f"server{len(started)}"
        server = MlflowServer(backend_uri or f"sqlite:///{folder / 'mlflow.db'}", folder, args, env)
        started.append(server)
        return server.start()

    yield start
    for server in started:
        server.kill()


@pytest.fixture
def processes():
    """Popen(...) for a test's own subprocesses; any still running at teardown (a failed test) are killed."""
    started = []

    def popen(*args, **kwargs) -> subprocess.Popen:
        started.append(subprocess.Popen(*args, **kwargs))
        return started[-1]

    yield popen
    for process in started:
        if process.poll() is None:
            process.kill()
            process.wait(timeout=60)


# --- the parent run's race, decided the same way by every creator ------------------------------


@pytest.fixture(scope="module")
def sqlite_store(tmp_path_factory):
    folder = tmp_path_factory.mktemp("store")
    return MlflowClient(f"sqlite:///{folder / 'mlflow.db'}"), folder


@pytest.fixture
def store(sqlite_store, request):
    """A SQLite store, as a cell without a server uses one, and an experiment of the test's own in it."""
    client, folder = sqlite_store
    return client, client.create_experiment(request.node.name, artifact_location=(folder / "mlruns").as_uri())


def _parent(client, experiment_id, key, start_time):
    tags = {"bnbench.role": "study", "bnbench.study_key": key}
    return client.create_run(experiment_id, start_time=start_time, tags=tags).info.run_id


@fault(
    case="two cells create their study's parent run in the same millisecond",
    holds="exactly one of the two is kept, whatever order the store lists them in",
)
def test_parent_runs_created_in_the_same_millisecond_keep_one(store):
    client, experiment_id = store
    mine, theirs = _parent(client, experiment_id, "k", 1000), _parent(client, experiment_id, "k", 1000)
    kept = {parent.keep_first(client, experiment_id, "k", run) for run in (mine, theirs)}
    alive = client.search_runs([experiment_id], "tags.`bnbench.role` = 'study'")
    assert len(kept) == 1 and [r.info.run_id for r in alive] == list(kept) == [min(mine, theirs)]
    runs = [client.get_run(mine), client.get_run(theirs)]
    assert parent.first_parent(runs).info.run_id == parent.first_parent(runs[::-1]).info.run_id


@fault(
    case="a parent run with an earlier start time appears after cells already joined another "
    "(a retried request, another machine's clock)",
    holds="once the cells end, one parent: the earlier, with every child under it",
)
def test_a_late_parent_is_settled_into_one(store):
    client, experiment_id = store
    child = {"bnbench.role": "cell", "bnbench.study_key": "k"}
    early_joiner_parent = _parent(client, experiment_id, "k", 2000)
    early = client.create_run(experiment_id, tags={**child, "mlflow.parentRunId": early_joiner_parent})
    late_parent = _parent(client, experiment_id, "k", 1000)  # created later, stamped earlier
    late = client.create_run(experiment_id, tags={**child, "mlflow.parentRunId": late_parent})
    other_study = client.create_run(
        experiment_id, tags={**child, "bnbench.study_key": "other", "mlflow.parentRunId": "x"}
    )
    parent.settle(client, experiment_id, "k")
    alive = client.search_runs([experiment_id], "tags.`bnbench.role` = 'study'")
    assert [r.info.run_id for r in alive] == [late_parent]
    assert client.get_run(early_joiner_parent).info.lifecycle_stage == "deleted"
    for run in (early, late):
        assert client.get_run(run.info.run_id).data.tags["mlflow.parentRunId"] == late_parent
    assert client.get_run(other_study.info.run_id).data.tags["mlflow.parentRunId"] == "x"
    deleted = client.search_runs([experiment_id], "", run_view_type=ViewType.DELETED_ONLY)
    assert [r.info.run_id for r in deleted] == [early_joiner_parent]


# --- where the server listens ---------------------------------------------------------------


@fault(
    case="the tracking server's address in compose.yaml and in the commands of docs/",
    holds="the server is published or bound on 127.0.0.1 only",
)
def test_tracking_servers_listen_on_loopback_only():
    compose = YAML(typ="safe", pure=True).load((REPO / "compose.yaml").read_text())
    for name, service in compose["services"].items():
        for port in service.get("ports", []):
            assert str(port).startswith("127.0.0.1:"), (name, port)
    # inside its container the server listens on all of the container's interfaces: only the
    # port published above (on the host's loopback) and compose's own network reach it
    assert "--host 0.0.0.0" in compose["services"]["mlflow"]["command"]
    # a command that names no host binds where MLflow's own default says, for `mlflow ui` too
    context = click.Context(mlflow.cli.cli)
    for name in ("server", "ui"):
        host = next(p for p in mlflow.cli.cli.get_command(context, name).params if p.name == "host")
        assert host.default == "127.0.0.1", (name, host.default)
    docs = "\n".join(page.read_text() for page in sorted((REPO / "docs").rglob("*.md")))
    commands = re.findall(r"\bmlflow (?:server|ui)\b(?:[^\n`\\]|\\\n?)*", docs)  # with continuation lines
    assert len(commands) >= 2  # the local UI and the team's server
    for command in commands:
        hosts = re.findall(r"(?<![\w-])(?:--host|-h)[ =](\S+)", command)
        assert hosts in ([], ["127.0.0.1"]), command


# --- who may log ------------------------------------------------------------------------------


def _request(url: str, user: str | None = None, password: str | None = None, body: dict | None = None) -> int:
    request = urllib.request.Request(url, data=json.dumps(body).encode() if body else None)
    request.add_header("Content-Type", "application/json")
    if user:
        request.add_header("Authorization", "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode())
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status
    except urllib.error.HTTPError as error:
        return error.code


@fault(
    case="a shared server with MLflow's basic-auth app: no login, a user's, a wrong one, one who may only read",
    holds="no login is refused (401); a user's login from the environment logs a cell; a wrong login or a "
    "read-only user stops the stage with one message, no traceback",
)
def test_a_server_with_logins(tmp_path, servers, monkeypatch, capsys):
    admin_password = "not-the-default-" + os.urandom(6).hex()
    config = tmp_path / "basic_auth.ini"
    config.write_text(
        "[mlflow]\ndefault_permission = READ\n"
        f"database_uri = sqlite:///{tmp_path / 'users.db'}\nadmin_username = admin\nadmin_password = {admin_password}\n"
        "authorization_function = mlflow.server.auth:authenticate_request_basic_auth\n"
    )
    secrets = {"MLFLOW_AUTH_CONFIG_PATH": str(config), "MLFLOW_FLASK_SERVER_SECRET_KEY": os.urandom(16).hex()}
    server = servers(None, "--app-name", "basic-auth", env={**os.environ, **secrets})
    api = f"{server.uri}/api/2.0/mlflow"
    assert _request(f"{api}/experiments/search?max_results=1") == 401
    assert _request(f"{api}/experiments/search?max_results=1", "admin", "password") == 401  # MLflow's old default
    for user in ("alice", "bob"):
        created = _request(
            f"{api}/users/create", "admin", admin_password, {"username": user, "password": "a-l0ng-secret"}
        )
        assert created == 200

    monkeypatch.setenv("MLFLOW_TRACKING_URI", server.uri)
    monkeypatch.setenv("DVC_ROOT", str(tmp_path))
    monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", "alice")
    monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", "a-l0ng-secret")
    params = load_params(*QUICK)
    cell = expand_matrix(params)[0]
    tracking.check_reachable(server.uri)
    with tracking.track_cell(
        read_tracking_settings(tmp_path), params, cell, cell_settings(params, cell), tracking_writer.META, "cpu"
    ) as run:
        run.log_eval({"step": 0, "epoch": 0.0, "val_accuracy": 0.25})
    assert "warning" not in capsys.readouterr().err
    admin = {"MLFLOW_TRACKING_USERNAME": "admin", "MLFLOW_TRACKING_PASSWORD": admin_password}
    with monkeypatch.context() as m:
        for name, value in admin.items():
            m.setenv(name, value)
        logged = MlflowClient(server.uri).get_run(run.run_id)
    assert logged.info.status == "FINISHED" and logged.data.metrics["curves/val_accuracy"] == 0.25
    assert logged.info.user_id == "alice"
    # with default_permission READ, only alice (her cell created the study's experiment) may log into it:
    # bob's cell stops before training
    monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", "bob")
    with pytest.raises(UserError, match=r"does not let user 'bob' do this \(403.*EDIT permission"):
        with tracking.track_cell(
            read_tracking_settings(tmp_path), params, cell, cell_settings(params, cell), tracking_writer.META, "cpu"
        ):
            raise AssertionError("a cell without permission to log must not train")
    monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", "alice")

    prepared = tmp_path / "prepared"
    prepared.mkdir()
    (prepared / "meta.json").write_text(json.dumps({"dataset": cell.dataset}))  # the login is checked before the data
    argv = [*(a for f in QUICK for a in ("--params", str(f))), "--cell", cell.name, "--data", str(prepared), "--out", str(tmp_path / "o")]  # fmt: skip
    monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", "wrong")
    assert run_cli(lambda: train.main(argv)) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err, err
    assert err.startswith(
        f"bnbench: the MLflow tracking server at {server.uri} refused the login of user 'alice' (401)"
    )
    assert "MLFLOW_TRACKING_PASSWORD" in err and not (tmp_path / "o").exists()
    monkeypatch.delenv("MLFLOW_TRACKING_USERNAME")
    monkeypatch.delenv("MLFLOW_TRACKING_PASSWORD")
    assert run_cli(lambda: train.main(argv)) == 1
    assert f"the MLflow tracking server at {server.uri} asks for a login (401)" in capsys.readouterr().err


@fault(
    case="MLFLOW_TRACKING_URI without a scheme (127.0.0.1:5999), for the train stage and the sync",
    holds="exit 1 before any training, one line naming the setting and the fix (http://127.0.0.1:5999), "
    "no traceback; the cell's earlier outputs are kept",
)
def test_a_tracking_uri_without_a_scheme_is_one_line(tmp_path):
    prepared = write_tiny_prepared(tmp_path / "data", train=200, test=50)
    out = tmp_path / "results" / CELL
    out.mkdir(parents=True)
    (out / "metrics.json").write_text('{"kept": true}')  # what an earlier run of the stage wrote
    (tmp_path / ".dvc").mkdir()  # the sync finds its repository by .dvc/
    env = {**os.environ, "MLFLOW_TRACKING_URI": "127.0.0.1:5999", "DVC_ROOT": str(tmp_path)}
    argv = [a for f in QUICK for a in ("--params", str(f))] + ["--cell", CELL, "--data", str(prepared), "--out", str(out)]  # fmt: skip
    for command in (["pipeline.train", *argv], ["pipeline.tracking.sync"]):
        done = subprocess.run([sys.executable, "-m", *command], cwd=REPO, env=env, capture_output=True, text=True)
        assert done.returncode == 1, done.stderr
        # one line of ours, the last, and no traceback (TensorFlow's start-up log lines may come before it)
        ours = [line for line in done.stderr.splitlines() if line.startswith("bnbench:")]
        assert len(ours) == 1 and done.stderr.endswith(ours[0] + "\n") and "Traceback" not in done.stderr
        assert ours[0].startswith("bnbench: MLFLOW_TRACKING_URI=127.0.0.1:5999 names no tracking store")
        assert "MLFLOW_TRACKING_URI=http://127.0.0.1:5999 for a tracking server" in ours[0]
    assert [p.name for p in out.iterdir()] == ["metrics.json"] and "kept" in (out / "metrics.json").read_text()
    assert not (tmp_path / "mlflow.db").exists() and not (tmp_path / "127.0.0.1:5999").exists()


# --- a cell whose server vanishes --------------------------------------------------------------


@pytest.fixture(scope="module")
def stage_inputs(tmp_path_factory):
    """Prepared Fashion-MNIST-format data (generated) and the quick study shrunk to one short epoch."""
    root = tmp_path_factory.mktemp("cell")
    prepared = write_tiny_prepared(root, train=300, test=100, val_fraction=0.2)
    overlay = root / "small.yaml"  # 240 training images: 8 steps of 32, 2 evaluations
    overlay.write_text("train:\n  epochs: 1\n  evals_per_epoch: 2\n  gradient_probe: 32\n  bn_probe: 64\n")
    return prepared, [*QUICK, overlay]


def _stage(tmp_path: Path, stage_inputs, uri: str, popen) -> tuple[subprocess.Popen, Path, Path, Path]:
    """The train stage of CELL, held by tests.faults.paused_cell, in a repository folder of its own."""
    prepared, params = stage_inputs
    repo, control, out = tmp_path / "repo", tmp_path / "control", tmp_path / "repo" / "results" / CELL
    (repo / ".dvc").mkdir(parents=True)  # a repository as the sync command finds one: .dvc/ and params.yaml
    shutil.copy(REPO / "params.yaml", repo / "params.yaml")
    control.mkdir()
    argv = [a for f in params for a in ("--params", str(f))] + ["--cell", CELL, "--data", str(prepared), "--out", str(out)]  # fmt: skip
    env = {**os.environ, "MLFLOW_TRACKING_URI": uri, "DVC_ROOT": str(repo), "DVC_STAGE": f"train@{CELL}"}
    process = popen(
        [sys.executable, "-m", "tests.faults.paused_cell", str(control), *argv],
        cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    return process, repo, control, out


def _wait_for(path: Path, process: subprocess.Popen, timeout_s: float = 300) -> str:
    deadline = time.monotonic() + timeout_s
    while not path.exists():
        if process.poll() is not None:
            raise AssertionError(f"the stage ended before {path.name}:\n{process.stderr.read()[-4000:]}")
        assert time.monotonic() < deadline, f"{path.name} did not appear in {timeout_s} s"
        time.sleep(0.1)
    return path.read_text()


def _kill_once_the_run_exists(server: MlflowServer, process, control: Path) -> str:
    run_id = _wait_for(control / "started", process)
    assert MlflowClient(server.uri).get_run(run_id).info.status == "RUNNING"  # the run is on the server
    server.kill()
    with pytest.raises(OSError):
        urllib.request.urlopen(f"{server.uri}/health", timeout=2)
    (control / "resume-training").write_text("")
    return run_id


def _assert_pairs(logged: list[tuple[int, float]], expected: list[tuple[int, float]], what: str) -> None:
    """(step, value) pairs: the same steps, each once, and the values the cell's CSV files hold (6 digits)."""
    logged, expected = sorted(logged), sorted(expected)
    assert [s for s, _ in logged] == [int(s) for s, _ in expected], what
    assert [v for _, v in logged] == pytest.approx([v for _, v in expected], rel=1e-5, abs=1e-9), what


def _assert_everything_once(client: MlflowClient, run_id: str, out: Path, status: str = "FINISHED") -> None:
    """Every number the cell wrote to its outputs is in its run at its step, exactly once; the run has `status`."""
    run = client.get_run(run_id)
    assert run.info.status == status
    history = pd.read_csv(out / "history.csv")
    for column in history.columns.drop("step"):
        expected = [(int(s), v) for s, v in zip(history["step"], history[column], strict=True) if math.isfinite(v)]
        _assert_pairs(
            [(m.step, m.value) for m in client.get_metric_history(run_id, curve_key(column))], expected, column
        )
    logged = [(m.step, m.value) for m in client.get_metric_history(run_id, tracking.STEP_LOSS_METRIC)]
    _assert_pairs(logged, step_loss_points(pd.read_csv(out / "steps.csv")), tracking.STEP_LOSS_METRIC)
    summary = json.loads((out / "metrics.json").read_text())
    for key in ("test_accuracy", "final_val_accuracy", "train_seconds", "steps_trained"):
        logged = [(m.step, m.value) for m in client.get_metric_history(run_id, summary_key(key))]
        _assert_pairs(logged, [(summary["steps_trained"], summary[key])], key)
    assert run.data.tags["bnbench.outcome"] == summary["outcome"] and run.data.params["bn"] == "post"
    assert {a.path for a in client.list_artifacts(run_id)} == {p.name for p in out.iterdir()}
    # the splits it trained and was validated on, journaled like the rest
    assert sorted((i.tags[0].value, i.dataset.name) for i in run.inputs.dataset_inputs) == [
        ("training", "fashion_mnist/train"),
        ("validation", "fashion_mnist/val"),
    ]
    cells = client.search_runs([run.info.experiment_id], "tags.`bnbench.role` = 'cell'")
    assert [r.info.run_id for r in cells] == [run_id]


@fault(
    case="the server is killed while a cell trains and is back before the cell ends",
    holds="the cell trains on; what the server missed arrives from the delivery thread after the cell's next log "
    "call, each metric at its step, once; the run is FINISHED",
)
def test_server_back_before_the_cell_ends(tmp_path, stage_inputs, servers, processes):
    server = servers()
    process, repo, control, out = _stage(tmp_path, stage_inputs, server.uri, processes)
    run_id = _kill_once_the_run_exists(server, process, control)
    _wait_for(control / "trained", process)  # every evaluation and step loss was logged to a dead server
    server.start()
    (control / "resume-finish").write_text("")
    _wait_for(control / "logged", process)  # the summary and files logged, the run not yet ended
    client = MlflowClient(server.uri)
    _assert_everything_once(client, run_id, out, status="RUNNING")  # delivered after that log call
    (control / "resume-end").write_text("")
    stdout, stderr = process.communicate(timeout=300)
    assert process.returncode == 0, stderr[-4000:]
    assert "warning" not in stderr and "train: fashion_mnist-relu-post-0.0-0: completed" in stdout
    _assert_everything_once(client, run_id, out)
    assert not (repo / ".bnbench" / "tracking-spool" / run_id).exists()  # all delivered: nothing left to sync


def _sync(repo: Path) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("MLFLOW_TRACKING_URI", "DVC_ROOT")}
    return subprocess.run(
        [sys.executable, "-m", "pipeline.tracking.sync"], cwd=repo, env={**env, "PYTHONPATH": str(REPO)},
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip


@fault(
    case="the server is killed while a cell trains and is still gone when the cell ends",
    holds="the stage exits 0 with its outputs and one warning naming the sync command; the sync delivers it all, "
    "and delivering it twice adds nothing",
)
def test_server_gone_until_after_the_cell(tmp_path, stage_inputs, servers, processes):
    server = servers()
    process, repo, control, out = _stage(tmp_path, stage_inputs, server.uri, processes)
    for hold in ("resume-finish", "resume-end"):  # no hold at the end: the cell ends with the server gone
        (control / hold).write_text("")
    run_id = _kill_once_the_run_exists(server, process, control)
    stdout, stderr = process.communicate(timeout=300)
    assert process.returncode == 0, stderr[-4000:]
    assert "train: fashion_mnist-relu-post-0.0-0: completed" in stdout
    assert {"metrics.json", "history.csv", "steps.csv", "curves.png"} <= {p.name for p in out.iterdir()}
    ours = [line for line in stderr.splitlines() if line.startswith("bnbench:")]  # (the rest: TensorFlow, MLflow)
    assert len(ours) == 1 and "uv run python -m pipeline.tracking.sync" in ours[0], stderr[-4000:]
    assert ours[0].startswith(f"bnbench: warning: the MLflow tracking server at {server.uri} did not take")
    assert "Traceback" not in stderr

    server.start()
    client = MlflowClient(server.uri)
    assert client.get_run(run_id).info.status == "RUNNING" and not client.get_metric_history(
        run_id, "curves/val_accuracy"
    )
    spooled = repo / ".bnbench" / "tracking-spool" / run_id
    shutil.copytree(spooled, tmp_path / "spool-before-sync")
    done = _sync(repo)
    assert done.returncode == 0, done.stderr
    assert f"run {run_id} ({CELL}):" in done.stdout and "ended FINISHED" in done.stdout
    _assert_everything_once(client, run_id, out)
    assert not spooled.exists()
    again = _sync(repo)
    assert again.returncode == 0 and "nothing to deliver" in again.stdout
    # A sync that sent everything but died before recording it: the next one sends it all again.
    shutil.copytree(tmp_path / "spool-before-sync", spooled)
    done = _sync(repo)
    assert done.returncode == 0 and "ended FINISHED" in done.stdout, done.stderr
    _assert_everything_once(client, run_id, out)


def _held_writer(tmp_path, processes, hold: str):
    """A cell's tracking writer in its own process, held at `hold` (tests/faults/tracking_writer.py), logging to
    the default store (SQLite, no server) of a repository as the sync command finds one: .dvc/ and params.yaml.
    Returns the repository, the control folder, the store's URI and the process."""
    repo, control = tmp_path / "repo", tmp_path / "control"
    (repo / ".dvc").mkdir(parents=True)
    shutil.copy(REPO / "params.yaml", repo / "params.yaml")
    control.mkdir()
    (control / hold).write_text("")
    (control / "go").write_text("")
    uri = f"sqlite:///{repo / 'mlflow.db'}"
    env = {**os.environ, "MLFLOW_TRACKING_URI": uri, "DVC_ROOT": str(repo)}
    cell = processes(
        [sys.executable, "-m", "tests.faults.tracking_writer", str(control), "0", *map(str, QUICK)],
        cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    return repo, control, uri, cell


@fault(
    case="a cell is killed (SIGKILL) while it trains; the sync runs before and after",
    holds="the sync leaves a running cell's run alone, then ends the killed one KILLED with what it logged",
)
def test_a_killed_cell_is_ended_by_the_sync(tmp_path, processes):
    repo, control, uri, cell = _held_writer(tmp_path, processes, "hold")
    run_id = _wait_for(control / "held-0", cell)
    alive = _sync(repo)
    assert alive.returncode == 0 and f"run {run_id} (" in alive.stdout and "its cell is still running" in alive.stdout
    cell.kill()
    cell.wait(timeout=60)
    client = MlflowClient(uri)
    assert client.get_run(run_id).info.status == "RUNNING"
    done = _sync(repo)
    assert done.returncode == 0 and "ended KILLED" in done.stdout, done.stdout + done.stderr
    run = client.get_run(run_id)
    assert (
        run.info.status == "KILLED"
        and run.data.metrics["curves/val_accuracy"] == tracking_writer.expected_evals(0)[0]["val_accuracy"]
    )
    assert not (repo / ".bnbench" / "tracking-spool" / run_id).exists()


@fault(
    case="a cell is killed (SIGKILL) while its delivery thread is in a store call, everything logged",
    holds="its journal keeps every entry; the sync delivers them all, once, and ends the run KILLED",
)
def test_a_cell_killed_mid_delivery_leaves_its_spool_to_the_sync(tmp_path, processes):
    repo, control, uri, cell = _held_writer(tmp_path, processes, "hold-delivery")
    run_id = _wait_for(control / "delivering-0", cell)
    assert _wait_for(control / "ending-0", cell) == run_id  # every log call returned while the thread was stuck
    cell.kill()
    cell.wait(timeout=60)
    client = MlflowClient(uri)
    assert client.get_run(run_id).info.status == "RUNNING" and not client.get_run(run_id).data.metrics
    done = _sync(repo)
    assert done.returncode == 0 and "ended KILLED" in done.stdout, done.stdout + done.stderr
    run = client.get_run(run_id)
    assert run.info.status == "KILLED" and run.data.params and run.data.tags["bnbench.outcome"] == "completed"
    for metric in ("val_accuracy", "val_loss", "epoch"):
        logged = sorted((m.step, m.value) for m in client.get_metric_history(run_id, curve_key(metric)))
        assert logged == [(row["step"], row[metric]) for row in tracking_writer.expected_evals(0)], metric
    logged = sorted((m.step, m.value) for m in client.get_metric_history(run_id, tracking.STEP_LOSS_METRIC))
    assert logged == step_loss_points(tracking_writer.expected_steps(0))
    assert run.data.metrics[summary_key("test_accuracy")] == 0.0
    assert [a.path for a in client.list_artifacts(run_id)] == ["artifact-0.txt"]
    assert not (repo / ".bnbench" / "tracking-spool" / run_id).exists()


# --- many writers at once ----------------------------------------------------------------------


@pytest.fixture
def postgres(tmp_path):
    """A PostgreSQL server of its own (Debian's package), run as the `postgres` user on 127.0.0.1; its URI."""
    initdb = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb")) or [Path(shutil.which("initdb") or "/none")]
    bindir = initdb[-1].parent
    problem = None
    if not (bindir / "pg_ctl").exists():
        problem = "PostgreSQL is not installed (Debian: apt-get install postgresql; .ci/run installs it)"
    elif os.geteuid() != 0:
        problem = "PostgreSQL runs as the `postgres` user here, which takes root (CI runs as root)"
    if problem:
        skip_here_fail_in_ci(problem)
    data = Path(tempfile.mkdtemp(prefix="bnbench-pg-"))  # under /tmp: the postgres user cannot enter tmp_path
    shutil.chown(data, "postgres")
    port = free_port()

    def as_postgres(*command: str) -> None:
        done = subprocess.run(["runuser", "-u", "postgres", "--", *command], capture_output=True, text=True, cwd=data)
        assert done.returncode == 0, f"{command[0]} failed:\n{done.stdout}\n{done.stderr}"

    try:
        as_postgres(str(bindir / "initdb"), "-D", str(data / "db"), "-U", "postgres", "--auth=trust", "--no-sync")
        options = f"-p {port} -c listen_addresses=127.0.0.1 -k {data} -c fsync=off"
        as_postgres(
            str(bindir / "pg_ctl"), "-D", str(data / "db"), "-l", str(data / "log"), "-w", "-o", options, "start"
        )
        as_postgres(str(bindir / "createdb"), "-h", "127.0.0.1", "-p", str(port), "-U", "postgres", "mlflow")
        yield f"postgresql://postgres@127.0.0.1:{port}/mlflow"
    finally:
        if (data / "db" / "postmaster.pid").exists():
            as_postgres(str(bindir / "pg_ctl"), "-D", str(data / "db"), "-m", "immediate", "stop")
        shutil.rmtree(data, ignore_errors=True)


WRITERS = 4


@pytest.mark.parametrize(
    "backend",
    [
        pytest.param("sqlite", marks=fault(
            case=f"{WRITERS} cells of one study start at once on a fresh server (SQLite store)",
            holds="one parent run, one finished child per cell, every metric value there once",
        )),
        pytest.param("postgresql", marks=fault(
            case=f"{WRITERS} cells of one study start at once on a fresh server (PostgreSQL store)",
            holds="one parent run, one finished child per cell, every metric value there once",
        )),
    ],
)  # fmt: skip
def test_concurrent_writers_lose_nothing_and_share_one_parent(backend, tmp_path, servers, processes, request):
    backend_uri = request.getfixturevalue("postgres") if backend == "postgresql" else None
    server = servers(backend_uri)
    control = tmp_path / "control"
    control.mkdir()
    env = {**os.environ, "MLFLOW_TRACKING_URI": server.uri, "DVC_ROOT": str(tmp_path)}
    writers = [
        processes(
            [sys.executable, "-m", "tests.faults.tracking_writer", str(control), str(i), *map(str, QUICK)],
            cwd=REPO,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )  # fmt: skip
        for i in range(WRITERS)
    ]
    deadline = time.monotonic() + 300
    while len(list(control.glob("ready-*"))) < WRITERS:  # all imported: they start together
        assert time.monotonic() < deadline and all(w.poll() is None for w in writers)
        time.sleep(0.1)
    (control / "go").write_text("")
    for writer in writers:
        output = writer.communicate(timeout=300)[0]
        assert writer.returncode == 0 and "warning" not in output, output[-4000:]

    client = MlflowClient(server.uri)
    params = load_params(*QUICK)
    (experiment,) = client.search_experiments(filter_string=f"name = '{params.study.name}'")
    key = tracking.study_key(params)
    parents = client.search_runs([experiment.experiment_id], "tags.`bnbench.role` = 'study'")
    assert [p.data.tags["bnbench.study_key"] for p in parents] == [key]
    children = client.search_runs([experiment.experiment_id], "tags.`bnbench.role` = 'cell'")
    assert len(children) == WRITERS
    cells = expand_matrix(params)
    for index in range(WRITERS):
        (run,) = [r for r in children if r.data.tags["bnbench.cell"] == cells[index].name]
        run_id = run.info.run_id
        assert run.info.status == "FINISHED" and run.data.tags["mlflow.parentRunId"] == parents[0].info.run_id
        for metric in ("val_accuracy", "val_loss", "epoch"):
            logged = [(m.step, m.value) for m in client.get_metric_history(run_id, curve_key(metric))]
            expected = [(row["step"], row[metric]) for row in tracking_writer.expected_evals(index)]
            assert sorted(logged) == expected, (index, metric)
        logged = sorted((m.step, m.value) for m in client.get_metric_history(run_id, tracking.STEP_LOSS_METRIC))
        assert logged == step_loss_points(tracking_writer.expected_steps(index)), index
        assert [a.path for a in client.list_artifacts(run_id)] == [f"artifact-{index}.txt"]
    assert not list((tmp_path / ".bnbench" / "tracking-spool").iterdir())
