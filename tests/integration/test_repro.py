"""`bnbench repro` in a copy of the repository: a glob that matches no stage is refused before DVC runs
anything; one that matches goes to `dvc repro` as given.

Nothing trains or downloads: the refusal stops before DVC, and the matching case is a dry run.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tools.repo_copy import copy_repo

BNBENCH = Path(sys.executable).parent / "bnbench"


@pytest.fixture(scope="module")
def repo(tmp_path_factory) -> tuple[Path, dict]:
    root = tmp_path_factory.mktemp("repro") / "repo"
    copy_repo(root)
    (root / "results" / "code").mkdir(parents=True)
    for name in ("preflight.json", "code/fetch.json"):  # what fetch reads: its dry run needs them there
        (root / "results" / name).write_text("{}")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "DVC_", "BNBENCH_"))}
    env["PYTHONPATH"] = str(root)  # the copy's package
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env["BNBENCH_DATA_MIRROR"] = str(root.parent / "no-mirror")  # were fetch to run, it would fail on this
    return root, env


def _repro(repo: Path, env: dict, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([str(BNBENCH), "repro", *args], cwd=repo, env=env, capture_output=True, text=True,
                          timeout=300)  # fmt: skip


def test_a_glob_that_matches_nothing_is_refused_and_nothing_runs(repo):
    root, env = repo
    done = _repro(root, env, "--glob", "nomatch*")
    assert done.returncode == 1, done.stdout + done.stderr
    lines = done.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("bnbench: --glob 'nomatch*' matches no stage"), done.stderr
    assert "article001-" in lines[0]  # where a study's stages are
    assert "Running stage" not in done.stdout
    assert not (root / "data").exists() and not (root / "dvc.lock").exists()  # no fetch, nothing recorded


def test_a_matching_glob_goes_to_dvc_repro_as_given(repo):
    root, env = repo
    done = _repro(root, env, "--dry", "--single-item", "--glob", "fetch@*")
    assert done.returncode == 0, done.stdout + done.stderr
    assert re.findall(r"Running stage '([^']+)'", done.stdout) == ["fetch@cifar10", "fetch@fashion_mnist"]
    assert not (root / "data").exists() and not (root / "dvc.lock").exists()  # a dry run
