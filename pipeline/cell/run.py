"""Run a cell, or a group of cells, end to end: load the data, train, record each with its tracker, write outputs.

The one entry point for training cells: `run_cell` for the DVC `train` stage (pipeline/train.py)
and the runner's one-cell worker; `run_group` for the runner's group engine (pipeline/cell/group.py),
the same steps for each member around one training. The stage hands each cell a `Tracker`
(pipeline/tracking/runs.py: MLflow): this package never imports tracking, so that the cells' code
digest (pipeline/study/code.py) does not cover it.

Interruptions: the cell checkpoints each epoch under <checkpoints>/ (pipeline/cell/checkpoints.py)
and a new start resumes from there; runs of the cell that a killed process left open in the
tracker are ended first; a SIGTERM ends the cell's run as FAILED, as Ctrl-C does.
"""

from __future__ import annotations

import json
from contextlib import AbstractContextManager, ExitStack
from dataclasses import dataclass
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


def _check_data(data_dir: Path, cell: Cell) -> None:
    if not (data_dir / "meta.json").is_file():
        raise UserError(
            f"{data_dir}: no prepared data; run `dvc repro` for the study first (its stage prepare@{cell.dataset})"
        )
    prepared = json.loads((data_dir / "meta.json").read_text(encoding="utf-8")).get("dataset")
    if prepared != cell.dataset:
        raise UserError(f"{data_dir} holds {prepared} data, but cell {cell.name} trains on {cell.dataset}")


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
    member = Member(cell, cell_settings(params, cell) if settings is None else settings, lr_policy, out_dir, tracker)
    return run_group(params, [member], data_dir, checkpoints_dir, engine="one-cell")[0]


@dataclass(frozen=True)
class Member:
    """A cell as a stage trains it: its settings, where its outputs go and where its run is recorded."""

    cell: Cell
    settings: CellSettings
    lr_policy: str
    out_dir: Path
    tracker: Tracker


def run_group(
    params: Params, members: list[Member], data_dir: Path, checkpoints_dir: Path, engine: str = "group"
) -> list[dict]:
    """Train cells of one study on the prepared data in `data_dir`; returns their summaries, in order.

    engine "one-cell": one member, Keras' fit (`train_cell`); "group": members that share a
    `group_key` as one program (pipeline/cell/group.py, Keras on JAX). Every member gets its own run,
    checkpoints and outputs, as if it had trained alone; if training raises, every member's run ends FAILED.
    """
    for member in members:
        _check_data(data_dir, member.cell)
        member.tracker.check()  # seconds now, not after the training
    train = members[0].settings.train
    apply_determinism(train.deterministic)  # before check_device starts the backend: XLA reads its flags once
    device = check_device()
    data = load_prepared(data_dir)
    checkpoints = []
    for member in members:
        checkpoint = cell_checkpoint(
            checkpoints_dir, params.study.name, member.cell.name, member.settings, data.meta["data_digest"],
            member.lr_policy,
        )  # fmt: skip
        checkpoint.discard_others()  # of other settings or code: never resumed
        member.tracker.end_stale_runs(member.cell, member.lr_policy)
        checkpoints.append(checkpoint)
    with sigterm_raises(), ExitStack() as stack:
        runs = [
            stack.enter_context(m.tracker.open_run(m.cell, m.settings, data.meta, device, m.lr_policy)) for m in members
        ]
        if engine == "one-cell":
            [member] = members
            results = [train_cell(member.settings, data, on_eval=runs[0].log_eval, checkpoints=checkpoints[0])]
        else:
            from pipeline.cell.group import train_group  # JAX only

            results = train_group(
                [m.settings for m in members], data, on_evals=[r.log_eval for r in runs], checkpoints=checkpoints
            )
        shared = device_shared() or len(members) > 1  # seconds measured beside other cells compare with no others'
        return [
            _record(params, member, run, result, data.meta, device, shared, checkpoint)
            for member, run, result, checkpoint in zip(members, runs, results, checkpoints, strict=True)
        ]


def _record(params: Params, member: Member, run: RunLog, result, meta: dict, device: str, shared: bool, checkpoint):
    """A trained member's summary, outputs and run; its checkpoint cleared."""
    cell, settings = member.cell, member.settings
    summary = {
        "cell": cell.name,
        "axes": cell.as_dict(),
        "settings": settings.model_dump(),
        "lr_policy": member.lr_policy,
        **result.summary,
        "data_digest": meta["data_digest"],
        "published_data": meta["published_data"],
        # the images of each split it used, so the report can say what it ran (train_examples, ...)
        **{f"{split}_examples": int(n) for split, n in meta["examples"].items()},
        "device": device,
        "device_shared": shared,
        "git_commit": git_commit(),
    }
    paths = write_cell_outputs(member.out_dir, CellOutputs(summary, result.history, result.steps))
    checkpoint.clear()  # the outputs hold the result; a later run of the stage trains afresh
    run.log_steps(result.steps)
    if settings.train.log_model:
        run.log_model(result.model)
    # Times to the study's targets go to the tracker only: the report recomputes them, since
    # targets can change without retraining.
    times = target_metrics(result.history, params.targets_for(cell.dataset), result.steps, params.report.loss_window)
    run.finish(summary, times, paths)
    return summary
