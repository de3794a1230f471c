"""One `dvc repro` of a shrunk quick study in a copy of the repository, shared by the e2e tests."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from ruamel.yaml import YAML

from tests.conftest import REPO, serve_directory
from tests.fake_data import write_mirror


def copy_repo(dest: Path) -> None:
    files = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z"],
        cwd=REPO, capture_output=True, text=True, check=True,
    ).stdout.split("\0")  # fmt: skip
    # A fresh clone: lock files from a local run would not be there.
    for name in (f for f in files if f and Path(f).name != "dvc.lock"):
        if (REPO / name).is_file():
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO / name, dest / name)
    for command in (
        ["git", "init", "-q"],
        ["git", "add", "-A"],
        ["git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "copy"],
    ):
        subprocess.run(command, cwd=dest, check=True)


def _shrink(params_path: Path) -> None:
    """The quick study's own settings, made smaller still: 8 cells of one short epoch."""
    yaml = YAML(typ="rt")
    params = yaml.load(params_path)
    params["prepare"].update(max_train_examples=400, max_test_examples=200)
    params["matrix"].update(activation=["sigmoid"], bn=["off", "post"], seed=[0, 1])
    params["train"].update(epochs=1, evals_per_epoch=2)
    yaml.dump(params, params_path)


def dvc(repo: Path, env: dict, *args: str) -> subprocess.CompletedProcess:
    done = subprocess.run([sys.executable, "-m", "dvc", *args], cwd=repo, env=env, capture_output=True, text=True)
    assert done.returncode == 0, f"dvc {' '.join(args)} failed:\n{done.stdout[-4000:]}\n{done.stderr[-4000:]}"
    return done


@pytest.fixture(scope="session")
def study(tmp_path_factory):
    """Run the study once; the tests below look at what it left."""
    root = tmp_path_factory.mktemp("e2e")
    repo = root / "repo"
    copy_repo(repo)
    _shrink(repo / "quick" / "params.yaml")
    checksums = write_mirror(root / "mirror", cifar_per_batch=100, cifar_test=200, fmnist_train=500, fmnist_test=200)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "DVC_", "BNBENCH_"))}
    with serve_directory(root / "mirror") as mirror_url:
        env.update(
            BNBENCH_DATA_MIRROR=mirror_url,
            BNBENCH_DATA_CHECKSUMS=str(checksums),
            BNBENCH_CACHE_DIR=str(root / "download-cache"),
            PYTHONPATH=str(repo),  # the copy's package, not the one installed from the original checkout
            PATH=f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}",
        )
        first = dvc(repo, env, "repro", "quick/dvc.yaml")
        yield repo, env, first
