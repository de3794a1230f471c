"""Helpers the tests share: import them from here, never from a conftest."""

from __future__ import annotations

import contextlib
import functools
import http.server
import os
import subprocess
import sys
import threading
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
