"""The container files, checked without a Docker engine: lint, the lock resolves both variants, compose's shape.

tests/container builds and runs them for real.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from ruamel.yaml import YAML

from tests.conftest import REPO

BIN = Path(sys.executable).parent


def test_dockerfile_passes_hadolint():
    done = subprocess.run([str(BIN / "hadolint"), "Dockerfile"], cwd=REPO, capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr


@pytest.mark.parametrize(("variant", "extra"), [("gpu", ["--extra", "gpu"]), ("cpu", [])])
def test_both_image_variants_install_from_the_lock_file(variant, extra):
    dockerfile = (REPO / "Dockerfile").read_text()
    assert "uv sync --frozen --no-dev --no-install-project" in dockerfile
    assert f"{variant}) set -- {' '.join(extra)}".rstrip() + " ;;" in dockerfile
    assert "\nUSER 1000:1000\n" in dockerfile and "USER root" not in dockerfile
    uv = shutil.which("uv")
    assert uv, "uv runs the tests, so it is on PATH"
    env = {**os.environ, "UV_PROJECT_ENVIRONMENT": "/nonexistent/venv"}
    done = subprocess.run(
        [uv, "sync", "--frozen", "--no-dev", "--no-install-project", *extra, "--dry-run"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr
    assert "tensorflow==2.21" in done.stderr and "mlflow==" in done.stderr and "pytest==" not in done.stderr
    assert ("nvidia-cudnn-cu12" in done.stderr) == (variant == "gpu")


def test_compose_publishes_mlflow_on_loopback_only():
    compose = YAML(typ="safe", pure=True).load((REPO / "compose.yaml").read_text())
    assert compose["services"]["mlflow"]["ports"] == ["127.0.0.1:5000:5000"]
    assert compose["services"]["pipeline"]["environment"]["MLFLOW_TRACKING_URI"] == "http://mlflow:5000"
