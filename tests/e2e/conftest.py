"""One `dvc repro` of a shrunk quick study in a copy of the repository, shared by the e2e tests."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from tests.helpers import QUICK_STUDY, dvc, serve_directory, shrink_quick_study
from tools.fake_data import write_mirror
from tools.repo_copy import copy_repo


@pytest.fixture(scope="session")
def study(tmp_path_factory):
    """Run the study once; the tests below look at what it left."""
    root = tmp_path_factory.mktemp("e2e")
    repo = root / "repo"
    copy_repo(repo)
    shrink_quick_study(repo)
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
        first = dvc(repo, env, "repro", f"{QUICK_STUDY}/dvc.yaml")
        yield repo, env, first
