"""`dvc exp run -S key=value` makes stale only the cells that key decides, checked with the real `dvc status`.

No cell trains: in a copy of the repository, one cell of the main study, of a claim study run with
it (article001) and of the quick study get stand-in outputs, recorded with `dvc commit` as a finished
run would leave them. Each override is then written into the params file as `-S` writes it, and
`dvc status` says which of the three cells would train again.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys

import pytest
from ruamel.yaml import YAML

from pipeline.study.axes import set_dotted
from pipeline.study.code import STAGE_ENTRIES
from tests.helpers import dvc, regenerate_pipeline
from tools.repo_copy import copy_repo

CELLS = {  # a cell of each kind of study: the stage, its folder, its dataset
    "main": ("dvc.yaml:train@cifar10-sigmoid-off-0.0-0", ".", "cifar10"),
    "article001": ("dvc.yaml:article001-train@cifar10-relu-off-0.0-0", "studies/article001", "cifar10"),
    "quick": ("studies/quick/dvc.yaml:train@cifar10-sigmoid-off-0.0-0", "studies/quick", "cifar10"),
}


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    """A copy of the repository where one cell of each study has run (stand-in outputs, committed by DVC)."""
    repo = tmp_path_factory.mktemp("overrides") / "repo"
    copy_repo(repo)
    regenerate_pipeline(repo)  # the dvc.yaml files as the generator writes them now
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "DVC_", "BNBENCH_"))}
    env["PATH"] = f"{os.path.dirname(sys.executable)}{os.pathsep}{env.get('PATH', '')}"
    for stage, folder, dataset in CELLS.values():
        study = repo / folder
        for path in (f"data/prepared/{dataset}/x", "results/code/train.json", f"results/cells/{stage.split('@')[1]}/x"):
            (study / path).parent.mkdir(parents=True, exist_ok=True)
            (study / path).write_text(path)
    # written, not recorded: `dvc repro --dry` reads what the stages upstream of a cell would write
    (repo / "data/raw/cifar10").mkdir(parents=True)  # the download
    (repo / "data/raw/cifar10/x").write_text("x")
    (repo / "results/preflight.json").write_text("{}")  # the check of every study before anything runs
    for kind in STAGE_ENTRIES:  # the code digests of every kind of stage but the cells
        (repo / f"results/code/{kind}.json").write_text("{}")
    dvc(repo, env, "commit", "--force", *(stage for stage, _, _ in CELLS.values()))
    subprocess.run(["git", "add", "-A"], cwd=repo, check=True)
    subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "run"], cwd=repo, check=True)
    return repo, env


def _stale_after(repo, env, file: str, key: str, value) -> set[str]:
    """Which of the cells `dvc status` calls changed once `key` is set in `file`, as `-S file:key=value` sets it."""
    yaml = YAML(typ="rt")
    path = repo / file
    params = yaml.load(path)
    set_dotted(params, key, value)
    yaml.dump(params, path)
    try:
        status = json.loads(dvc(repo, env, "status", "--json", *(s for s, _, _ in CELLS.values())).stdout)
    finally:
        subprocess.run(["git", "checkout", "--", file], cwd=repo, check=True)
    # dvc status names the root dvc.yaml's stages bare, another file's with its path
    return {study for study, (stage, _, _) in CELLS.items() if stage.removeprefix("dvc.yaml:") in status}


def test_a_finished_run_is_up_to_date(finished):
    repo, env = finished
    assert json.loads(dvc(repo, env, "status", "--json", *(s for s, _, _ in CELLS.values())).stdout) == {}


@pytest.mark.parametrize(
    ("file", "key", "value", "stale"),
    [
        # the README's own example: both other studies set their own epochs
        ("params.yaml", "train.epochs", 20, {"main"}),
        # a root key no study overrides decides every study's cells
        ("params.yaml", "train.bn_epsilon", 0.01, {"main", "article001", "quick"}),
        # article 001 sets its own batch size: the root's is the main and the quick study's only
        ("params.yaml", "train.batch_size", 64, {"main", "quick"}),
        # a study's own key: that study alone
        ("studies/quick/params.yaml", "train.epochs", 3, {"quick"}),
        ("studies/article001/params.yaml", "train.epochs", 46, {"article001"}),
    ],
)
def test_an_override_makes_stale_only_the_cells_it_decides(finished, file, key, value, stale):
    repo, env = finished
    assert _stale_after(repo, env, file, key, value) == stale


def test_a_claim_study_s_report_target_runs_that_study_and_its_upstream_only(finished):
    repo, env = finished
    dry = dvc(repo, env, "repro", "--dry", "article001-report").stdout
    ran = re.findall(r"Running stage '([^']+)'", dry)
    # the check of every study, the code digests and its data's download (all shared), and its own stages: never
    # another study's cell
    assert "article001-report" in ran and "fetch@cifar10" in ran
    assert {s for s in ran if not s.startswith("article001-")} == {"preflight", "stage-code", "fetch@cifar10"}, ran
    assert "article001-train@cifar10-relu-off-0.0-0" not in ran  # its finished cell stays done
