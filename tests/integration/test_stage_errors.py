"""Bad input at the stage entry points: one message, a non-zero exit, no traceback."""

from __future__ import annotations

import json

from pipeline import fetch, train
from pipeline.errors import run_cli
from tests.helpers import REPO
from tools.fake_data import md5, write_fashion_mnist

CELL = ["--cell", "cifar10-relu-pre-0.0-0"]


def test_unreachable_tracking_server_fails_before_any_work(tmp_path, monkeypatch, capsys):
    prepared = tmp_path / "prepared"
    prepared.mkdir()
    # unreadable as data (no arrays): loading it first would fail differently
    (prepared / "meta.json").write_text('{"dataset": "cifar10"}')
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:9")  # discard port: nothing listens
    argv = ["--params", str(REPO / "params.yaml"), "--data", str(prepared), *CELL, "--out", str(tmp_path / "out")]
    assert run_cli(lambda: train.main(argv)) == 1
    err = capsys.readouterr().err
    assert "tracking server at http://127.0.0.1:9 is unreachable" in err and "MLFLOW_TRACKING_URI" in err
    assert not (tmp_path / "out").exists()


def test_cell_outside_the_matrix_is_refused(tmp_path, capsys):
    argv = ["--params", str(REPO / "params.yaml"), "--data", str(tmp_path), "--cell", "cifar10-relu-pre-0.0-99"]
    assert run_cli(lambda: train.main([*argv, "--out", str(tmp_path / "o")])) == 1
    err = capsys.readouterr().err
    assert "cifar10-relu-pre-0.0-99 is not in the matrix" in err and "python -m pipeline.dvcfile" in err


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
    assert (
        "no prepared data; run `dvc repro` for the study first (its stage prepare@cifar10)" in capsys.readouterr().err
    )


def test_fetch_with_a_bad_mirror(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("BNBENCH_DATA_MIRROR", str(tmp_path / "missing"))
    monkeypatch.setenv("BNBENCH_CACHE_DIR", str(tmp_path / "cache"))
    argv = ["--params", str(REPO / "params.yaml"), "--dataset", "cifar10", "--out", str(tmp_path / "raw")]
    assert run_cli(lambda: fetch.main(argv)) == 1
    err = capsys.readouterr().err
    assert err.startswith("bnbench: BNBENCH_DATA_MIRROR") and "not a directory" in err


def test_fetch_warns_when_checksums_are_not_the_published_ones(tmp_path, monkeypatch, capsys):
    mirror = tmp_path / "mirror"
    (mirror / "fashion_mnist").mkdir(parents=True)
    write_fashion_mnist(mirror / "fashion_mnist", train=60, test=20)
    sums = tmp_path / "sums.json"
    sums.write_text(json.dumps({"fashion_mnist": {p.name: md5(p) for p in (mirror / "fashion_mnist").iterdir()}}))
    monkeypatch.setenv("BNBENCH_DATA_MIRROR", str(mirror))
    monkeypatch.setenv("BNBENCH_DATA_CHECKSUMS", str(sums))
    monkeypatch.setenv("BNBENCH_CACHE_DIR", str(tmp_path / "cache"))
    argv = ["--params", str(REPO / "params.yaml"), "--dataset", "fashion_mnist", "--out", str(tmp_path / "raw")]
    assert run_cli(lambda: fetch.main(argv)) == 0
    err = capsys.readouterr().err
    assert err.startswith("bnbench: WARNING: fashion_mnist is verified against checksums from BNBENCH_DATA_CHECKSUMS")
    assert json.loads((tmp_path / "raw" / "files.json").read_text())["published"] is False


def test_data_of_another_dataset_is_refused(tmp_path, capsys):
    prepared = tmp_path / "prepared"
    prepared.mkdir()
    (prepared / "meta.json").write_text('{"dataset": "fashion_mnist"}')
    argv = ["--params", str(REPO / "params.yaml"), "--data", str(prepared), *CELL, "--out", str(tmp_path / "o")]
    assert run_cli(lambda: train.main(argv)) == 1
    assert "holds fashion_mnist data, but cell cifar10-relu-pre-0.0-0 trains on cifar10" in capsys.readouterr().err
