from __future__ import annotations

import os
import subprocess
import sys

import pytest

from pipeline.cell.device import SHARED_ENV, check_device, device_shared, visible_gpus
from pipeline.errors import UserError


def test_required_gpu_that_is_missing_names_the_fix(monkeypatch):
    if visible_gpus():
        pytest.skip("this machine has a GPU")
    monkeypatch.setenv("BNBENCH_DEVICE", "gpu")
    with pytest.raises(UserError, match=r"sees no GPU.*--gpus all"):
        check_device()


def test_default_describes_the_device_it_will_use(monkeypatch):
    monkeypatch.delenv("BNBENCH_DEVICE", raising=False)
    gpus = visible_gpus()
    expected = f"tensorflow: {', '.join(gpus)}" if gpus else "tensorflow: cpu ("
    assert check_device().startswith(expected)
    if not gpus:
        assert check_device().endswith(f", {os.cpu_count()} cores)")


def test_unknown_device_setting(monkeypatch):
    monkeypatch.setenv("BNBENCH_DEVICE", "tpu")
    with pytest.raises(UserError, match="use auto or gpu"):
        check_device()


def test_the_jax_backend_without_jax_installed_is_one_clear_line():
    # as if the jax extra were not installed: the package finder does not find it
    code = (
        "import importlib.util as u; find = u.find_spec; "
        "u.find_spec = lambda name, *a: None if name == 'jax' else find(name, *a); import pipeline.train"
    )
    env = {**os.environ, "KERAS_BACKEND": "jax"}
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 1
    assert (
        done.stderr
        == "bnbench: KERAS_BACKEND=jax but JAX is not installed: `uv sync --extra jax` (or unset KERAS_BACKEND)\n"
    )


def test_a_cell_says_whether_it_shared_its_device_as_the_runner_set_it(monkeypatch):
    monkeypatch.delenv(SHARED_ENV, raising=False)
    assert device_shared() is False  # a `dvc repro` stage trains alone
    monkeypatch.setenv(SHARED_ENV, "true")
    assert device_shared() is True
    monkeypatch.setenv(SHARED_ENV, "yes")
    with pytest.raises(UserError, match="BNBENCH_DEVICE_SHARED='yes'"):
        device_shared()
