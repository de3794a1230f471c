"""The study's settings: one typed, frozen schema for params.yaml.

Every stage loads the whole file through `load_params`, so a wrong key or value
anywhere stops the first stage that runs, before it does any work. Check a file
by hand with `python -m pipeline.params [params.yaml]`.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator
from ruamel.yaml import YAML, YAMLError

from pipeline.errors import UserError

Dataset = Literal["cifar10", "fashion_mnist"]
Activation = Literal["sigmoid", "relu", "tanh", "elu", "selu", "gelu", "silu"]
BatchNorm = Literal["off", "pre", "post"]
Architecture = Literal["seed_cnn", "strided_cnn", "mlp"]


class ParamsError(UserError):
    """params.yaml is missing, unreadable or breaks the schema; the message names the key."""


class _Strict(BaseModel):
    # Unknown keys are typos until proven otherwise: reject them.
    model_config = ConfigDict(extra="forbid", frozen=True)


def _unique(values: list) -> list:
    duplicates = sorted({str(v) for v in values if values.count(v) > 1})
    if duplicates:
        raise ValueError(f"duplicate values {duplicates}")
    return values


class StudyParams(_Strict):
    name: str = Field(min_length=1, pattern=r"^[A-Za-z0-9_.-]+$")  # MLflow experiment name


class PrepareParams(_Strict):
    val_fraction: float = Field(gt=0, lt=1)  # share of the official training set held out
    split_seed: int = Field(ge=0)  # seeds the split and the subset, not the training
    max_train_examples: int | None = Field(default=None, ge=100)  # stratified subset; null: all
    max_test_examples: int | None = Field(default=None, ge=100)


class MatrixParams(_Strict):
    dataset: list[Dataset] = Field(min_length=1)
    activation: list[Activation] = Field(min_length=1)
    bn: list[BatchNorm] = Field(min_length=1)
    dropout: list[float] = Field(min_length=1)
    seed: list[int] = Field(min_length=1)

    _check_unique = field_validator("*")(_unique)

    @field_validator("dropout")
    @classmethod
    def _rates_in_range(cls, rates: list[float]) -> list[float]:
        for rate in rates:
            if not 0.0 <= rate < 1.0:
                raise ValueError(f"dropout rate {rate} is outside [0, 1)")
        return rates

    @field_validator("seed")
    @classmethod
    def _seeds_non_negative(cls, seeds: list[int]) -> list[int]:
        if any(seed < 0 for seed in seeds):
            raise ValueError("seeds must be >= 0")
        return seeds


class OptimizerParams(_Strict):
    name: Literal["rmsprop", "sgd", "adam"]
    learning_rate: float = Field(gt=0)
    momentum: float = Field(default=0.0, ge=0, lt=1)  # sgd and rmsprop only
    nesterov: bool = False  # sgd only


class TrainParams(_Strict):
    architecture: Architecture  # a seed article's model, layer for layer (pipeline/models.py)
    optimizer: OptimizerParams
    epochs: int = Field(ge=1)
    batch_size: int = Field(ge=1)
    evals_per_epoch: int = Field(ge=1)  # validation passes per epoch: the resolution of steps-to-target
    bn_momentum: float = Field(gt=0, lt=1)  # moving-statistics decay of BatchNormalization
    bn_epsilon: float = Field(gt=0)


class TargetParams(_Strict):
    """Validation accuracies whose first crossing measures convergence speed, per dataset."""

    cifar10: list[float] = Field(min_length=1)
    fashion_mnist: list[float] = Field(min_length=1)

    @field_validator("*")
    @classmethod
    def _whole_percents(cls, targets: list[float]) -> list[float]:
        _unique(targets)
        for target in targets:
            if not 0 < target < 1 or abs(target * 100 - round(target * 100)) > 1e-9:
                raise ValueError(f"target {target} is not a whole percentage in (0, 1), e.g. 0.55")
        return sorted(targets)


class ReportParams(_Strict):
    confidence: float = Field(gt=0.5, lt=1)  # level of every confidence interval in the report


class Params(_Strict):
    study: StudyParams
    prepare: PrepareParams
    matrix: MatrixParams
    train: TrainParams
    targets: TargetParams
    report: ReportParams


def _format_errors(path: Path, error: ValidationError) -> str:
    lines = [f"{path}: {error.error_count()} invalid setting(s):"]
    for item in error.errors():
        key = ".".join(str(part) for part in item["loc"]) or "(top level)"
        if item["type"] == "extra_forbidden":
            lines.append(f"  {key}: unknown key (a typo? see the keys in the shipped params.yaml)")
        elif item["type"] == "missing":
            lines.append(f"  {key}: required key is missing")
        else:
            lines.append(f"  {key}: {item['msg']} (got {item['input']!r})")
    return "\n".join(lines)


def parse_params(raw: object, source: Path) -> Params:
    try:
        return Params.model_validate(raw)
    except ValidationError as error:
        raise ParamsError(_format_errors(source, error)) from None


def load_params(path: str | Path = "params.yaml") -> Params:
    path = Path(path)
    try:
        # YAML 1.2, as DVC reads it: `off` stays the string "off".
        raw = YAML(typ="safe", pure=True).load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ParamsError(f"{path}: file not found (run from the repository root)") from None
    except YAMLError as error:
        raise ParamsError(f"{path}: not valid YAML: {error}") from None
    return parse_params(raw, path)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Validate a bnbench params file.")
    parser.add_argument("params", nargs="?", default="params.yaml")
    args = parser.parse_args(argv)
    try:
        params = load_params(args.params)
    except ParamsError as error:
        print(error, file=sys.stderr)
        return 2
    m = params.matrix
    cells = len(m.dataset) * len(m.activation) * len(m.bn) * len(m.dropout) * len(m.seed)
    print(f"{args.params}: valid, {cells} training cells")
    return 0


if __name__ == "__main__":
    sys.exit(main())
