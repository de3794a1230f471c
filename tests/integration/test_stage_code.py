"""Each stage goes stale on its own code's changes, through one digest file, as `dvc status` sees it.

In a copy of the repository, the digest stages run for real (preflight, stage-code, the quick study's
train-code) and three of the quick study's stages, a prepare, a cell and the report, get stand-in
outputs recorded with `dvc commit`, as a finished run would leave them. A module is then edited, the
digest stages run again (a `dvc repro` would run them first), and `dvc status` says which of the
three would run again.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from tests.helpers import QUICK_STUDY, dvc
from tools.repo_copy import copy_repo

STAGES = {  # the quick study's stage of each kind, and a stand-in output it records
    "prepare": ("prepare@cifar10", "data/prepared/cifar10/x"),
    "cell": ("train@cifar10-sigmoid-off-0.0-0", "results/cells/cifar10-sigmoid-off-0.0-0/x"),
    "report": ("report", "results/cells/cifar10-sigmoid-off-0.0-0/x"),
}
REPORT_OUTS = ["reports/index.html", "reports/results.csv", "reports/findings.json"]
VIEWS = ["metrics/quick.json", "curves/quick_cifar10.csv", "curves/quick_fashion_mnist.csv"]
DIGESTS = ["stage-code", f"{QUICK_STUDY}/dvc.yaml:train-code"]


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    repo = tmp_path_factory.mktemp("stage-code") / "repo"
    copy_repo(repo)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "DVC_", "BNBENCH_"))}
    env["PYTHONPATH"] = str(repo)  # the stages run the copy's modules
    env.pop("PYTHONDONTWRITEBYTECODE", None)  # and write their bytecode beside them, as on a user's machine
    env["PATH"] = f"{os.path.dirname(sys.executable)}{os.pathsep}{env.get('PATH', '')}"
    dvc(repo, env, "repro", *DIGESTS)
    study = repo / QUICK_STUDY
    for path in [*(out for _, out in STAGES.values()), *REPORT_OUTS]:
        (study / path).parent.mkdir(parents=True, exist_ok=True)
        (study / path).write_text(path)
    for path in ["data/raw/cifar10/x", *VIEWS]:  # the download, and the report's views at the root
        (repo / path).parent.mkdir(parents=True, exist_ok=True)
        (repo / path).write_text(path)
    dvc(repo, env, "commit", "--force", *(f"{QUICK_STUDY}/dvc.yaml:{stage}" for stage, _ in STAGES.values()))
    return repo, env


def _stale(repo, env) -> set[str]:
    """The kinds of STAGES that `dvc status` lists, and "digests" if it lists a digest stage."""
    watched = [f"{QUICK_STUDY}/dvc.yaml:{stage}" for stage, _ in STAGES.values()]
    status = json.loads(dvc(repo, env, "status", "--json", *DIGESTS, *watched).stdout)
    return {kind for kind, (stage, _) in STAGES.items() if f"{QUICK_STUDY}/dvc.yaml:{stage}" in status} | (
        {"digests"} if set(status) - set(watched) else set()
    )


def test_after_a_run_nothing_is_stale_though_python_wrote_its_bytecode(finished):
    repo, env = finished
    assert list((repo / "pipeline").rglob("__pycache__"))  # the digest stages ran the copy's modules
    assert _stale(repo, env) == set()


@pytest.mark.parametrize(
    ("module", "stale"),
    [
        ("report/figures.py", {"report"}),
        ("data/preparation.py", {"prepare"}),
        ("cell/models.py", {"cell"}),
        ("runner/record.py", set()),  # the runner decides no stage's output
    ],
)
def test_an_edit_makes_stale_only_the_stages_whose_code_it_is(finished, module, stale):
    repo, env = finished
    path = repo / "pipeline" / module
    path.write_text(path.read_text() + "\n# an edit\n")
    try:
        assert "digests" in _stale(repo, env)  # DVC sees the edit through the folder
        dvc(repo, env, "repro", *DIGESTS)  # as `dvc repro` runs them first
        assert _stale(repo, env) == stale
    finally:  # the next case's digests are made from the code as committed, but for its own edit
        subprocess.run(["git", "checkout", "--", f"pipeline/{module}"], cwd=repo, check=True)
