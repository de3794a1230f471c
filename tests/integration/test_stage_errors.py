"""Bad input at the stage entry points: one message, a non-zero exit, no traceback."""

from __future__ import annotations

import time

from pipeline import fetch, train
from pipeline.errors import run_cli
from tests.conftest import REPO

CELL = ["--dataset", "cifar10", "--activation", "relu", "--bn", "pre", "--dropout", "0.0", "--seed", "0"]


def test_unreachable_tracking_server_fails_fast(tmp_path, monkeypatch, capsys):
    prepared = tmp_path / "prepared"
    prepared.mkdir()
    (prepared / "meta.json").write_text("{}")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:9")  # discard port: nothing listens
    began = time.monotonic()
    argv = ["--params", str(REPO / "params.yaml"), "--data", str(prepared), *CELL, "--out", str(tmp_path / "out")]
    code = run_cli(lambda: train.main(argv))
    assert code == 1 and time.monotonic() - began < 30
    err = capsys.readouterr().err
    assert "tracking server at http://127.0.0.1:9 is unreachable" in err and "MLFLOW_TRACKING_URI" in err
    assert not (tmp_path / "out").exists()


def test_cell_outside_the_matrix_is_refused(tmp_path, capsys):
    argv = [
        "--params",
        str(REPO / "params.yaml"),
        "--data",
        str(tmp_path),
        *CELL[:-1],
        "99",
        "--out",
        str(tmp_path / "o"),
    ]
    assert run_cli(lambda: train.main(argv)) == 1
    assert "cifar10-relu-pre-0.0-99 is not in the matrix" in capsys.readouterr().err


def test_missing_prepared_data_names_the_stage(tmp_path, capsys):
    argv = [
        "--params",
        str(REPO / "params.yaml"),
        "--data",
        str(tmp_path / "none"),
        *CELL,
        "--out",
        str(tmp_path / "o"),
    ]
    assert run_cli(lambda: train.main(argv)) == 1
    assert "dvc repro prepare@cifar10" in capsys.readouterr().err


def test_fetch_with_a_bad_mirror(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("BNBENCH_DATA_MIRROR", str(tmp_path / "missing"))
    monkeypatch.setenv("BNBENCH_CACHE_DIR", str(tmp_path / "cache"))
    argv = ["--params", str(REPO / "params.yaml"), "--dataset", "cifar10", "--out", str(tmp_path / "raw")]
    assert run_cli(lambda: fetch.main(argv)) == 1
    err = capsys.readouterr().err
    assert err.startswith("bnbench: BNBENCH_DATA_MIRROR") and "not a directory" in err
