"""The same cell with the same seed gives the same measurements in two separate Python processes (CPU), on each backend."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from tests.helpers import REPO, require_extra, write_tiny_prepared

TIMING = {"seconds", "compile_seconds", "train_seconds", "throughput_images_per_s"}

# Trains one BN cell with dropout (every random source: init, data order, dropout masks, probes) and prints
# everything it measured except time.
SCRIPT = """
import json, sys
from pathlib import Path
from pipeline.data.prepared import load_prepared
from pipeline.study.schema import CellSettings
from pipeline.cell.training import train_cell

settings = CellSettings.model_validate({
    "dataset": "fashion_mnist", "activation": "relu", "bn": "post", "dropout": 0.5, "seed": 3,
    "train": {"architecture": "mlp", "optimizer": {"name": "rmsprop", "learning_rate": 0.001}, "epochs": 2,
              "batch_size": 32, "evals_per_epoch": 2, "bn_momentum": 0.99, "bn_epsilon": 0.001,
              "gradient_probe": 64, "bn_probe": 64},
})
result = train_cell(settings, load_prepared(Path(sys.argv[1])))
timing = set(json.loads(sys.argv[2]))
out = {
    "history": result.history.drop(columns=[c for c in result.history if c in timing]).to_dict(orient="list"),
    "steps": result.steps.to_dict(orient="list"),
    "summary": {k: v for k, v in result.summary.items() if k not in timing},
}
print("RESULT" + json.dumps(out, allow_nan=True))
"""


def _run(prepared, backend: str) -> dict:
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": "-1", "TF_CPP_MIN_LOG_LEVEL": "3", "KERAS_BACKEND": backend}
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(prepared), json.dumps(sorted(TIMING))],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    (line,) = [line for line in done.stdout.splitlines() if line.startswith("RESULT")]
    return json.loads(line.removeprefix("RESULT"))


@pytest.mark.parametrize("backend", ["tensorflow", "jax"])
def test_same_seed_same_measurements_in_two_processes(tmp_path, backend):
    if backend == "jax":
        require_extra("jax", "jax")
    prepared = write_tiny_prepared(tmp_path)
    first, second = _run(prepared, backend), _run(prepared, backend)
    assert first["summary"]["backend"] == backend
    assert len(first["steps"]["step"]) == 20 and "grad_norm/dense1" in first["history"]
    assert "val_accuracy_recomputed_bn" in first["history"]
    # json turns NaN into NaN on both sides; compare the text so that NaN equals NaN
    for part in ("history", "steps", "summary"):
        assert json.dumps(first[part], sort_keys=True) == json.dumps(second[part], sort_keys=True), part
