"""The file the choose stage writes and tuned cells read: the learning rate chosen per configuration.

Its own module, so that the training stages depend on how the file is read, not on the
rule that chose (pipeline/study/choice.py): a change to the rule re-runs choose, and the tuned
cells only where a chosen rate changed.
"""

from __future__ import annotations

import json
from pathlib import Path

from pipeline.errors import UserError


def read_chosen(path: Path) -> dict:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise UserError(
            f"{path}: no readable chosen learning rates ({error}); run `dvc repro` (its stage choose)"
        ) from None


def chosen_rate(chosen: dict, configuration: str, source: Path) -> float:
    entry = chosen.get("configurations", {}).get(configuration)
    if entry is None:
        raise UserError(f"{source} has no learning rate chosen for {configuration}; run `dvc repro` (its stage choose)")
    return float(entry["learning_rate"])
