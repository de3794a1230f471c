"""The target check of `bnbench repro`: DVC's own collection decides what a target selects."""

from __future__ import annotations

import subprocess
import sys

import pytest

from pipeline.errors import UserError
from pipeline.repro import check_targets, refusal, study_prefixes

PLACES = [  # addressing, whether it runs in a study's folder
    ("fetch@cifar10", False),
    ("stage-code", False),
    ("report", False),
    ("train-code", False),
    ("train@cifar10-relu-off-0.0-0", False),
    ("article001-report", True),
    ("article001-train@cifar10-relu-off-0.0-0", True),
    ("studies/quick/dvc.yaml:report", False),
    ("studies/quick/dvc.yaml:train-code", False),
]
ADDRESSINGS = [address for address, _ in PLACES]

DVC_YAML = """\
stages:
  prepare:
    foreach: [cifar10, fashion_mnist]
    do:
      cmd: echo ${item}
  stage-code:
    cmd: echo code
  report:
    cmd: echo report
  article001-report:
    wdir: studies/article001
    cmd: echo article001
"""


def test_the_study_prefixes_are_the_root_studies_and_the_other_dvc_files():
    assert study_prefixes(PLACES) == ["article001-", "studies/quick/dvc.yaml:"]  # not stage- nor train-


def test_a_refusal_is_one_line_naming_the_nearest_stages_and_the_prefixes():
    line = refusal("artcle001-rep*", True, ADDRESSINGS, study_prefixes(PLACES))
    assert "\n" not in line
    assert line.startswith("--glob 'artcle001-rep*' matches no stage, and nothing ran")
    assert "nearest: article001-report" in line and "start with article001-, studies/quick/dvc.yaml:" in line


@pytest.fixture
def tiny_repo(tmp_path, monkeypatch):
    subprocess.run([sys.executable, "-m", "dvc", "init", "--no-scm", "-q"], cwd=tmp_path, check=True)
    (tmp_path / "dvc.yaml").write_text(DVC_YAML)
    (tmp_path / "studies" / "article001").mkdir(parents=True)
    monkeypatch.chdir(tmp_path)  # DVC reads targets from the working directory, as under `dvc repro`


@pytest.mark.parametrize(
    ("targets", "glob"),
    [(["prepare@*"], True), (["*report"], True), (["report", "prepare@cifar10"], False), (["dvc.yaml"], False)],
)
def test_targets_that_select_stages_pass(tiny_repo, targets, glob):
    check_targets(targets, glob, recursive=False)


@pytest.mark.parametrize(
    ("targets", "glob", "start"),
    [
        (["nomatch*"], True, "--glob 'nomatch*' matches no stage"),
        (["prepare@*", "reprot*"], True, "--glob 'reprot*' matches no stage"),  # each pattern must match
        (["reprot"], False, "'reprot' names no stage"),
        (["prepare@*"], False, "'prepare@*' names no stage"),  # a pattern without --glob is a name
    ],
)
def test_a_target_that_selects_nothing_is_refused(tiny_repo, targets, glob, start):
    with pytest.raises(UserError) as refused:
        check_targets(targets, glob, recursive=False)
    assert str(refused.value).startswith(start)
    assert "the studies' stages start with article001-." in str(refused.value)  # its wdir, as DVC reads it
