"""What a study measures convergence against: a target accuracy or training loss, and its metric key.

The values come from params (`targets:`, else the dataset's defaults); the times to reach them are
computed in pipeline/cell/convergence.py, and their keys name the columns and metrics everywhere.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

VAL_ACCURACY, TRAIN_LOSS = "val_accuracy", "train_loss"


@dataclass(frozen=True)
class Target:
    quantity: Literal["val_accuracy", "train_loss"]
    value: float

    @property
    def key(self) -> str:
        return target_key(self)

    @property
    def label(self) -> str:
        """How the report shows it: "0.5" for an accuracy, "loss 1.3" for a training loss."""
        return f"{self.value:g}" if self.quantity == VAL_ACCURACY else f"loss {self.value:g}"


def target_key(target: Target | float) -> str:
    """Metric-name form of a target: accuracy 0.55 -> "acc55", training loss 1.3 -> "loss1p3"."""
    if isinstance(target, Target) and target.quantity == TRAIN_LOSS:
        return "loss" + f"{target.value:g}".replace(".", "p")
    value = target.value if isinstance(target, Target) else target
    return f"acc{round(value * 100)}"
