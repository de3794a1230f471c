from __future__ import annotations

import subprocess
import sys

import pytest
from ruamel.yaml import YAML

from pipeline.cells import expand_matrix
from pipeline.params import ParamsError, load_params
from tests.conftest import REPO


def _write(tmp_path, mutate):
    yaml = YAML(typ="safe", pure=True)
    raw = yaml.load((REPO / "params.yaml").read_text())
    mutate(raw)
    path = tmp_path / "params.yaml"
    with path.open("w") as handle:
        yaml.dump(raw, handle)
    return path


@pytest.mark.parametrize("path", ["params.yaml", "quick/params.yaml"])
def test_shipped_params_are_valid(path):
    params = load_params(REPO / path)
    assert "off" in params.matrix.bn and len(expand_matrix(params.matrix)) >= 8


def test_full_study_is_the_cross_product():
    cells = expand_matrix(load_params(REPO / "params.yaml").matrix)
    assert len(cells) == 2 * 2 * 3 * 2 * 3
    assert cells[0].name == "cifar10-sigmoid-off-0.0-0"


def test_unknown_key_is_named(tmp_path):
    path = _write(tmp_path, lambda raw: raw["train"].update(epochz=3))
    with pytest.raises(ParamsError, match=r"train\.epochz: unknown key"):
        load_params(path)


def test_bad_value_is_named_with_the_value(tmp_path):
    path = _write(tmp_path, lambda raw: raw["matrix"].update(bn=["off", "middle"]))
    with pytest.raises(ParamsError, match=r"matrix\.bn\.1: .*'middle'"):
        load_params(path)


@pytest.mark.parametrize(
    ("section", "key", "value", "needle"),
    [
        ("train", "epochs", 0, "train.epochs"),
        ("matrix", "dropout", [0.0, 1.5], "matrix.dropout"),
        ("matrix", "dropout", [0.0, 1.0], "matrix.dropout"),  # a rate of 1 drops everything
        ("matrix", "seed", [0, 0], "matrix.seed"),
        ("matrix", "bn", ["off", "post", "off"], "matrix.bn"),
        ("matrix", "dataset", ["cifar10", "cifar10"], "matrix.dataset"),
        ("prepare", "val_fraction", 1.0, "prepare.val_fraction"),
        ("targets", "cifar10", [0.555], "targets.cifar10"),
        ("targets", "cifar10", [0.55001], "targets.cifar10"),  # would share the metric name acc55 with 0.55
    ],
)
def test_out_of_range_values_are_rejected(tmp_path, section, key, value, needle):
    path = _write(tmp_path, lambda raw: raw[section].update({key: value}))
    with pytest.raises(ParamsError) as error:
        load_params(path)
    assert needle in str(error.value)


def test_missing_section_is_named(tmp_path):
    path = _write(tmp_path, lambda raw: raw.pop("report"))
    with pytest.raises(ParamsError, match="report: required key is missing"):
        load_params(path)


def test_unquoted_off_is_read_as_dvc_reads_it(tmp_path):
    path = tmp_path / "params.yaml"
    path.write_text((REPO / "params.yaml").read_text().replace('bn: ["off", pre, post]', "bn: [off, pre, post]"))
    assert load_params(path).matrix.bn == ["off", "pre", "post"]


def test_cli_exits_non_zero_with_one_message(tmp_path):
    path = _write(tmp_path, lambda raw: raw["train"].update(batch_size=-1))
    done = subprocess.run([sys.executable, "-m", "pipeline.params", str(path)], capture_output=True, text=True)
    assert done.returncode == 2
    assert "train.batch_size" in done.stderr
    assert "Traceback" not in done.stderr
