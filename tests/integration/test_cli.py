"""The `bnbench` console script, run as a user runs it: each subcommand is its module's own command line.

The script is the one the project installs ([project.scripts] in pyproject.toml), beside this Python.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from pipeline.cli import COMMANDS
from pipeline.study.params import load_params
from tests.helpers import REPO, dvc
from tools.repo_copy import copy_repo

BNBENCH = Path(sys.executable).parent / "bnbench"


def _env(repo: Path = REPO) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "DVC_", "BNBENCH_"))}
    return {**env, "PYTHONPATH": str(repo)}  # in a copy: the copy's package, not the checkout's


def _run(*command: str, repo: Path = REPO) -> subprocess.CompletedProcess:
    return subprocess.run(list(command), cwd=repo, env=_env(repo), capture_output=True, text=True, timeout=600)


def _options(help_text: str) -> set[str]:
    return set(re.findall(r"(?<![\w-])--[a-z][a-z-]*", help_text))


def test_the_help_lists_every_command():
    done = _run(str(BNBENCH), "--help")
    assert done.returncode == 0, done.stderr
    for name, command in COMMANDS.items():
        assert re.search(rf"^\s+{name}\s", done.stdout, re.M) and command.summary.split()[0] in done.stdout


@pytest.mark.parametrize("name", list(COMMANDS))
def test_each_command_has_the_options_of_its_module(name):
    ours = _run(str(BNBENCH), name, "--help")
    module = COMMANDS[name].module.removesuffix(".__main__")
    theirs = _run(sys.executable, "-m", module, "--help")
    assert ours.returncode == theirs.returncode == 0, ours.stderr + theirs.stderr
    assert ours.stdout.startswith(f"usage: bnbench {name} ")
    # the same options and positional arguments: the module added them to our parser
    assert _options(ours.stdout) == _options(theirs.stdout)
    usage = re.compile(r"^usage: .*?\[-h\](.*?)\n\n", re.S)  # the arguments, after the program's name
    assert " ".join(usage.search(ours.stdout)[1].split()) == " ".join(usage.search(theirs.stdout)[1].split())


def test_checking_an_overlay_lays_it_over_the_root_params():
    ours = _run(str(BNBENCH), "check", "studies/quick/params.yaml")
    theirs = _run(sys.executable, "-m", "pipeline.study.params", "studies/quick/params.yaml")
    assert ours.returncode == theirs.returncode == 0, ours.stderr + theirs.stderr
    assert ours.stdout == theirs.stdout
    assert ours.stdout.startswith("params.yaml + studies/quick/params.yaml: valid, study bnbench-quick, 16 training")


def test_a_new_study_is_written_generated_and_ready_to_run(tmp_path):
    repo = tmp_path / "repo"
    copy_repo(repo)
    done = _run(str(BNBENCH), "new-study", "demo", repo=repo)
    assert done.returncode == 0, done.stderr
    assert "uv run dvc repro studies/demo/dvc.yaml" in done.stdout
    overlay = (repo / "studies" / "demo" / "params.yaml").read_text()
    assert "study:\n  name: bnbench-demo " in overlay
    # its pipeline is the one the generator would write, and every study is still current
    current = _run(str(BNBENCH), "generate", "--check", repo=repo)
    assert current.returncode == 0 and "all current" in current.stdout, current.stderr
    checked = _run(str(BNBENCH), "check", "studies/demo/params.yaml", repo=repo)
    assert checked.returncode == 0 and "valid, study bnbench-demo," in checked.stdout, checked.stderr
    # DVC reads it: a train stage per cell of the main study's matrix, its data from the shared fetch
    env = {**_env(repo), "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    stages = dvc(repo, env, "stage", "list", "studies/demo/dvc.yaml", "--name-only").stdout.split()
    assert {"studies/demo/dvc.yaml:train@cifar10-sigmoid-off-0.0-0", "studies/demo/dvc.yaml:report"} <= set(stages)
    # uncommenting the templated prepare and train keys as they stand changes no setting: they are the main study's
    lines, block = [], None
    for line in overlay.splitlines():
        if line.startswith("# ") and line[2:].split(":")[0] in ("prepare", "train", "matrix", "sweep"):
            block = line[2:].split(":")[0]
        elif not line.startswith("#   "):
            block = None
        lines.append(line[2:] if block in ("prepare", "train") else line)
    (repo / "studies" / "demo" / "params.yaml").write_text("\n".join(lines) + "\n")
    assert "\ntrain:\n  architecture: " in (repo / "studies" / "demo" / "params.yaml").read_text()
    base, demo = load_params(repo / "params.yaml"), load_params(repo / "params.yaml", repo / "studies/demo/params.yaml")
    assert demo.model_dump(exclude={"study"}) == base.model_dump(exclude={"study"})
