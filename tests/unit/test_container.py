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

from tests.helpers import REPO

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


def test_compose_runs_both_services_from_the_one_image_and_mlflow_on_loopback_only():
    compose = YAML(typ="safe", pure=True).load((REPO / "compose.yaml").read_text())
    services = compose["services"]
    mlflow = services["mlflow"]
    assert mlflow["ports"] == ["127.0.0.1:${MLFLOW_PORT:-5000}:5000"]
    assert "healthcheck" in mlflow and "user" not in mlflow  # the image's own non-root user
    assert {s["image"] for s in services.values()} == {"bnbench:${BNBENCH_VARIANT:-gpu}"}
    for name in ("pipeline", "pipeline-cpu"):
        service = services[name]
        assert service["environment"]["MLFLOW_TRACKING_URI"] == "http://mlflow:5000"
        assert service["depends_on"] == {"mlflow": {"condition": "service_healthy"}}
        assert service["user"] == "${BNBENCH_UID:-1000}:${BNBENCH_GID:-1000}"
        assert [v["target"] for v in service["volumes"]] == [
            "/work",
            "/home/bnbench/.cache/bnbench",
            "/work/.dvc/cache",
        ]
    assert services["pipeline-cpu"]["profiles"] == ["cpu"] and "deploy" not in services["pipeline-cpu"]
    assert services["pipeline"]["deploy"]["resources"]["reservations"]["devices"][0]["driver"] == "nvidia"
    # the GPU service's default is the fastest measured route: the runner's warm workers on JAX
    assert services["pipeline"]["command"] == ["python", "-m", "pipeline.runner", "--slots", "8"]
    assert services["pipeline"]["environment"]["KERAS_BACKEND"] == "${KERAS_BACKEND:-jax}"


def _instructions(dockerfile: str) -> list[tuple[str, str]]:
    """The Dockerfile's instructions as (KEYWORD, arguments), continuation lines joined, comments left out."""
    instructions, pending = [], ""
    for line in dockerfile.splitlines():
        if line.lstrip().startswith("#") or not (pending or line.strip()):
            continue
        pending += " " + line.strip().removesuffix("\\")
        if not line.rstrip().endswith("\\"):
            keyword, _, arguments = pending.strip().partition(" ")
            instructions.append((keyword.upper(), arguments.strip()))
            pending = ""
    return instructions


def test_the_image_runs_as_a_user_that_is_not_root():
    instructions = _instructions((REPO / "Dockerfile").read_text())
    last_from = max(i for i, (keyword, _) in enumerate(instructions) if keyword == "FROM")
    # Who runs the container: the last USER of the final stage (none: root, the base image's default).
    users = [arguments for keyword, arguments in instructions[last_from:] if keyword == "USER"]
    assert users, "the final stage sets no USER: the container would run as root"
    user, _, group = users[-1].partition(":")
    assert user not in ("root", "0") and group not in ("root", "0"), users[-1]
