"""The study's settings as a typed, frozen schema: every section of params.yaml and its overlays.

Loading, laying overlays over the root params and the error messages are pipeline/study/params.py;
axis keys and a cell's settings are pipeline/study/axes.py. Names that other modules declare are
read from them: datasets from pipeline/data/datasets.py, architectures from
pipeline/cell/architectures.py.
"""

from __future__ import annotations

import math
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, model_validator

from pipeline.cell.architectures import ARCHITECTURES
from pipeline.data.datasets import DATASETS, descriptor
from pipeline.study.targets import TRAIN_LOSS, VAL_ACCURACY, Target

Dataset = Literal[tuple(DATASETS)]  # one descriptor per dataset: pipeline/data/datasets.py
Activation = Literal["sigmoid", "relu", "tanh", "elu", "selu", "gelu", "silu"]
BatchNorm = Literal["off", "pre", "post"]
Architecture = Literal[tuple(ARCHITECTURES)]  # one declaration per architecture: pipeline/cell/architectures.py
# Keras' built-in kernel initializers by name (keras.initializers.get); the random ones at their defaults.
Initializer = Literal[
    "glorot_uniform", "glorot_normal", "he_uniform", "he_normal", "lecun_uniform", "lecun_normal",
    "random_normal", "random_uniform", "truncated_normal", "orthogonal",
]  # fmt: skip
# How prepare scales pixels: standardize (per channel, the training split's mean and std),
# unit_range (/255, article 003), l2_axis1 (keras.utils.normalize(x, axis=1): each image's
# columns to unit L2 norm along the height, article 000), raw (0-255 as floats, article 001).
Scaling = Literal["standardize", "unit_range", "l2_axis1", "raw"]


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
    architecture: Architecture  # a seed article's model, layer for layer (pipeline/cell/models.py)
    optimizer: OptimizerParams
    epochs: int = Field(ge=1)
    batch_size: int = Field(ge=1)
    evals_per_epoch: int = Field(ge=1)  # validation passes per epoch: the resolution of steps-to-target
    early_evals: bool = True  # also evaluate after steps 1, 2, 4, ... of the first epoch (pipeline/cell/training.py)
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
    # The same seed gives the same numbers on the same machine and backend (pipeline/cell/backend.py);
    # false lets TensorFlow compile with XLA and pick non-deterministic kernels (faster on a GPU).
    deterministic: bool = True
    # Also keep the trained model in the cell's MLflow run (model.keras, Keras' own format): a file of
    # the model's size per cell, so off unless the models are wanted (the outputs never hold them).
    log_model: bool = False


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
