"""The cells depend on the code that decides their outputs and on nothing else, as `dvc status` sees it.

On a copy of the finished quick study: a fix to tracking and to the runner leaves every cell up to
date once the stage train-code has run again (any edit under pipeline/ runs it); a change to the model
builder makes every cell stale.
"""

from __future__ import annotations

import json
import shutil

import pytest

from tests.e2e.test_quick_study import CELLS
from tests.helpers import QUICK_STUDY, dvc

pytestmark = pytest.mark.e2e


def _stale(repo, env) -> set[str]:
    status = json.loads(dvc(repo, env, "status", "--json", f"{QUICK_STUDY}/dvc.yaml").stdout or "{}")
    return {name.split(":", 1)[1] for name in status}


def _touch(path) -> None:
    path.write_text(path.read_text() + "\n# an edit\n")


def test_tracking_and_runner_fixes_leave_every_cell_up_to_date_and_a_model_change_does_not(study, tmp_path):
    finished, env, _ = study
    repo = tmp_path / "repo"
    shutil.copytree(finished, repo, symlinks=True)
    env = {**env, "PYTHONPATH": str(repo)}
    assert _stale(repo, env) == set()

    for module in ("tracking/spool.py", "tracking/runs.py", "runner/record.py", "runner/worker.py", "train.py"):
        _touch(repo / "pipeline" / module)
    assert "train-code" in _stale(repo, env)  # it depends on the folder pipeline/: any edit runs it again
    dvc(repo, env, "repro", f"{QUICK_STUDY}/dvc.yaml:train-code")  # as `dvc repro` runs it first
    assert not {f"train@{cell}" for cell in CELLS} & _stale(repo, env)  # the same digest

    _touch(repo / "pipeline" / "cell" / "models.py")
    dvc(repo, env, "repro", f"{QUICK_STUDY}/dvc.yaml:train-code")
    assert {f"train@{cell}" for cell in CELLS} <= _stale(repo, env)
