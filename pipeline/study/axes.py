"""A study's axes: which settings may vary across cells, and a cell's settings from its axis values.

An axis is a key of `matrix:`: one of CELL_AXES, or a leaf setting of `train` by its dotted key
(train.optimizer.learning_rate). A cell's settings are the study's `train` section with the
cell's values set at those keys, validated by the same schema as params.yaml.
"""

from __future__ import annotations

from pydantic import BaseModel

from pipeline.study.schema import CellSettings, TrainParams

# The axes every cell has; any leaf of `train` may be an axis too, by its dotted key.
CELL_AXES = ("dataset", "activation", "bn", "dropout", "seed")


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


def is_model(annotation: object) -> bool:
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
        field = model.model_fields.get(part) if is_model(model) else None
        if field is None:
            return False
        model = field.annotation
    return not is_model(model)


def apply_axes(train: TrainParams, axes: dict[str, object]) -> CellSettings:
    """The settings of the cell with these axis values, validated by the same schema as params.yaml."""
    raw: dict = {"train": train.model_dump()}
    for key, value in axes.items():
        set_dotted(raw, key, value)
    return CellSettings.model_validate(raw)
