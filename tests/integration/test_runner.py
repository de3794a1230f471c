"""The runner (pipeline/runner/) on one cell in tmp_path: a cell that trained but could not be recorded in DVC.

The repository is the smallest one the runner takes: DVC, the main params with an overlay of one cell, the tiny
prepared dataset, and a dvc.yaml written here. The cell's stage declares an output its command never writes, so
DVC cannot commit it, as it could not record a stage whose outputs are missing after `dvc repro`: the cell trains,
and its `dvc commit` fails for real.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

from ruamel.yaml import YAML

from pipeline.runner.record import LOG_DIR, log_path
from tests.helpers import REPO, dvc, write_tiny_prepared

CELL = "fashion_mnist-sigmoid-off-0.0-0"
OVERLAY = {
    "study": {"name": "runner-record"},
    "matrix": {"dataset": ["fashion_mnist"], "activation": ["sigmoid"], "bn": ["off"], "dropout": [0.0], "seed": [0]},
    "train": {"architecture": "mlp", "epochs": 1, "evals_per_epoch": 1, "gradient_probe": 32, "bn_probe": 0},
    "sweep": None,
}
PIPELINE = {
    "stages": {
        "train": {
            "foreach": [CELL],
            "do": {
                "cmd": "python -m pipeline.train --params params.yaml --params study.yaml --cell ${item} "
                "--data data/prepared --out results/cells/${item}",
                "deps": ["data/prepared"],
                # the second output is never written: the stage cannot be committed, though its cell trained
                "outs": ["results/cells/${item}", "results/unwritten/${item}"],
            },
        },
        "report": {  # downstream of the cell
            "cmd": "python -c \"import pathlib; pathlib.Path('report.txt').write_text('ran')\"",
            "deps": ["results/cells"],
            "outs": ["report.txt"],
        },
    }
}


def test_a_cell_that_trained_but_could_not_be_recorded_counts_as_failed(tmp_path):
    root = tmp_path / "repo"
    root.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "DVC_"))}
    env["PYTHONPATH"] = str(REPO)
    dvc(root, env, "init", "--no-scm")
    shutil.copy(REPO / "params.yaml", root / "params.yaml")
    yaml = YAML()
    yaml.dump(OVERLAY, root / "study.yaml")
    yaml.dump(PIPELINE, root / "dvc.yaml")
    write_tiny_prepared(root / "data")  # data/prepared, the cell's data

    command = [sys.executable, "-m", "pipeline.runner", "dvc.yaml", "--slots", "1"]
    done = subprocess.run(command, cwd=root, env=env, capture_output=True, text=True, timeout=900)
    stage = f"train@{CELL}"
    # it trained: its outputs are all there
    assert (root / "results" / "cells" / CELL / "metrics.json").is_file(), done.stdout + done.stderr
    # and it is reported failed, with DVC's refusal in its log, and the exit code is 1
    assert done.returncode == 1, done.stdout + done.stderr
    assert "1 cell(s) failed" in done.stderr and str(log_path(root, stage)) in done.stderr
    assert "runner: dvc commit failed" in log_path(root, stage).read_text()
    assert json.loads((root / LOG_DIR.parent / "runner-summary.json").read_text())["failed"] == [stage]
    # nothing downstream ran: the runner did not go on to `dvc repro` the stages left; and DVC recorded nothing
    assert "dvc repro for the stages left" not in done.stdout and not (root / "report.txt").exists()
    assert not (root / "dvc.lock").exists()
