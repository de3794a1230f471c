"""DVC's own views of the answers, with the real `dvc` in a copy of the repository as a fresh clone has it.

No cell trains here: a study's report is written from fabricated cells with planted effects
(tests/fabricated_cells.py) to the paths the generated pipeline gives it, and then `dvc metrics
show`, `dvc metrics diff` and `dvc plots show` are run as a user runs them. The same views of a
real quick-study run are checked in tests/e2e/test_quick_study.py.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys

import pytest

from pipeline.report.build import write_report
from tests.fabricated_cells import study_params, write_cell
from tests.helpers import dvc, open_offline
from tools.repo_copy import copy_repo

WARNINGS = re.compile(r"failed to load|warning|error", re.I)
SEEDS = [0, 1, 2, 3, 4]
JITTER = [0, 8, -8, 4, -4]


@pytest.fixture(scope="module")
def fresh(tmp_path_factory):
    """A copy of the repository as a clone has it: no study has run."""
    repo = tmp_path_factory.mktemp("dvc-views") / "repo"
    copy_repo(repo)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "DVC_", "BNBENCH_"))}
    env["PATH"] = f"{os.path.dirname(sys.executable)}{os.pathsep}{env.get('PATH', '')}"
    return repo, env


def _views_say(repo, env, *args) -> str:
    done = dvc(repo, env, *args)
    return done.stdout + done.stderr


def _report_from_planted_cells(tmp_path, repo, seeds: list[int]) -> None:
    """The quick study's report stage, as its dvc.yaml runs it, over cells where BN post is three times faster."""
    params = study_params(tmp_path, activation=["sigmoid"], bn=["off", "post"], seed=seeds)
    cells = tmp_path / "cells"
    for s in seeds:
        slow = tuple(t + JITTER[s] for t in (60, 75, 90))
        fast = tuple(t + JITTER[s] // 4 for t in (20, 25, 30))
        for bn, steps in (("off", slow), ("post", fast)):
            write_cell(
                cells, activation="sigmoid", bn=bn, seed=s, crossings=dict(zip((0.5, 0.6, 0.7), steps, strict=True))
            )
    write_report(
        params,
        cells,
        tmp_path / "reports",
        metrics_path=repo / "metrics/quick.json",
        curves_prefix=repo / "curves/quick",
    )


def test_a_fresh_clone_shows_no_study_and_no_warning(fresh):
    repo, env = fresh
    for view in (("metrics", "show"), ("metrics", "diff"), ("plots", "show", "--out", str(repo.parent / "plots"))):
        said = _views_say(repo, env, *view)
        assert not WARNINGS.search(said), (view, said)
    # no study has run: no file, so no row (not an empty row per study, nor a failure)
    assert json.loads(dvc(repo, env, "metrics", "show", "--json").stdout) == {"": {"data": {}}}


def test_metrics_show_and_diff_say_what_the_study_concluded_and_what_moved(fresh, tmp_path):
    repo, env = fresh
    _report_from_planted_cells(tmp_path / "five", repo, SEEDS)
    shown = _views_say(repo, env, "metrics", "show")
    assert not WARNINGS.search(shown), shown
    [(_, by_file)] = json.loads(dvc(repo, env, "metrics", "show", "--json").stdout).items()
    answer = by_file["data"]["metrics/quick.json"]["data"]["bn-post-steps"]["cifar10"]
    assert answer["verdict"] == "supported" and answer["n"] == 5
    assert 2.5 < answer["ci_low"] <= answer["effect"] <= answer["ci_high"] < 3.5
    # the table a user reads: one row for the one study that ran, keys built from the claims' ids
    assert "metrics/quick.json" in shown and "bn-post-steps.cifar10.verdict" in shown and "supported" in shown
    commit = ["git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "quick study"]
    subprocess.run(["git", "add", "metrics", "curves"], cwd=repo, check=True)
    subprocess.run(commit, cwd=repo, check=True)
    # two seeds are too few for a verdict: the answer moves, and the diff says so, word and number
    _report_from_planted_cells(tmp_path / "two", repo, SEEDS[:2])
    diff = _views_say(repo, env, "metrics", "diff")
    row = next(line for line in diff.splitlines() if "bn-post-steps.cifar10.verdict" in line)
    assert row.split()[-3:] == ["supported", "inconclusive", "-"], diff
    assert re.search(r"bn-post-steps\.cifar10\.n\s+5\s+2\s+-3", diff), diff


def test_plots_show_overlays_configurations_offline(fresh, tmp_path):
    repo, env = fresh
    _report_from_planted_cells(tmp_path, repo, SEEDS)
    out = tmp_path / "plots"
    said = _views_say(repo, env, "plots", "show", "--out", str(out))
    assert not WARNINGS.search(said), said
    html = (out / "index.html").read_text()
    # nothing loaded from elsewhere: the Vega libraries are inlined by the repository's template
    assert not re.search(r"<(script|link|img)[^>]+(src|href)\s*=\s*[\"']?https?:", html)
    body, errors, requests = open_offline(out / "index.html", "svg, canvas")
    assert errors == [] and requests == []
    # one chart for the one study and dataset, its lines told apart by configuration in the legend
    assert body.count('class="marks"') == 1
    assert "bn=off" in body and "bn=post" in body
