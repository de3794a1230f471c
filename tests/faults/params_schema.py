"""The params schema read from itself: every key, its type and bounds, and values inside and outside them.

`SETTINGS` walks pipeline.study.schema.Params through `model_fields`, so a key added to the schema is in it
(and attacked by tests/faults/test_params.py) without touching this file. What the field metadata
cannot say, a rule written by hand says: the checks of an `AfterValidator` (`CHECKS`) and the settings
a `model_validator` ties together (`TIED`); `test_every_rule_of_the_schema_is_known` fails on one not
listed there, so no new rule goes unattacked.
"""

from __future__ import annotations

import math
import re
import types
import typing
from dataclasses import dataclass, field
from typing import Annotated, Literal, Union, get_args, get_origin

import annotated_types
from hypothesis import strategies as st
from pydantic import BaseModel
from pydantic.fields import FieldInfo

from pipeline.study import schema

BOUND_WORDS = {
    annotated_types.Ge: "greater than or equal to",
    annotated_types.Gt: "greater than",
    annotated_types.Le: "less than or equal to",
    annotated_types.Lt: "less than",
}
# How pydantic names each type when a value has another one (its "Input should be a valid ..." message).
TYPE_WORDS = {
    int: "valid integer",
    float: "valid number",
    bool: "valid boolean",
    str: "valid string",
    list: "valid list",
}


@dataclass(frozen=True)
class Setting:
    """One key of params.yaml, as the schema declares it."""

    path: str  # dotted, as a user writes it: train.optimizer.learning_rate
    kind: type  # int, float, bool, str, list, or Literal for a choice
    required: bool = False
    nullable: bool = False  # `null` is a valid value
    choices: tuple = ()  # a Literal's
    bounds: tuple = ()  # annotated_types Ge, Gt, Le, Lt
    min_items: int = 0  # a list's (or a string's length)
    pattern: str | None = None
    element: Setting | None = None  # a list's elements
    checks: tuple = field(default=())  # AfterValidator functions

    @property
    def parts(self) -> tuple[str, ...]:
        return tuple(self.path.split("."))


def _is_model(annotation: object) -> bool:
    return isinstance(annotation, type) and issubclass(annotation, BaseModel)


def _without_none(annotation: object) -> tuple[object, bool]:
    if get_origin(annotation) in (Union, types.UnionType):
        args = [a for a in get_args(annotation) if a is not type(None)]
        if len(args) == 1:
            return args[0], len(args) < len(get_args(annotation))
    return annotation, False


def _flatten(metadata: typing.Iterable) -> list:
    flat = []
    for item in metadata:
        flat += _flatten(item.metadata) if isinstance(item, FieldInfo) else [item]
    return flat


def describe(path: str, annotation: object, metadata: list, required: bool) -> Setting:
    """A setting from its annotation and its field's metadata (bounds, lengths, patterns, validators)."""
    annotation, nullable = _without_none(annotation)
    metadata = _flatten(metadata)
    if get_origin(annotation) is Annotated:
        annotation, *inner = get_args(annotation)
        metadata += _flatten(inner)
    known = dict(
        path=path,
        required=required,
        nullable=nullable,
        bounds=tuple(m for m in metadata if type(m) in BOUND_WORDS),
        min_items=next((m.min_length for m in metadata if isinstance(m, annotated_types.MinLen)), 0),
        pattern=next((m.pattern for m in metadata if getattr(m, "pattern", None)), None),
        checks=tuple(m.func for m in metadata if type(m).__name__ == "AfterValidator"),
    )
    if get_origin(annotation) is Literal:
        return Setting(kind=Literal, choices=get_args(annotation), **known)
    if get_origin(annotation) is list:
        (element,) = get_args(annotation)
        return Setting(kind=list, element=describe(f"{path}.0", element, [], True), **known)
    if annotation in (int, float, bool, str):
        return Setting(kind=annotation, **known)
    raise TypeError(f"{path}: a type this walk does not know ({annotation}); teach tests/faults/params_schema.py")


def walk(model: type[BaseModel], prefix: str = "") -> tuple[list[Setting], dict[str, tuple[str, ...]]]:
    """Every leaf setting under `model`, and every section: its path and the keys it allows."""
    settings: list[Setting] = []
    sections = {prefix: tuple(model.model_fields)}
    for name, info in model.model_fields.items():
        path = f"{prefix}.{name}" if prefix else name
        annotation, _ = _without_none(info.annotation)
        if _is_model(annotation):
            inner, inner_sections = walk(annotation, path)
        elif get_origin(annotation) is dict and _is_model(get_args(annotation)[1]):
            keys, section = get_args(annotation)  # targets: {dataset: DatasetTargets}
            inner, inner_sections = [], {path: get_args(keys)}
            for key in get_args(keys):
                more, more_sections = walk(section, f"{path}.{key}")
                inner, inner_sections = inner + more, inner_sections | more_sections
        elif path == "matrix":  # its keys are axes: tests/faults/test_params.py attacks them apart
            continue
        else:
            settings.append(describe(path, info.annotation, info.metadata, info.is_required()))
            continue
        settings += inner
        sections |= inner_sections
    return settings, sections


SETTINGS, SECTIONS = walk(schema.Params)
BY_PATH = {s.path: s for s in SETTINGS}
TRAIN_SETTINGS, _ = walk(schema.TrainParams, "train")
# The axes a matrix may have: the cell's own (CellSettings less `train`), and every leaf of train.
CELL_AXES = {
    name: describe(name, info.annotation, info.metadata, True)
    for name, info in schema.CellSettings.model_fields.items()
    if name != "train"
}
AXES = {**CELL_AXES, **{s.path: s for s in TRAIN_SETTINGS}}
# Settings that a model_validator ties together: a valid value of one depends on the others.
TIED = {
    "train.optimizer": (
        "train.optimizer.name",
        "train.optimizer.momentum",
        "train.optimizer.nesterov",
        "train.optimizer.epsilon_placement",
    )
}


def model_validators(model: type[BaseModel], prefix: str = "") -> set[str]:
    """The sections (paths) whose model has a model_validator."""
    found = {prefix} if model.__pydantic_decorators__.model_validators else set()
    for name, info in model.model_fields.items():
        annotation, _ = _without_none(info.annotation)
        if _is_model(annotation):
            found |= model_validators(annotation, f"{prefix}.{name}" if prefix else name)
    return found


# --- values inside the schema --------------------------------------------------------------------


def _number_range(setting: Setting) -> dict:
    limits: dict = {}
    for bound in setting.bounds:
        if isinstance(bound, annotated_types.Ge | annotated_types.Gt):
            limits["min_value"] = bound.ge if isinstance(bound, annotated_types.Ge) else bound.gt
            limits["exclude_min"] = isinstance(bound, annotated_types.Gt)
        else:
            limits["max_value"] = bound.le if isinstance(bound, annotated_types.Le) else bound.lt
            limits["exclude_max"] = isinstance(bound, annotated_types.Lt)
    return limits


def _whole_percents() -> st.SearchStrategy:
    return st.lists(st.integers(1, 99), min_size=1, max_size=4, unique=True).map(lambda ks: [k / 100 for k in ks])


def _loss_levels() -> st.SearchStrategy:
    level = st.builds(lambda m, e: float(f"{m}e{e}"), st.integers(1, 999), st.integers(-4, 1))
    return st.lists(level, max_size=3, unique=True)


def _sweep_grid() -> st.SearchStrategy:
    # The lowest rate, how many decades above it (at least the three a sweep needs), and points between.
    def grid(low: int, decades: int, between: list[int]) -> list[float]:
        return sorted({10.0**low, 10.0 ** (low + decades), *(10.0 ** (low + k) for k in between if k < decades)})

    return st.builds(grid, st.integers(-6, -2), st.integers(3, 5), st.lists(st.integers(1, 4), max_size=3))


def _each(*cases: tuple[object, str]) -> st.SearchStrategy:
    return st.sampled_from(cases)


# A setting with an AfterValidator's own rule: its valid values, and bad ones each with the words of its message.
CHECKS = {
    schema._unique: None,  # duplicates: a category of its own (test_a_duplicate_in_a_list_is_named)
    schema._whole_percents: (
        _whole_percents,
        _each(*(([v], "whole percentage in (0, 1)") for v in (0.555, 0.0, 1.0, 1.5, -0.5, 0.55001))),
    ),
    schema._loss_levels: (
        _loss_levels,
        _each(*(([v], "at most 3 significant digits") for v in (1.2345, 0.0, -1.0, 0.00012345, 1.3001))),
    ),
    schema._sweep_grid: (
        _sweep_grid,
        _each(
            ([0.001, 0.01], "a sweep needs at least 3"),
            ([0.001, 0.1, 0.5], "a sweep needs at least 3"),
            ([-0.01, 0.1, 10.0], "must be positive"),
            ([0.0, 0.001, 1.0], "must be positive"),
        ),
    ),
    schema._validation_quantity: (
        lambda: st.sampled_from(sorted(schema.SWEEP_SCORES)),
        _each(*((v, "use one of " + ", ".join(schema.SWEEP_SCORES)) for v in ("test_accuracy", "val_loss", ""))),
    ),
}


def _own_check(setting: Setting):
    """The hand-written rule of a setting's AfterValidator, if it has one beyond refusing duplicates."""
    rules = [CHECKS[check] for check in setting.checks if CHECKS.get(check) is not None]
    return rules[0] if rules else None


def valid(setting: Setting) -> st.SearchStrategy:
    """Values the schema accepts for `setting`."""
    rule = _own_check(setting)
    if rule is not None:
        values = rule[0]()
    elif setting.kind is Literal:
        values = st.sampled_from(setting.choices)
    elif setting.kind is bool:
        values = st.booleans()
    elif setting.kind is int:
        limits = _number_range(setting)
        low = limits.get("min_value", -(10**6)) + limits.get("exclude_min", False)
        values = st.integers(low, limits.get("max_value", low + 10**6) - limits.get("exclude_max", False))
    elif setting.kind is float:
        values = st.floats(allow_nan=False, allow_infinity=False, **_number_range(setting))
    elif setting.kind is str:
        values = st.from_regex(setting.pattern or r"[a-z]+", fullmatch=True).filter(
            lambda s: len(s) >= setting.min_items
        )
    else:
        values = st.lists(valid(setting.element), min_size=max(setting.min_items, 1), max_size=3, unique_by=repr)
    return st.one_of(st.none(), values) if setting.nullable else values


# --- values outside it, each with the words its message must hold ----------------------------------

TEXT = st.text(alphabet="abcxyz0123456789.-_ ", max_size=8)
MAPPING = st.dictionaries(st.sampled_from(["a", "value"]), st.integers(0, 3), min_size=1, max_size=2)
NOT_OF_TYPE = {
    int: st.one_of(
        st.booleans(), st.floats(allow_nan=False, allow_infinity=False), TEXT, st.lists(st.integers(0, 9)), MAPPING
    ),
    float: st.one_of(st.booleans(), TEXT, st.lists(st.floats(0, 1)), MAPPING),
    bool: st.one_of(st.integers(), st.floats(allow_nan=False), st.sampled_from(["yes", "true", "on", "1"]), MAPPING),
    str: st.one_of(st.integers(), st.floats(allow_nan=False), st.booleans(), st.lists(TEXT, max_size=2), MAPPING),
    list: st.one_of(st.integers(), TEXT.filter(bool), st.booleans(), MAPPING),
}


# Each attack below: None where it does not apply to the setting, else a strategy of (bad value, words
# that its message must hold: what is allowed).


def _allowed_choices(setting: Setting) -> tuple[str, ...]:
    return tuple(repr(c) for c in setting.choices)


def _with(values: st.SearchStrategy, *words: str) -> st.SearchStrategy:
    return values.map(lambda v: (v, words))


def _listed(setting: Setting, values: st.SearchStrategy) -> st.SearchStrategy:
    """A bad element, as the list the setting is, where it is one."""
    return values.map(lambda v: [v]) if setting.kind is list else values


def wrong_type(setting: Setting) -> st.SearchStrategy:
    kind = str if setting.kind is Literal else setting.kind
    values = NOT_OF_TYPE[kind] if setting.nullable else st.one_of(st.none(), NOT_OF_TYPE[kind])
    if setting.kind is Literal:
        return _with(values.filter(lambda v: v not in setting.choices), *_allowed_choices(setting))
    if setting.kind is list:  # the list itself, or one of its elements
        return st.one_of(_with(values, TYPE_WORDS[list]), wrong_type(setting.element).map(lambda c: ([c[0]], c[1])))
    return _with(values, TYPE_WORDS[kind])


def _bound_value(bound: annotated_types.BaseMetadata) -> float:
    return getattr(bound, type(bound).__name__.lower())


def _beyond(kind: type, bound: annotated_types.BaseMetadata) -> st.SearchStrategy:
    """Values on the wrong side of one bound."""
    limit, lower = _bound_value(bound), isinstance(bound, annotated_types.Ge | annotated_types.Gt)
    inclusive = isinstance(bound, annotated_types.Ge | annotated_types.Le)  # the limit itself is allowed
    if kind is int:
        return st.integers(max_value=limit - inclusive) if lower else st.integers(min_value=limit + inclusive)
    if lower:
        return st.floats(max_value=limit, exclude_max=inclusive, allow_infinity=False, allow_nan=False)
    return st.floats(min_value=limit, exclude_min=inclusive, allow_infinity=False, allow_nan=False)


def out_of_range(setting: Setting) -> st.SearchStrategy | None:
    target = setting.element if setting.kind is list else setting
    if target.kind not in (int, float) or not target.bounds:
        return None
    # One bound at a time, and the message must state that bound.
    return st.one_of(
        *(
            _with(_listed(setting, _beyond(target.kind, b)), f"{BOUND_WORDS[type(b)]} {_bound_value(b)}")
            for b in target.bounds
        )
    )


def not_finite(setting: Setting) -> st.SearchStrategy | None:
    target = setting.element if setting.kind is list else setting
    if target.kind is not float:
        return None
    return _with(_listed(setting, st.sampled_from([math.nan, math.inf, -math.inf])), "finite number")


def unknown_choice(setting: Setting) -> st.SearchStrategy | None:
    rule = _own_check(setting)
    if setting.kind is Literal:
        return _with(TEXT.filter(lambda v: v not in setting.choices), *_allowed_choices(setting))
    if setting.kind is str and rule is not None:
        return rule[1].map(lambda case: (case[0], (case[1],)))
    if setting.kind is str and setting.pattern:
        return _with(TEXT.filter(lambda v: v and not re.fullmatch(setting.pattern, v)), setting.pattern)
    if setting.kind is list and setting.element.pattern:
        pattern = setting.element.pattern
        return _with(_listed(setting, TEXT.filter(lambda v: not re.fullmatch(pattern, v))), pattern)
    return None


def broken_rule(setting: Setting) -> st.SearchStrategy | None:
    """A list that breaks its AfterValidator's own rule (a whole percentage, 3 significant digits, ...)."""
    rule = _own_check(setting)
    if setting.kind is not list or rule is None:
        return None
    return rule[1].map(lambda case: (case[0], (case[1],)))


def empty(setting: Setting) -> st.SearchStrategy | None:
    if setting.kind is not list or setting.min_items < 1:
        return None
    return _with(st.just([]), f"at least {setting.min_items} item")


def duplicated(setting: Setting) -> st.SearchStrategy | None:
    if setting.kind is not list:
        return None
    return _with(valid(setting.element).map(lambda v: [v, v]), "duplicate")


ATTACKS = {
    "wrong type": wrong_type,
    "out of range": out_of_range,
    "not finite": not_finite,
    "unknown choice": unknown_choice,
    "own rule broken": broken_rule,
    "empty list": empty,
    "duplicate": duplicated,
}


def required_paths(model: type[BaseModel] = schema.Params, prefix: str = "") -> list[str]:
    """Every key (leaf or section) that params.yaml must hold, its section being there."""
    paths = []
    for name, info in model.model_fields.items():
        path = f"{prefix}.{name}" if prefix else name
        if info.is_required():
            paths.append(path)
        annotation, _ = _without_none(info.annotation)
        if _is_model(annotation):
            paths += required_paths(annotation, path)
    return paths
