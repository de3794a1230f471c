"""Helpers the tests share: import them from here, never from a conftest."""

from __future__ import annotations

import contextlib
import functools
import http.server
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

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


def require_extra(module: str, extra: str) -> None:
    """Skip the test when an optional dependency is missing; in CI, which installs every extra, fail instead."""
    import importlib.util

    import pytest

    if importlib.util.find_spec(module) is None:
        reason = f"{module} is not installed (the {extra} extra: uv sync --extra {extra})"
        if os.environ.get("CI"):
            pytest.fail(f"CI must run this test: {reason}")
        pytest.skip(reason)


def free_port() -> int:
    """A TCP port nothing listens on at 127.0.0.1 right now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


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
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}
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
TIMING_KEYS = {"compile_seconds", "train_seconds", "throughput_images_per_s"}
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
