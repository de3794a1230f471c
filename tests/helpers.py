"""Helpers the tests share: import them from here, never from a conftest."""

from __future__ import annotations

import contextlib
import functools
import http.server
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import NoReturn

from ruamel.yaml import YAML

REPO = Path(__file__).resolve().parents[1]
FIXTURES = REPO.parent / "shared" / "fixtures"
QUICK_STUDY = "studies/quick"


class QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format, *args):  # noqa: A002 - the base class's name
        pass


@contextlib.contextmanager
def serve_directory(directory: Path) -> Iterator[str]:
    """Serve `directory` over HTTP on 127.0.0.1 (a free port) while the block runs; yields the base URL."""
    handler = functools.partial(QuietHandler, directory=str(directory))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def dvc(repo: Path, env: dict, *args: str) -> subprocess.CompletedProcess:
    """`dvc <args>` in `repo`; fails the test with DVC's output when it fails."""
    done = subprocess.run([sys.executable, "-m", "dvc", *args], cwd=repo, env=env, capture_output=True, text=True)
    assert done.returncode == 0, f"dvc {' '.join(args)} failed:\n{done.stdout[-4000:]}\n{done.stderr[-4000:]}"
    return done


def regenerate_pipeline(repo: Path) -> None:
    """What a user runs after editing a study's params: rewrite every dvc.yaml."""
    env = {**os.environ, "PYTHONPATH": str(repo)}
    subprocess.run([sys.executable, "-m", "pipeline.dvcfile"], cwd=repo, env=env, check=True, capture_output=True)


def shrink_quick_study(repo: Path, **matrix: list) -> None:
    """The quick study made smaller still (8 cells of one short epoch), by editing its overlay as a user would.

    `matrix` overrides axes further, e.g. dataset=["fashion_mnist"], seed=[0] for 2 cells.
    """
    path = repo / QUICK_STUDY / "params.yaml"
    yaml = YAML(typ="rt")
    overlay = yaml.load(path)
    overlay["prepare"].update(max_train_examples=400, max_test_examples=200)
    overlay["matrix"].update({"activation": ["sigmoid"], "bn": ["off", "post"], "seed": [0, 1], **matrix})
    overlay["train"].update(epochs=1, evals_per_epoch=2)
    yaml.dump(overlay, path)
    regenerate_pipeline(repo)


# -- faults planted at a chosen call of a process (tests/fault_hook/sitecustomize.py) -------------

FAULT_HOOK = REPO / "tests" / "fault_hook"
FAULT_ENV = "BNBENCH_TEST_FAULT"


def with_fault_hook(base: dict) -> dict:
    """`base` with the fault hook first on PYTHONPATH (inactive until FAULT_ENV is set)."""
    return {**base, "PYTHONPATH": os.pathsep.join(p for p in (str(FAULT_HOOK), base.get("PYTHONPATH", "")) if p)}


def pause_env(base: dict, marker: Path, target: str, call: int = 1, when: str = "before", **only) -> dict:
    """`base` for processes that pause at the `call`-th call of `target` ("module:attr.path") and write `marker`.

    `only`: argv="..." (a part of the command line), env={"NAME": "its value"}.
    """
    config = {"target": target, "action": "pause", "call": call, "when": when, "marker": str(marker), **only}
    return {**with_fault_hook(base), FAULT_ENV: json.dumps(config)}


def failing_env(base: dict, target: str, **only) -> dict:
    """`base` for processes whose first matching call of `target` ("module:attr.path") raises, as a fault would."""
    return {**with_fault_hook(base), FAULT_ENV: json.dumps({"target": target, "action": "raise", **only})}


def wait_for(check, what: str, process: subprocess.Popen | None = None, timeout_s: float = 300):
    """Poll `check()` until it returns something truthy (returned); fail naming `what` if the process ends first."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        found = check()
        if found:
            return found
        if process is not None and process.poll() is not None:
            raise AssertionError(f"the process ended (exit code {process.returncode}) before {what}")
        time.sleep(0.05)
    raise AssertionError(f"no {what} within {timeout_s} s")


def start_group(command: list[str], cwd: Path, env: dict, log: Path) -> subprocess.Popen:
    """Start `command` as the leader of a new process group, its output going to `log`."""
    with log.open("w") as out:
        return subprocess.Popen(command, cwd=cwd, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)


def kill_group(process: subprocess.Popen, sig: int = signal.SIGKILL) -> int:
    """Send `sig` to the process's whole group (the command and every process it started); its exit code."""
    with contextlib.suppress(ProcessLookupError):  # the group may have ended already
        os.killpg(process.pid, sig)
    code = process.wait(timeout=60)
    if sig == signal.SIGKILL:  # nothing of the group may survive to write after the test looked
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        _wait_until_group_gone(process.pid)
    return code


def _group_members(group: int) -> list[int]:
    members = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError):
            # pid (comm) state ppid pgrp ...: comm may hold spaces, so read after its closing parenthesis
            if int(stat.read_text().rpartition(")")[2].split()[2]) == group:
                members.append(int(stat.parent.name))
    return members


def _wait_until_group_gone(group: int, timeout_s: float = 60) -> None:
    """Until every process of the killed group is reaped, zombies included.

    A killed child whose parent died with it is a zombie until init reaps it, and DVC takes a
    zombie's PID for a live process that holds its lock: a run started before the reaping would
    find the path busy. A machine's init reaps in moments; on a loaded one it can take a while.
    """
    deadline = time.monotonic() + timeout_s
    while (left := _group_members(group)) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not left, f"processes {left} of a killed group were not reaped within {timeout_s:.0f} s"


# -- what this machine lacks: skipped here, a failure in CI -------------------------------------


def in_ci() -> bool:
    """Whether the tests run in CI: CI set to anything but empty, 0 or false (CI systems set CI=true)."""
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false")


def skip_here_fail_in_ci(reason: str) -> NoReturn:
    """A test that cannot run on this machine (a missing browser, engine, extra): skipped here; in CI, which
    installs everything the tests need, a failure."""
    import pytest

    if in_ci():
        pytest.fail(f"CI must run this test: {reason}")
    pytest.skip(reason)


def require_extra(module: str, extra: str) -> None:
    """An optional dependency the test needs (skipped here without it, a failure in CI)."""
    import importlib.util

    if importlib.util.find_spec(module) is None:
        skip_here_fail_in_ci(f"{module} is not installed (the {extra} extra: uv sync --extra {extra})")


def require_chromium() -> str:
    """Debian's Chromium, for the tests that look at a page as a person would; its path."""
    path = shutil.which("chromium") or shutil.which("chromium-browser")
    if path is None:
        skip_here_fail_in_ci("Debian's chromium is not installed (apt-get install chromium; .ci/run does)")
    return path


CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]  # fmt: skip


def open_offline(page: Path, wait_for: str) -> tuple[str, list[str], list[str]]:
    """`page` opened from disk in headless Chromium with the network off, once `wait_for` (a CSS selector)
    is there: the rendered body's HTML, the console and page errors, and every request not to a file."""
    from playwright.sync_api import sync_playwright

    errors: list[str] = []
    requests: list[str] = []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=require_chromium(), args=CHROMIUM_ARGS)
        tab = browser.new_context(offline=True).new_page()
        tab.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
        tab.on("pageerror", lambda e: errors.append(str(e)))
        tab.on("request", lambda r: requests.append(r.url) if not r.url.startswith(("file:", "data:")) else None)
        tab.goto(page.as_uri())
        tab.wait_for_selector(wait_for, timeout=60_000)
        body = tab.inner_html("body")
        browser.close()
    return body, errors, requests


# -- a tiny prepared dataset -----------------------------------------------------------------------


def write_tiny_prepared(folder: Path, train: int = 400, test: int = 100, val_fraction: float = 0.25) -> Path:
    """Generated Fashion-MNIST-format files, fetched and prepared as the stages do; returns `folder`/prepared.

    The files are recorded as fetch records them (files.json, not the published data), then the prepare
    stage's own `prepare_dataset` splits (seed 0) and describes them. Defaults: 300 training images
    (10 steps of 32), 100 validation and 100 test images.
    """
    import pooch

    from pipeline.data.download import FetchedFiles
    from pipeline.data.preparation import prepare_dataset
    from pipeline.data.prepared import write_prepared
    from pipeline.study.schema import PrepareParams
    from tools.fake_data import write_fashion_mnist

    raw = folder / "raw"
    raw.mkdir(parents=True, exist_ok=True)
    write_fashion_mnist(raw, train=train, test=test)
    md5 = {path.name: pooch.file_hash(str(path), alg="md5") for path in sorted(raw.glob("*.gz"))}
    (raw / "files.json").write_text(FetchedFiles("fashion_mnist", md5, published=False).to_json(), encoding="utf-8")
    settings = PrepareParams(val_fraction=val_fraction, split_seed=0)
    splits, meta = prepare_dataset("fashion_mnist", raw, settings)
    write_prepared(folder / "prepared", splits, meta)
    return folder / "prepared"


def free_port() -> int:
    """A TCP port nothing listens on at 127.0.0.1 right now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


# bnbench runs no MLflow server jobs (GenAI scorers and the like); with them on, each server starts half a
# dozen job-runner processes, each importing MLflow: CPU the tests need. compose.yaml's server does the same.
NO_SERVER_JOBS = {"MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}


class MlflowServer:
    """`mlflow server` on 127.0.0.1 as a user starts it; a test can kill it and start it again on the same port.

    Its store (`backend_uri`) and artifacts (`folder`/artifacts) outlive each process; its output is
    in `folder`/server.log.
    """

    def __init__(self, backend_uri: str, folder: Path, args: Sequence[str] = (), env: dict | None = None):
        self.backend_uri, self.folder, self.args = backend_uri, folder, tuple(args)
        self.env = {k: v for k, v in (env or os.environ).items() if not k.startswith("MLFLOW_TRACKING_")}
        self.env.update(NO_SERVER_JOBS)
        self.port = free_port()
        self.uri = f"http://127.0.0.1:{self.port}"
        self.process: subprocess.Popen | None = None
        folder.mkdir(parents=True, exist_ok=True)

    def start(self, timeout_s: float = 300) -> MlflowServer:
        command = [
            sys.executable, "-m", "mlflow", "server", "--host", "127.0.0.1", "--port", str(self.port),
            "--backend-store-uri", self.backend_uri, "--artifacts-destination", str(self.folder / "artifacts"),
            "--workers", "2", *self.args,
        ]  # fmt: skip
        with (self.folder / "server.log").open("a") as log:
            # its own process group: `mlflow server` runs uvicorn in a child, and both must go
            self.process = subprocess.Popen(
                command, cwd=self.folder, env=self.env, stdout=log, stderr=log, start_new_session=True
            )
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise AssertionError(f"mlflow server exited {self.process.returncode}:\n{self.log()[-3000:]}")
            try:
                urllib.request.urlopen(f"{self.uri}/health", timeout=2).read()
                return self
            except OSError:
                time.sleep(0.3)
        raise AssertionError(f"mlflow server did not answer in {timeout_s} s:\n{self.log()[-3000:]}")

    def log(self) -> str:
        return (self.folder / "server.log").read_text(errors="replace")

    def kill(self) -> None:
        """The server vanishes (or a test is done with it): SIGKILL to it and its workers, nothing flushed or closed."""
        if self.process is None:
            return
        with contextlib.suppress(ProcessLookupError):  # the group: uvicorn's workers too, even if the parent is gone
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(timeout=60)
        self.process = None  # its process group is gone: never signal that id again


def wait_until(ready, what: str, timeout: float = 120, process: subprocess.Popen | None = None) -> None:
    """Poll `ready()` until it is true; fail naming `what` after `timeout` s or when `process` exits first."""
    deadline = time.monotonic() + timeout
    while not ready():
        if process is not None and process.poll() is not None:
            raise AssertionError(f"{what}: the process exited with {process.returncode}")
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not ready after {timeout} s")
        time.sleep(0.5)


@contextlib.contextmanager
def mlflow_server(store: Path) -> Iterator[str]:
    """An `mlflow server` on 127.0.0.1 (a free port) with its runs and artifacts under `store`; yields its URL."""
    store.mkdir(parents=True, exist_ok=True)
    port = free_port()
    command = [
        sys.executable, "-m", "mlflow", "server", "--host", "127.0.0.1", "--port", str(port), "--workers", "1",
        "--backend-store-uri", f"sqlite:///{store / 'mlflow.db'}", "--artifacts-destination", str(store / "artifacts"),
    ]  # fmt: skip
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}, **NO_SERVER_JOBS}
    with (store / "server.log").open("w") as log:
        server = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}"

    def healthy() -> bool:
        try:
            with urllib.request.urlopen(f"{url}/health", timeout=2) as response:
                return response.status == 200
        except OSError:
            return False

    try:
        wait_until(healthy, f"mlflow server (log: {store / 'server.log'})", process=server)
        yield url
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(server.pid, signal.SIGTERM)  # the server and its workers: the session it leads
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait()


# What times the training, different on every run: left out of comparisons of two runs' outputs, nothing else.
# What says how a cell was timed rather than what it computed: the runner's slots share a device, dvc repro's not.
TIMING_KEYS = {"compile_seconds", "train_seconds", "throughput_images_per_s", "device_shared"}
TIMING_COLUMNS = {"seconds"}


def assert_same_cell_outputs(ours: Path, theirs: Path) -> None:
    """Two runs of one cell wrote the same files, byte for byte but for the fields that time the training."""
    import json

    assert sorted(p.name for p in ours.iterdir()) == sorted(p.name for p in theirs.iterdir()), ours.name
    mine, seq = (json.loads((d / "metrics.json").read_text()) for d in (ours, theirs))
    assert {k: v for k, v in mine.items() if k not in TIMING_KEYS} == {
        k: v for k, v in seq.items() if k not in TIMING_KEYS
    }, ours.name
    assert (ours / "steps.csv").read_bytes() == (theirs / "steps.csv").read_bytes(), ours.name
    assert (ours / "curves.png").read_bytes() == (theirs / "curves.png").read_bytes(), ours.name
    mine_rows, seq_rows = ((d / "history.csv").read_text().splitlines() for d in (ours, theirs))
    header = mine_rows[0].split(",")
    keep = [i for i, column in enumerate(header) if column not in TIMING_COLUMNS]
    assert header == seq_rows[0].split(",") and len(mine_rows) == len(seq_rows), ours.name
    for a, b in zip(mine_rows, seq_rows, strict=True):
        assert [a.split(",")[i] for i in keep] == [b.split(",")[i] for i in keep], ours.name


def clone_with_edits(source: Path, dest: Path) -> None:
    """`dest`: a git clone of `source` with the same working-tree edits, so both run the same code on the same commit."""
    subprocess.run(["git", "clone", "-q", str(source), str(dest)], check=True)
    edited = subprocess.run(
        ["git", "diff", "--name-only"], cwd=source, capture_output=True, text=True, check=True
    ).stdout.split()
    for name in edited:  # e.g. a shrunk study and its regenerated pipeline
        shutil.copy2(source / name, dest / name)
