"""What every dataset parser returns: the arrays only; names and shapes are in the descriptor."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from pipeline.errors import UserError


class FormatError(UserError):
    """A file is not in the format its name promises."""


@dataclass(frozen=True)
class RawDataset:
    train_images: np.ndarray  # (N, H, W, C) uint8
    train_labels: np.ndarray  # (N,) uint8
    test_images: np.ndarray
    test_labels: np.ndarray
