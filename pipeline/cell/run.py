"""Run one cell end to end: load its data, train it, record it with its tracker, write its outputs.

The one entry point for training a cell; the DVC `train` stage (pipeline/train.py) calls it, and
so does the runner's worker, which trains many cells in one warm process. The stage hands it a
`Tracker` (pipeline/tracking/runs.py: MLflow): this package never imports tracking, so that the
cells' code digest (pipeline/study/code.py) does not cover it.

Interruptions: the cell checkpoints each epoch under <checkpoints>/ (pipeline/cell/checkpoints.py)
and a new start resumes from there; runs of the cell that a killed process left open in the
tracker are ended first; a SIGTERM ends the cell's run as FAILED, as Ctrl-C does.
"""

from __future__ import annotations

import json
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Protocol

import pandas as pd

from pipeline.cell.backend import apply_determinism
from pipeline.cell.checkpoints import cell_checkpoint
from pipeline.cell.convergence import target_metrics
from pipeline.cell.device import check_device, device_shared
from pipeline.cell.interrupts import sigterm_raises
from pipeline.cell.outputs import CellOutputs, write_cell_outputs
from pipeline.cell.training import train_cell
from pipeline.data.prepared import load_prepared
from pipeline.errors import UserError
from pipeline.provenance import git_commit
from pipeline.study.cells import Cell, cell_settings
from pipeline.study.schema import CellSettings, Params


class RunLog(Protocol):
    """A cell's open run: what it logs while it trains and when it ends."""

    def log_eval(self, row: dict) -> None: ...

    def log_steps(self, steps: pd.DataFrame) -> None: ...

    def finish(self, summary: dict, target_metrics: dict, artifacts: list[Path]) -> None: ...

    def log_model(self, model) -> None: ...


class Tracker(Protocol):
    """Where a study's cells are recorded as runs."""

    def check(self) -> None:
        """Fail now, before any training, when runs cannot be recorded (one message)."""

    def end_stale_runs(self, cell: Cell, lr_policy: str) -> None:
        """End the runs of this cell that a killed process left open."""

    def open_run(
        self, cell: Cell, settings: CellSettings, data_meta: dict, device: str, lr_policy: str
    ) -> AbstractContextManager[RunLog]:
        """The cell's run while the block trains: ended FINISHED, or FAILED if the block raises."""


def run_cell(
    params: Params,
    cell: Cell,
    data_dir: Path,
    out_dir: Path,
    tracker: Tracker,
    checkpoints_dir: Path,
    settings: CellSettings | None = None,
    lr_policy: str = "fixed",
) -> dict:
    """Train `cell` of the study `params` on the prepared data in `data_dir`; returns its summary.

    `settings` default to the cell's as the study gives them; a sweep or tuned cell passes its
    own (another rate, or the sweep's budget), with `lr_policy` "sweep" or "tuned" saying which
    (pipeline/cell/resolve.py).
    """
    if not (data_dir / "meta.json").is_file():
        raise UserError(
            f"{data_dir}: no prepared data; run `dvc repro` for the study first (its stage prepare@{cell.dataset})"
        )
    prepared = json.loads((data_dir / "meta.json").read_text(encoding="utf-8")).get("dataset")
    if prepared != cell.dataset:
        raise UserError(f"{data_dir} holds {prepared} data, but cell {cell.name} trains on {cell.dataset}")
    tracker.check()  # seconds now, not after the training
    settings = cell_settings(params, cell) if settings is None else settings
    apply_determinism(settings.train.deterministic)  # before check_device starts the backend: XLA reads its flags once
    device = check_device()
    data = load_prepared(data_dir)
    checkpoint = cell_checkpoint(
        checkpoints_dir, params.study.name, cell.name, settings, data.meta["data_digest"], lr_policy
    )
    checkpoint.discard_others()  # of other settings or code: never resumed
    tracker.end_stale_runs(cell, lr_policy)
    with sigterm_raises(), tracker.open_run(cell, settings, data.meta, device, lr_policy) as run:
        result = train_cell(settings, data, on_eval=run.log_eval, checkpoints=checkpoint)
        summary = {
            "cell": cell.name,
            "axes": cell.as_dict(),
            "settings": settings.model_dump(),
            "lr_policy": lr_policy,
            **result.summary,
            "data_digest": data.meta["data_digest"],
            "published_data": data.meta["published_data"],
            # the images of each split it used, so the report can say what it ran (train_examples, ...)
            **{f"{split}_examples": int(n) for split, n in data.meta["examples"].items()},
            "device": device,
            "device_shared": device_shared(),  # seconds measured beside other cells compare with no others'
            "git_commit": git_commit(),
        }
        paths = write_cell_outputs(out_dir, CellOutputs(summary, result.history, result.steps))
        checkpoint.clear()  # the outputs hold the result; a later run of the stage trains afresh
        run.log_steps(result.steps)
        if settings.train.log_model:
            run.log_model(result.model)
        # Times to the study's targets go to the tracker only: the report recomputes them, since
        # targets can change without retraining.
        times = target_metrics(
            result.history, params.targets_for(cell.dataset), result.steps, params.report.loss_window
        )
        run.finish(summary, times, paths)
    return summary
