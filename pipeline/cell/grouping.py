"""Which cells may train together as one program (pipeline/cell/group.py): those with equal `group_key`s.

Apart from group.py, so that the runner can group its cells without importing JAX.
"""

from __future__ import annotations

from pipeline.study.schema import CellSettings


def group_key(settings: CellSettings) -> str:
    """What a cell shares with the members of its group: its settings but the seed, rate and initializer.

    Two cells with equal keys train as one program; a learning-rate schedule (`decay`) keeps its rate
    in the key, being a Python constant of the schedule rather than a variable of the optimizer.
    """
    values = settings.model_dump(mode="json")
    values.pop("seed")
    train = values["train"]
    train["kernel_initializer"] = None
    train["log_model"] = None  # what is logged after training, not how it trains
    if train["optimizer"]["decay"] == 0:
        train["optimizer"]["learning_rate"] = None
    return repr(sorted(_flatten(values).items()))


def _flatten(values: dict, prefix: str = "") -> dict:
    flat = {}
    for key, value in values.items():
        if isinstance(value, dict):
            flat.update(_flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat
