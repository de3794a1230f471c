"""The study's settings: one typed, frozen schema for params.yaml and its overlays.

A study's settings are params.yaml with its overlay (studies/<name>/params.yaml,
only the keys it changes) laid over it. Every stage loads them whole through
`load_params`, so a wrong key or value anywhere stops the first stage that runs,
before it does any work. `matrix:` names the axes; a cell's settings are the
study's with its axis values applied (`apply_axes`), validated by the same schema.
Check a study by hand with `python -m pipeline.params params.yaml [overlay]`.
"""

from __future__ import annotations

import argparse
import itertools
import math
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Annotated, Literal, get_args, get_origin

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError, model_validator
from ruamel.yaml import YAML, YAMLError

from pipeline.convergence import TRAIN_LOSS, VAL_ACCURACY, Target
from pipeline.data.datasets import DATASETS, descriptor
from pipeline.errors import UserError

Dataset = Literal[tuple(DATASETS)]  # one descriptor per dataset: pipeline/data/datasets.py
Activation = Literal["sigmoid", "relu", "tanh", "elu", "selu", "gelu", "silu"]
BatchNorm = Literal["off", "pre", "post"]
Architecture = Literal["seed_cnn", "strided_cnn", "mlp", "conv5_cnn"]
# Keras' built-in kernel initializers by name (keras.initializers.get); the random ones at their defaults.
Initializer = Literal[
    "glorot_uniform", "glorot_normal", "he_uniform", "he_normal", "lecun_uniform", "lecun_normal",
    "random_normal", "random_uniform", "truncated_normal", "orthogonal",
]  # fmt: skip
# How prepare scales pixels: standardize (per channel, the training split's mean and std),
# unit_range (/255, article 003), l2_axis1 (keras.utils.normalize(x, axis=1): each image's
# columns to unit L2 norm along the height, article 000), raw (0-255 as floats, article 001).
Scaling = Literal["standardize", "unit_range", "l2_axis1", "raw"]


class ParamsError(UserError):
    """params.yaml is missing, unreadable or breaks the schema; the message names the key."""


class _Strict(BaseModel):
    # Unknown keys are typos until proven otherwise: reject them. Strict types: `true` is not the
    # number 1, nor "yes" a boolean (YAML 1.2 reads it as a string); no NaN or infinity anywhere.
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True, allow_inf_nan=False)


def _unique(values: list) -> list:
    duplicates = sorted({str(v) for v in values if values.count(v) > 1})
    if duplicates:
        raise ValueError(f"duplicate values {duplicates}")
    return values


class StudyParams(_Strict):
    name: str = Field(min_length=1, pattern=r"^[A-Za-z0-9_.-]+$")  # MLflow experiment name
    # A study under studies/ whose stages go into the root dvc.yaml, so that a plain `dvc repro` runs it.
    runs_with_main: bool = False


class PrepareParams(_Strict):
    val_fraction: float = Field(gt=0, lt=1)  # share of the official training set held out
    split_seed: int = Field(ge=0)  # seeds the split and the subset, not the training
    max_train_examples: int | None = Field(default=None, ge=100)  # stratified subset; null: all
    max_test_examples: int | None = Field(default=None, ge=100)
    scaling: Scaling = "standardize"  # input scaling, recorded in each dataset's meta.json


class OptimizerParams(_Strict):
    name: Literal["rmsprop", "sgd", "adam"]
    learning_rate: float = Field(gt=0)
    momentum: float = Field(default=0.0, ge=0, lt=1)  # sgd and rmsprop only
    nesterov: bool = False  # sgd only
    # Legacy Keras `decay`: lr_t = learning_rate / (1 + decay * t), t the optimizer steps taken.
    decay: float = Field(default=0.0, ge=0)
    # rmsprop only: where its epsilon (1e-7) enters. in_sqrt: Keras 3, lr * g / sqrt(a + eps); after_sqrt:
    # standalone Keras 2.2 (article 000's), lr * g / (sqrt(a) + eps), no floor under tiny gradients' steps.
    epsilon_placement: Literal["in_sqrt", "after_sqrt"] = "in_sqrt"

    @model_validator(mode="after")
    def _only_settings_the_optimizer_uses(self) -> OptimizerParams:
        # A setting the optimizer ignores would make cells that differ by name only.
        if self.nesterov and self.name != "sgd":
            raise ValueError(f"nesterov applies to sgd only, not {self.name}")
        if self.momentum and self.name == "adam":
            raise ValueError("momentum applies to sgd and rmsprop, not adam (its betas are Keras' defaults)")
        if self.epsilon_placement == "after_sqrt" and (self.name != "rmsprop" or self.momentum):
            raise ValueError("epsilon_placement after_sqrt is Keras 2's plain rmsprop: rmsprop without momentum only")
        return self


class AugmentationParams(_Strict):
    """Article 000's ImageDataGenerator settings, as Keras layers in the model (training only)."""

    horizontal_flip: bool = False
    shear_degrees: float = Field(default=0.0, ge=0, le=45)  # shear_range: an angle in DEGREES, drawn in [-d, d]
    zoom: float = Field(default=0.0, ge=0, lt=1)  # zoom_range: height and width zoom drawn apart in [1-z, 1+z]


class TrainParams(_Strict):
    architecture: Architecture  # a seed article's model, layer for layer (pipeline/models.py)
    optimizer: OptimizerParams
    epochs: int = Field(ge=1)
    batch_size: int = Field(ge=1)
    evals_per_epoch: int = Field(ge=1)  # validation passes per epoch: the resolution of steps-to-target
    early_evals: bool = True  # also evaluate after steps 1, 2, 4, ... of the first epoch (pipeline/training.py)
    gradient_probe: int = Field(
        default=256, ge=0
    )  # training images on which per-layer gradient norms are measured; 0: none
    bn_probe: int = Field(
        default=256, ge=0
    )  # training images BN statistics are re-estimated on at each evaluation; 0: none
    # the probes above at every k-th evaluation (step 0 and the last planned one always): at each they
    # cost about as much as the validation pass, so k trades their resolution in steps for time
    probe_every: int = Field(default=1, ge=1)
    steps_per_execution: int = Field(default=1, ge=1)  # training steps per call of the compiled step
    bn_momentum: float = Field(gt=0, lt=1)  # moving-statistics decay of BatchNormalization
    bn_epsilon: float = Field(gt=0)
    # post only: whether the Conv/Dense layer before the activation and BN keeps its bias
    # (pre always drops it, off always keeps it). Article 003 drops it in both placements.
    post_bn_bias: bool = True
    kernel_initializer: Initializer | None = None  # every Conv/Dense kernel; null: each article's own
    augmentation: AugmentationParams = Field(default_factory=lambda: AugmentationParams())
    # The same seed gives the same numbers on the same machine and backend (pipeline/backend.py);
    # false lets TensorFlow compile with XLA and pick non-deterministic kernels (faster on a GPU).
    deterministic: bool = True


def _whole_percents(targets: list[float]) -> list[float]:
    _unique(targets)
    for target in targets:
        if not 0 < target < 1 or abs(target * 100 - round(target * 100)) > 1e-9:
            raise ValueError(f"target {target} is not a whole percentage in (0, 1), e.g. 0.55")
    return sorted(targets)


def _loss_levels(targets: list[float]) -> list[float]:
    _unique(targets)
    for target in targets:
        # Up to 3 significant digits: the metric key (loss1p3) names the target exactly.
        if not (math.isfinite(target) and target > 0) or float(f"{target:.3g}") != target:
            raise ValueError(f"loss target {target} is not a positive number of at most 3 significant digits, e.g. 1.3")
    return sorted(targets, reverse=True)


class DatasetTargets(_Strict):
    """A dataset's targets; a list left out takes the dataset's defaults, an empty list means none."""

    # Validation accuracies whose first crossing measures convergence speed.
    val_accuracy: Annotated[list[float], AfterValidator(_whole_percents)] | None = None
    # Training losses (per step, smoothed over report.loss_window steps) whose first crossing does too.
    train_loss: Annotated[list[float], AfterValidator(_loss_levels)] | None = None


LEARNING_RATE = "train.optimizer.learning_rate"
MIN_SWEEP_DECADES = 3
# What a sweep may choose by: validation quantities of a cell's metrics.json, and which way is better.
SWEEP_SCORES = {"best_val_accuracy": "max", "final_val_accuracy": "max", "val_auc": "max", "final_val_loss": "min"}


def _sweep_grid(rates: list[float]) -> list[float]:
    _unique(rates)
    bad = [r for r in rates if not r > 0]
    if bad:
        raise ValueError(f"learning rates must be positive, got {bad}")
    decades = math.log10(max(rates) / min(rates))
    if decades < MIN_SWEEP_DECADES - 1e-9:
        raise ValueError(
            f"the grid spans {decades:.2f} decades ({min(rates):g} to {max(rates):g}); a sweep needs at least "
            f"{MIN_SWEEP_DECADES}, e.g. [0.0001, 0.0003, 0.001, 0.003, 0.01, 0.03, 0.1]"
        )
    return sorted(rates)


def _validation_quantity(name: str) -> str:
    if name not in SWEEP_SCORES:
        raise ValueError(
            f"{name!r} is not a validation quantity to choose by; use one of {', '.join(SWEEP_SCORES)} "
            "(the test set is used once, at the end, never to choose)"
        )
    return name


class SweepParams(_Strict):
    """A learning rate chosen per configuration on validation, then rerun over the study's seeds."""

    learning_rates: Annotated[list[float], Field(min_length=2), AfterValidator(_sweep_grid)]  # a log grid
    seeds: Annotated[list[Annotated[int, Field(ge=0)]], Field(min_length=1), AfterValidator(_unique)]
    epochs: int = Field(ge=1)  # the budget of each sweep run
    choose_by: Annotated[str, AfterValidator(_validation_quantity)]


class ReportParams(_Strict):
    confidence: float = Field(gt=0.5, lt=1)  # level of every confidence interval in the report
    # The questions the page answers, by key (pipeline/report/questions.py): a claim study names its
    # article's; null: the SPEC's four questions. Checked against the declarations when the pipeline is generated.
    questions: Annotated[list[Annotated[str, Field(pattern=r"^[a-z0-9_-]+$")]], AfterValidator(_unique)] | None = Field(
        default=None, min_length=1
    )
    loss_window: int = Field(default=20, ge=1)  # steps of the trailing mean that smooths the loss for loss targets


# The axes every cell has; any leaf of `train` may be an axis too, by its dotted key.
CELL_AXES = ("dataset", "activation", "bn", "dropout", "seed")


class CellSettings(_Strict):
    """What one cell is trained with: the study's settings, with the cell's axis values applied."""

    dataset: Dataset
    activation: Activation
    bn: BatchNorm  # off: no BN; pre: Conv/Dense -> BN -> act; post: Conv/Dense -> act -> BN
    dropout: float = Field(ge=0, lt=1)  # rate after each pooling and hidden Dense block; 1 would drop everything
    seed: int = Field(ge=0)  # weight init, shuffling and dropout masks
    train: TrainParams


class Params(_Strict):
    study: StudyParams
    prepare: PrepareParams
    matrix: dict[str, list] = Field(min_length=1)  # axis (dotted key) -> its values; cells are the cross product
    train: TrainParams
    targets: dict[Dataset, DatasetTargets] = Field(default_factory=dict)  # absent dataset: its descriptor's defaults
    report: ReportParams
    sweep: SweepParams | None = None  # absent: the study trains at train.optimizer.learning_rate only

    def targets_for(self, dataset: str) -> list[Target]:
        """The dataset's accuracy targets, then its loss targets; a list not given takes the descriptor's."""
        given = self.targets.get(dataset) or DatasetTargets()
        defaults = descriptor(dataset)
        accuracies = given.val_accuracy if given.val_accuracy is not None else defaults.default_targets
        losses = given.train_loss if given.train_loss is not None else defaults.default_loss_targets
        return [Target(VAL_ACCURACY, t) for t in accuracies] + [Target(TRAIN_LOSS, t) for t in losses]


def flatten(prefix: str, tree: object) -> dict[str, object]:
    """{"a": {"b": 1}} -> {"a.b": 1}, under `prefix` when one is given."""
    if isinstance(tree, dict):
        flat: dict[str, object] = {}
        for key, inner in tree.items():
            flat.update(flatten(f"{prefix}.{key}" if prefix else key, inner))
        return flat
    return {prefix: tree}


def set_dotted(tree: dict, key: str, value: object) -> None:
    """tree["a"]["b"] = value for key "a.b"."""
    *parents, leaf = key.split(".")
    for part in parents:
        tree = tree[part]
    tree[leaf] = value


def read_dotted(settings: BaseModel, key: str) -> object:
    """settings.a.b for key "a.b"."""
    value: object = settings
    for part in key.split("."):
        value = getattr(value, part)
    return value


def format_value(value: object) -> str:
    """How an axis value reads in names and keys: 0.0 -> "0.0", 1e-05 -> "1e-05", True -> "true"."""
    if isinstance(value, bool):
        return str(value).lower()
    return str(value)


def _is_model(annotation: object) -> bool:
    return isinstance(annotation, type) and issubclass(annotation, BaseModel)


def is_axis_key(key: str) -> bool:
    """A cell axis, or a leaf setting of `train` (not a whole section of it)."""
    if key in CELL_AXES:
        return True
    section, *path = key.split(".")
    model: object = TrainParams
    if section != "train" or not path:
        return False
    for part in path:
        field = model.model_fields.get(part) if _is_model(model) else None
        if field is None:
            return False
        model = field.annotation
    return not _is_model(model)


def _concerns(loc: tuple, key: str) -> bool:
    """Whether a validation error at `loc` is about the setting `key` (or the section holding it)."""
    path = tuple(key.split("."))
    return bool(loc) and (loc[: len(path)] == path or path[: len(loc)] == loc)


def _matrix_errors(params: Params) -> list[str]:
    """Each axis key must name a setting, and each of its values must pass that setting's validation."""
    matrix = params.matrix
    errors = [f"  matrix.{axis}: required axis is missing" for axis in CELL_AXES if axis not in matrix]
    errors += [
        f"  matrix.{key}: needs a non-empty list of values (got {values!r})"
        for key, values in matrix.items()
        if not isinstance(values, list) or not values
    ]
    unknown = [key for key in matrix if not is_axis_key(key)]
    errors += [
        f"  matrix.{key}: not a setting that can vary (an axis is one of {', '.join(CELL_AXES)}, "
        "or a leaf of train such as train.optimizer.learning_rate)"
        for key in unknown
    ]
    if errors:
        return errors
    first = {axis: values[0] for axis, values in matrix.items()}
    for key, values in matrix.items():
        seen: dict[str, int] = {}
        for index, value in enumerate(values):
            try:
                settings = apply_axes(params.train, {**first, key: value})
            except ValidationError as error:
                # Only what is wrong with this value: another axis's bad first value is reported there.
                errors += [
                    f"  matrix.{key}.{index}: {_message(item)} (got {value!r})"
                    for item in error.errors()
                    if _concerns(item["loc"], key)
                ]
                continue
            # Values that validate to the same setting (0 and 0.0, "off" and false) are one cell, not two.
            name = format_value(read_dotted(settings, key))
            if name in seen:
                errors.append(f"  matrix.{key}.{index}: {value!r} is the same setting as value {seen[name]} ({name})")
            seen.setdefault(name, index)
    if not errors:  # each value is valid with the others' first: now every combination (e.g. adam with nesterov)
        errors = _combination_errors(params)
    return errors


def _target_errors(params: Params) -> list[str]:
    """Each dataset of the study needs at least one target to measure convergence by."""
    return [
        f"  targets.{dataset}: both lists are empty; give at least one target (or leave a list out for the defaults)"
        for dataset in params.matrix["dataset"]
        if not params.targets_for(dataset)
    ]


def _combination_errors(params: Params, most: int = 5) -> list[str]:
    errors = []
    for values in itertools.product(*params.matrix.values()):
        axes = dict(zip(params.matrix, values, strict=True))
        try:
            apply_axes(params.train, axes)
        except ValidationError as error:
            where = ", ".join(f"{k}={v!r}" for k, v in axes.items())
            errors += [f"  matrix: the cell {where}: {_message(item)}" for item in error.errors()]
            if len(errors) >= most:
                break
    return errors


def _sweep_errors(params: Params) -> list[str]:
    if params.sweep is None:
        return []
    if LEARNING_RATE in params.matrix:
        return [
            f"  sweep: the study also has {LEARNING_RATE} as a matrix axis; a sweep chooses the learning rate "
            "per configuration, so remove one of the two"
        ]
    # A rate chosen on a seed's run and then reported on that seed's rerun would be judged on the data it was
    # chosen for: the sweep's seeds are never the study's.
    shared = sorted(set(params.sweep.seeds) & {int(s) for s in params.matrix.get("seed", []) if isinstance(s, int)})
    if shared:
        return [
            f"  sweep.seeds: {shared} are also in matrix.seed; a rate is chosen on sweep seeds and reported on the "
            f"study's, so they must differ (e.g. sweep seeds from {max(params.matrix['seed']) + 1} on)"
        ]
    return []


def apply_axes(train: TrainParams, axes: dict[str, object]) -> CellSettings:
    """The settings of the cell with these axis values, validated by the same schema as params.yaml."""
    raw: dict = {"train": train.model_dump()}
    for key, value in axes.items():
        set_dotted(raw, key, value)
    return CellSettings.model_validate(raw)


def _section_at(path: Sequence[str | int]) -> type[BaseModel] | None:
    """The schema's section (a model) at a key path of params.yaml, e.g. ("targets", "cifar10"); None: not one."""
    model: object = Params
    parts = iter(path)
    for part in parts:
        field = model.model_fields.get(part) if _is_model(model) else None
        if field is None:
            return None
        model = field.annotation
        if get_origin(model) is dict:  # targets: {dataset: its section}; the next part is the dataset
            model = get_args(model)[1]
            if next(parts, None) is None:
                return None  # the mapping of datasets itself
        else:  # `sweep: null` is allowed: SweepParams | None is the section SweepParams
            model = next((arg for arg in get_args(model) if _is_model(arg)), model)
    return model if _is_model(model) else None


def _message(item: dict) -> str:
    return item["msg"].removeprefix("Value error, ")


def _format_errors(error: ValidationError) -> list[str]:
    lines = []
    for item in error.errors():
        loc = [part for part in item["loc"] if part != "[key]"]  # pydantic's marker for a bad mapping key
        key = ".".join(str(part) for part in loc) or "(top level)"
        if item["type"] == "extra_forbidden":
            allowed = _section_at(loc[:-1])
            lines.append(f"  {key}: unknown key; {'.'.join(map(str, loc[:-1])) or 'the top level'} has "
                         f"{', '.join(allowed.model_fields) if allowed else 'no such key'}")  # fmt: skip
        elif item["type"] == "missing":
            lines.append(f"  {key}: required key is missing")
        elif item["type"] in ("model_type", "model_attributes_type", "dict_type") and _section_at(loc):
            keys = ", ".join(_section_at(loc).model_fields)
            lines.append(f"  {key}: should be a mapping of its settings ({keys}) (got {item['input']!r})")
        else:
            lines.append(f"  {key}: {_message(item)} (got {item['input']!r})")
    return lines


def parse_params(raw: object, source: str | Path) -> Params:
    try:
        params = Params.model_validate(raw)
    except ValidationError as error:
        lines = _format_errors(error)
    else:
        lines = (_matrix_errors(params) + _sweep_errors(params)) or _target_errors(params)
        if not lines:
            return params
    if len(lines) == 1:  # one line, as a stage prints it: "bnbench: params.yaml: train.epochs: ..."
        raise ParamsError(f"{source}: {lines[0].strip()}")
    raise ParamsError("\n".join([f"{source}: {len(lines)} invalid setting(s):", *lines]))


def merge(base: dict, overlay: dict) -> dict:
    """`overlay` on top of `base`: mappings merge key by key, anything else (a list too) replaces."""
    merged = dict(base)
    for key, value in overlay.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def _read_yaml(path: Path) -> dict:
    try:
        # YAML 1.2, as DVC reads it: `off` stays the string "off".
        raw = YAML(typ="safe", pure=True).load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ParamsError(f"{path}: file not found (run from the repository root)") from None
    except YAMLError as error:
        raise ParamsError(f"{path}: not valid YAML: {error}") from None
    if not isinstance(raw, dict):
        raise ParamsError(f"{path}: expected a mapping of settings, got {type(raw).__name__}")
    return raw


def load_params(*paths: str | Path) -> Params:
    """The study's settings: the first file, with each following file laid over it (a study overlay)."""
    paths = tuple(Path(p) for p in paths) or (Path("params.yaml"),)
    raw: dict = {}
    for path in paths:
        raw = merge(raw, _read_yaml(path))
    return parse_params(raw, " + ".join(str(p) for p in paths))


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Validate a bnbench study: params.yaml, then any overlays on it.")
    parser.add_argument("params", nargs="*", default=["params.yaml"], help="files, each laid over the ones before")
    args = parser.parse_args(argv)
    try:
        params = load_params(*args.params)
    except ParamsError as error:
        print(error, file=sys.stderr)
        return 2
    cells = math.prod(len(values) for values in params.matrix.values())
    print(f"{' + '.join(args.params)}: valid, {cells} training cells over {', '.join(params.matrix)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
