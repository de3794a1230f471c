"""The study's settings: one typed, frozen schema for params.yaml and its overlays.

A study's settings are params.yaml with its overlay (studies/<name>/params.yaml,
only the keys it changes) laid over it. Every stage loads them whole through
`load_params`, so a wrong key or value anywhere stops the first stage that runs,
before it does any work. `matrix:` names the axes; a cell's settings are the
study's with its axis values applied (`apply_axes`), validated by the same schema.
Check a study by hand with `uv run bnbench check [studies/<name>/params.yaml]` (or
`python -m pipeline.study.params ...`): an overlay given alone is laid over the root params.yaml.
The schema itself is pipeline/study/schema.py; axes, pipeline/study/axes.py.
"""

from __future__ import annotations

import argparse
import itertools
import math
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import get_args, get_origin

from pydantic import BaseModel, ValidationError
from ruamel.yaml import YAML, YAMLError

from pipeline.errors import UserError, command_main, run_cli
from pipeline.study.axes import CELL_AXES, apply_axes, format_value, is_axis_key, is_model, read_dotted
from pipeline.study.schema import LEARNING_RATE, Params, StudyParams

STUDY_NAME_PREFIX = "bnbench-"  # a study's MLflow experiment: bnbench-<its folder> unless its overlay names it


class ParamsError(UserError):
    """params.yaml is missing, unreadable or breaks the schema; the message names the key."""


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


def _section_at(path: Sequence[str | int]) -> type[BaseModel] | None:
    """The schema's section (a model) at a key path of params.yaml, e.g. ("targets", "cifar10"); None: not one."""
    model: object = Params
    parts = iter(path)
    for part in parts:
        field = model.model_fields.get(part) if is_model(model) else None
        if field is None:
            return None
        model = field.annotation
        if get_origin(model) is dict:  # targets: {dataset: its section}; the next part is the dataset
            model = get_args(model)[1]
            if next(parts, None) is None:
                return None  # the mapping of datasets itself
        else:  # `sweep: null` is allowed: SweepParams | None is the section SweepParams
            model = next((arg for arg in get_args(model) if is_model(arg)), model)
    return model if is_model(model) else None


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
    for index, path in enumerate(paths):
        layer = _read_yaml(path)
        raw = merge(raw, layer if index == 0 else _named_overlay(layer, path))
    return parse_params(raw, " + ".join(str(p) for p in paths))


def _named_overlay(layer: dict, path: Path) -> dict:
    """An overlay without `study.name` is named after its folder, as every study is (bnbench-<folder>).

    Without it, it would inherit the base's name and log its cells into the main study's MLflow experiment.
    """
    section = layer.get("study")
    if section is not None and not isinstance(section, dict) or "name" in (section or {}):
        return layer  # named, or a section the schema will refuse with its own message
    folder = path.resolve().parent.name
    name = f"{STUDY_NAME_PREFIX}{folder}"
    try:
        StudyParams(name=name)
    except ValidationError:
        raise ParamsError(
            f"{path}: study.name is not set and the folder name {folder!r} cannot make one (letters, digits, _ . - "
            "only); set study.name in this file, or rename the folder"
        ) from None
    return merge(layer, {"study": {"name": name}})


def with_root_params(files: Sequence[str | Path]) -> list[Path]:
    """The files as a study reads them: an overlay given alone is laid over its repository's params.yaml."""
    paths = [Path(f) for f in files] or [Path("params.yaml")]
    first = paths[0].resolve()
    if first.name == "params.yaml" and first.parent.parent.name == "studies":  # studies/<name>/params.yaml
        root = first.parent.parent.parent / "params.yaml"
        if root.is_file():
            return [Path(os.path.relpath(root)), *paths]
    return paths


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "params",
        nargs="*",
        default=["params.yaml"],
        help="files, each laid over the ones before; a study's overlay (studies/<name>/params.yaml) given first "
        "is laid over the root params.yaml, as its pipeline reads it",
    )


def run_command(args: argparse.Namespace) -> int:
    paths = with_root_params(args.params)
    params = load_params(*paths)
    cells = math.prod(len(values) for values in params.matrix.values())
    shown = " + ".join(str(p) for p in paths)
    print(f"{shown}: valid, study {params.study.name}, {cells} training cells over {', '.join(params.matrix)}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    return command_main(__doc__, add_arguments, run_command, argv)


if __name__ == "__main__":
    sys.exit(run_cli(main))
