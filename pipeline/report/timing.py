"""Which runs' seconds a verdict in seconds may compare.

A time in seconds measures the machine as much as the configuration. A verdict on seconds (time
to target in seconds, seconds per epoch, throughput) uses only runs whose timing is comparable:
- not resumed: a resumed cell adds two processes and a second compilation (`timing_comparable`
  false in its metrics.json, pipeline/cell/training.py);
- not sharing its device with another cell while it trained (`device_shared` true in its
  metrics.json; a run that does not record it is counted as not known, and kept);
- on the same device and backend as most of the others (`device`: "jax: cuda:0").
The page says how many runs each rule left out.
"""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

SHARED = "device_shared"  # metrics.json: whether another cell trained on the same device at the same time
COMPARABLE = "timing_comparable"  # metrics.json: false for a resumed cell


@dataclass(frozen=True)
class TimedRuns:
    kept: pd.DataFrame
    resumed: int  # left out: resumed cells
    shared: int  # left out: cells that shared their device
    other_device: int  # left out: cells on another device (or backend) than `device`
    device: str | None  # the device (and backend) the kept runs trained on
    sharing_unknown: int  # kept runs that do not record whether they shared their device

    @property
    def left_out(self) -> int:
        return self.resumed + self.shared + self.other_device


def _flag(rows: pd.DataFrame, column: str) -> pd.Series:
    """True/False where recorded, NA where not (older outputs, or a producer that does not write it)."""
    if column not in rows:
        return pd.Series(pd.NA, index=rows.index, dtype="boolean")
    return rows[column].map(lambda v: pd.NA if v is None or pd.isna(v) else bool(v)).astype("boolean")


def _device_kind(rows: pd.DataFrame) -> pd.Series:
    # `device` names the backend and the accelerator ("jax: cuda:0", "tensorflow: cpu (x86_64, 2 cores)")
    return rows["device"].astype(str) if "device" in rows else pd.Series("not recorded", index=rows.index)


def comparable_timing(rows: pd.DataFrame) -> TimedRuns:
    """The runs whose seconds compare, and how many each rule left out."""
    resumed = _flag(rows, COMPARABLE).eq(False).fillna(False).to_numpy(dtype=bool)
    shared = _flag(rows, SHARED).eq(True).fillna(False).to_numpy(dtype=bool) & ~resumed
    rest = rows[~(resumed | shared)]
    kinds = _device_kind(rest)
    # the most frequent device; ties to the first in sorted order, so the same runs give the same choice
    device = str(sorted(kinds.value_counts().items(), key=lambda kv: (-kv[1], kv[0]))[0][0]) if len(kinds) else None
    same = (kinds == device).to_numpy(dtype=bool)
    kept = rest[same]
    return TimedRuns(
        kept=kept,
        resumed=int(resumed.sum()),
        shared=int(shared.sum()),
        other_device=int((~same).sum()),
        device=device,
        sharing_unknown=int(_flag(kept, SHARED).isna().sum()),
    )
