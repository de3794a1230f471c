from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from ruamel.yaml import YAML

from pipeline.data.datasets import DATASETS
from pipeline.study.cells import cell_settings, expand_matrix
from pipeline.study.params import ParamsError, load_params, with_root_params
from pipeline.study.targets import TRAIN_LOSS, VAL_ACCURACY, Target
from tests.helpers import REPO


def _write(tmp_path, mutate):
    yaml = YAML(typ="rt")  # keeps the order of keys: the matrix's order names the cells
    raw = yaml.load((REPO / "params.yaml").read_text())
    mutate(raw)
    path = tmp_path / "params.yaml"
    with path.open("w") as handle:
        yaml.dump(raw, handle)
    return path


@pytest.mark.parametrize("overlay", [[], ["studies/quick/params.yaml"]])
def test_shipped_studies_are_valid(overlay):
    params = load_params(REPO / "params.yaml", *(REPO / path for path in overlay))
    assert "off" in params.matrix["bn"] and len(expand_matrix(params)) >= 8


CLAIM_STUDIES = sorted(p.parent.name for p in (REPO / "studies").glob("article*/params.yaml"))


def test_every_article_has_a_claim_study():
    assert {name[:10] for name in CLAIM_STUDIES} == {f"article00{i}" for i in range(5)}


@pytest.mark.parametrize("study", CLAIM_STUDIES)
def test_every_claim_study_validates_with_at_least_five_paired_seeds(study):
    overlay = REPO / "studies" / study / "params.yaml"
    params = load_params(REPO / "params.yaml", overlay)
    # five; ten for article 002, whose placements differ by little (the page shows what n seeds detect)
    assert params.matrix["seed"] == list(range(10 if study == "article002" else 5))
    assert params.study.name == f"bnbench-{study}"
    assert overlay.read_text(encoding="utf-8").startswith("# Claim")  # the claim it tests heads the file
    # Marked to run with the main study: plain `dvc repro` at the root trains it (its stages are in dvc.yaml).
    assert params.study.runs_with_main
    assert f"{study}-report:" in (REPO / "dvc.yaml").read_text(encoding="utf-8")
    assert len(params.matrix["bn"]) >= 2 or "train.kernel_initializer" in params.matrix  # something compared


def test_full_study_is_the_cross_product():
    cells = expand_matrix(load_params(REPO / "params.yaml"))
    assert len(cells) == 2 * 2 * 3 * 2 * 10  # SPEC: the main matrix has at least 5 seeds; ten, for power
    assert cells[0].name == "cifar10-sigmoid-off-0.0-0" and cells[-1].name == "fashion_mnist-relu-post-0.5-9"


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
        ("prepare", "scaling", "minmax", "prepare.scaling"),
        ("train", "kernel_initializer", "he_unifrom", "train.kernel_initializer"),
        ("train", "post_bn_bias", "sometimes", "train.post_bn_bias"),
        ("train", "augmentation", {"zoom": 1.0}, "train.augmentation.zoom"),
        ("train", "augmentation", {"shear_degrees": -1}, "train.augmentation.shear_degrees"),
        ("train", "augmentation", {"vertical_flip": True}, "train.augmentation.vertical_flip: unknown key"),
        ("train", "architecture", "resnet", "train.architecture"),
        ("targets", "cifar10", {"val_accuracy": [0.555]}, "targets.cifar10.val_accuracy"),
        # would share the metric name acc55 with 0.55
        ("targets", "cifar10", {"val_accuracy": [0.55001]}, "targets.cifar10.val_accuracy"),
        ("targets", "cifar10", {"train_loss": [0.0]}, "targets.cifar10.train_loss"),
        ("targets", "cifar10", {"train_loss": [1.3, 1.3]}, "targets.cifar10.train_loss"),
        ("targets", "cifar10", {"train_loss": [1.3001]}, "targets.cifar10.train_loss"),  # its key would be loss1p3
        ("targets", "cifar10", {"val_loss": [1.3]}, "targets.cifar10.val_loss"),
        ("targets", "cifar10", [0.5, 0.6], "targets.cifar10"),  # the old form: a list of accuracies
        ("train", "gradient_probe", -1, "train.gradient_probe"),
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
    assert load_params(path).matrix["bn"] == ["off", "pre", "post"]


def test_cli_exits_non_zero_with_one_message(tmp_path):
    path = _write(tmp_path, lambda raw: raw["train"].update(batch_size=-1))
    done = subprocess.run([sys.executable, "-m", "pipeline.study.params", str(path)], capture_output=True, text=True)
    assert done.returncode == 1
    assert done.stderr.startswith("bnbench: ") and "train.batch_size" in done.stderr
    assert "Traceback" not in done.stderr


def test_an_overlay_changes_only_the_keys_it_holds(tmp_path):
    overlay = tmp_path / "params.yaml"
    overlay.write_text("matrix:\n  seed: [5]\ntrain:\n  epochs: 1\n  optimizer:\n    learning_rate: 0.5\n")
    base = load_params(REPO / "params.yaml")
    study = load_params(REPO / "params.yaml", overlay)
    assert study.matrix == {**base.matrix, "seed": [5]}  # a list replaces, whole
    assert study.train.epochs == 1 and study.train.optimizer.learning_rate == 0.5
    assert study.train.optimizer.name == base.train.optimizer.name  # a mapping merges, key by key
    assert study.model_dump(exclude={"matrix", "train", "study"}) == base.model_dump(
        exclude={"matrix", "train", "study"}
    )


def test_an_overlay_without_a_name_is_named_after_its_folder(tmp_path):
    # Else it would log into the main study's MLflow experiment, as a copy of the main study's name.
    overlay = tmp_path / "studies" / "mine" / "params.yaml"
    overlay.parent.mkdir(parents=True)
    overlay.write_text("train:\n  epochs: 1\n")
    assert load_params(REPO / "params.yaml", overlay).study.name == "bnbench-mine"
    overlay.write_text("study:\n  runs_with_main: true\n")  # a study section, still without a name
    assert load_params(REPO / "params.yaml", overlay).study.name == "bnbench-mine"
    overlay.write_text("study:\n  name: my-own\n")
    assert load_params(REPO / "params.yaml", overlay).study.name == "my-own"
    assert load_params(REPO / "params.yaml").study.name == "bnbench"  # the base names itself


def test_every_committed_study_is_named_as_an_unnamed_overlay_would_be():
    # The rule matches the studies' own names, so a study may leave its name out and keep its experiment.
    for overlay in sorted((REPO / "studies").glob("*/params.yaml")):
        assert load_params(REPO / "params.yaml", overlay).study.name == f"bnbench-{overlay.parent.name}"


def test_an_overlay_checked_alone_is_laid_over_the_root_params():
    quick = REPO / "studies" / "quick" / "params.yaml"
    assert with_root_params([quick]) == [Path(os.path.relpath(REPO / "params.yaml")), quick]
    assert with_root_params([REPO / "params.yaml", quick]) == [REPO / "params.yaml", quick]  # already over it
    assert with_root_params([]) == [Path("params.yaml")]


def test_a_setting_of_train_becomes_an_axis_by_its_dotted_key(tmp_path):
    def lr_axis(raw):
        raw["matrix"].update({"train.optimizer.learning_rate": [0.1, 0.01]})
        raw["sweep"] = None  # the rate is an axis: no sweep chooses it

    params = load_params(_write(tmp_path, lr_axis))
    cells = expand_matrix(params)
    assert len(cells) == 240 * 2
    assert [c.name for c in cells[:2]] == [
        "cifar10-sigmoid-off-0.0-0-learning_rate_0.1",
        "cifar10-sigmoid-off-0.0-0-learning_rate_0.01",
    ]
    settings = cell_settings(params, cells[1])
    assert settings.train.optimizer.learning_rate == 0.01
    assert settings.train.optimizer.name == params.train.optimizer.name and settings.seed == 0


def test_axis_values_are_named_as_the_schema_reads_them(tmp_path):
    path = _write(tmp_path, lambda raw: raw["matrix"].update(dropout=[0, 0.5]))
    assert expand_matrix(load_params(path))[0].name == "cifar10-sigmoid-off-0.0-0"


@pytest.mark.parametrize(
    ("axes", "needle"),
    [
        ({"train.epochz": [1]}, "matrix.train.epochz: not a setting that can vary"),
        ({"train.optimizer": [{"name": "sgd"}]}, "matrix.train.optimizer: not a setting"),  # a section, not a leaf
        ({"prepare.split_seed": [0, 1]}, "matrix.prepare.split_seed: not a setting"),
        ({"train.batch_size": [32, 0]}, r"matrix.train.batch_size.1: Input should be greater than or equal to 1"),
        ({"train.optimizer.name": ["sgd", "adamw"]}, "matrix.train.optimizer.name.1: Input should be"),
        ({"train.epochs": []}, "matrix.train.epochs: needs a non-empty list"),
        ({"train.epochs": 3}, "matrix.train.epochs: .*list"),
        ({"train.optimizer.decay": [0.0, -1e-6]}, r"matrix.train.optimizer.decay.1: Input should be greater"),
        ({"train.kernel_initializer": [None, "ones"]}, r"matrix.train.kernel_initializer.1: Input should be"),
        ({"train.augmentation": [{"zoom": 0.1}]}, "matrix.train.augmentation: not a setting"),  # a section
    ],
)
def test_bad_axes_are_named(tmp_path, axes, needle):
    path = _write(tmp_path, lambda raw: raw["matrix"].update(axes))
    with pytest.raises(ParamsError, match=needle):
        load_params(path)


def test_every_cell_axis_is_required(tmp_path):
    path = _write(tmp_path, lambda raw: raw["matrix"].pop("seed"))
    with pytest.raises(ParamsError, match="matrix.seed: required axis is missing"):
        load_params(path)


def test_a_dataset_without_targets_uses_its_defaults(tmp_path):
    path = _write(tmp_path, lambda raw: raw["targets"].pop("fashion_mnist"))
    params = load_params(path)
    fashion = DATASETS["fashion_mnist"]
    assert params.targets_for("fashion_mnist") == [Target(VAL_ACCURACY, t) for t in fashion.default_targets] + [
        Target(TRAIN_LOSS, t) for t in fashion.default_loss_targets
    ]
    assert [t.key for t in params.targets_for("cifar10")] == ["acc50", "acc60", "acc70", "loss1p6", "loss1p3", "loss1"]


def test_a_list_left_out_takes_its_defaults_and_an_empty_list_means_none(tmp_path):
    path = _write(tmp_path, lambda raw: raw["targets"].update(cifar10={"train_loss": []}))
    assert [t.key for t in load_params(path).targets_for("cifar10")] == ["acc50", "acc60", "acc70"]
    path = _write(
        tmp_path, lambda raw: raw["targets"].update(cifar10={"val_accuracy": [0.4], "train_loss": [1.0, 2.0]})
    )
    assert [t.key for t in load_params(path).targets_for("cifar10")] == ["acc40", "loss2", "loss1"]
    path = _write(tmp_path, lambda raw: raw["targets"].update(cifar10={"val_accuracy": [], "train_loss": []}))
    with pytest.raises(ParamsError, match="targets.cifar10: both lists are empty"):
        load_params(path)


def test_a_bad_value_is_blamed_on_its_own_axis_only(tmp_path):
    path = _write(tmp_path, lambda raw: raw["matrix"].update(dropout=[1.5, 0.0]))
    with pytest.raises(ParamsError) as error:
        load_params(path)
    assert str(error.value) == f"{path}: matrix.dropout.0: Input should be less than 1 (got 1.5)"


@pytest.mark.parametrize(
    ("axes", "needle"),
    [
        ({"train.epochs.foo": [1]}, "matrix.train.epochs.foo: not a setting"),  # below a leaf
        ({"dropout": [0, 0.0]}, r"matrix.dropout.1: 0.0 is the same setting as value 0"),  # one cell, named twice
        ({"seed": [0, "0"]}, r"matrix.seed.1: Input should be a valid integer \(got '0'\)"),  # strict types
        ({"train.optimizer.nesterov": [False, True]}, "nesterov applies to sgd only, not rmsprop"),  # ignored by it
        (
            {"train.optimizer.name": ["sgd", "adam"], "train.optimizer.momentum": [0.0, 0.9]},
            r"matrix: the cell .*'adam'.*0.9.*momentum applies to sgd and rmsprop",
        ),
    ],
)
def test_axes_that_would_name_cells_wrongly_are_refused(tmp_path, axes, needle):
    path = _write(tmp_path, lambda raw: raw["matrix"].update(axes))
    with pytest.raises(ParamsError, match=needle):
        load_params(path)


def test_the_new_settings_are_axes(tmp_path):
    axes = {
        "train.post_bn_bias": [True, False],
        "train.kernel_initializer": [None, "random_normal"],
        "train.augmentation.zoom": [0.0, 0.2],
        "train.optimizer.decay": [0.0, 1e-6],
    }
    path = _write(tmp_path, lambda raw: raw["matrix"].update(axes))
    cells = expand_matrix(load_params(path))
    assert len(cells) == 240 * 16
    settings = cell_settings(load_params(path), cells[-1])
    assert settings.train.post_bn_bias is False and settings.train.kernel_initializer == "random_normal"
    assert settings.train.augmentation.zoom == 0.2 and settings.train.optimizer.decay == 1e-6


# Each claim study's effective setup, as its article has it (the study files say where each comes from):
# an edit to params.yaml that an overlay inherits cannot silently change an article's setup.
ARTICLE_SETUPS = {
    "article000": {"train.architecture": "seed_cnn", "train.optimizer.name": "rmsprop",
                   "train.optimizer.learning_rate": 0.001, "train.batch_size": 32, "train.epochs": 5,
                   "train.bn_momentum": 0.99, "train.post_bn_bias": True, "train.kernel_initializer": None,
                   "train.augmentation.shear_degrees": 0.2, "train.augmentation.zoom": 0.2,
                   "train.augmentation.horizontal_flip": True, "prepare.scaling": "l2_axis1",
                   "train.optimizer.epsilon_placement": "after_sqrt"},
    "article001": {"train.architecture": "strided_cnn", "train.optimizer.name": "adam",
                   "train.optimizer.learning_rate": 0.001, "train.batch_size": 5000, "train.bn_momentum": 0.99,
                   "train.bn_epsilon": 0.001, "train.post_bn_bias": True, "prepare.scaling": "unit_range"},
    "article003": {"train.architecture": "mlp", "train.optimizer.name": "sgd", "train.optimizer.learning_rate": 0.01,
                   "train.optimizer.momentum": 0.9, "train.optimizer.nesterov": True, "train.optimizer.decay": 1e-6,
                   "train.epochs": 60, "train.batch_size": 32, "train.post_bn_bias": False,
                   "train.bn_momentum": 0.99, "prepare.scaling": "unit_range"},
    "article004_lr": {"train.architecture": "conv5_cnn", "train.bn_momentum": 0.9, "train.bn_epsilon": 0.001},
    "article004_init": {"train.architecture": "conv5_cnn", "train.bn_momentum": 0.9, "train.bn_epsilon": 0.001},
    "article004_sigmoid": {"train.architecture": "conv5_cnn", "train.bn_momentum": 0.9, "train.bn_epsilon": 0.001},
}  # fmt: skip


@pytest.mark.parametrize("study", sorted(ARTICLE_SETUPS))
def test_claim_studies_hold_their_articles_setup(study):
    from pipeline.study.axes import read_dotted

    params = load_params(REPO / "params.yaml", REPO / "studies" / study / "params.yaml")
    for key, expected in ARTICLE_SETUPS[study].items():
        assert read_dotted(params, key) == expected, key
    assert not any(read_dotted(params, "train.augmentation." + k) for k in ("zoom", "shear_degrees")) or (
        study == "article000"
    )


def test_article_003_validates_on_5000_of_60000():
    import math

    params = load_params(REPO / "params.yaml", REPO / "studies" / "article003" / "params.yaml")
    assert math.ceil(params.prepare.val_fraction * 60_000) == 5000  # sklearn rounds test_size up


def test_every_rule_of_the_schema_is_known_to_the_fault_suite():
    # tests/faults/test_params.py reads keys, types and bounds from the schema; a validator's own rule
    # it cannot read: a new one must get its bad values there (params_schema.CHECKS, TIED) first.
    from pipeline.study.schema import Params
    from tests.faults.params_schema import CHECKS, SETTINGS, TIED, model_validators

    checks = {check for s in SETTINGS for check in (*s.checks, *(s.element.checks if s.element else ()))}
    assert checks <= set(CHECKS), checks - set(CHECKS)
    assert model_validators(Params) == set(TIED)
