from __future__ import annotations

import os

import pytest

from pipeline.device import check_device, visible_gpus
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
