"""Run one cell end to end: load its data, train it under MLflow, write its outputs.

The one entry point for training a cell; the DVC `train` stage calls it, and so
does the runner that trains many cells in warm processes.

Interruptions: the cell checkpoints each epoch under .bnbench/checkpoints (pipeline/checkpoints.py)
and a new start resumes from there; runs of the cell that a killed process left RUNNING in MLflow
are marked KILLED first; a SIGTERM ends the cell's run as FAILED, as Ctrl-C does.
"""

from __future__ import annotations

import json
from pathlib import Path

from pipeline.backend import apply_determinism
from pipeline.cell_outputs import CellOutputs, write_cell_outputs
from pipeline.cells import Cell, cell_settings
from pipeline.checkpoints import cell_checkpoint
from pipeline.convergence import target_metrics
from pipeline.data.prepared import load_prepared
from pipeline.device import check_device
from pipeline.errors import UserError
from pipeline.interrupts import sigterm_raises
from pipeline.params import CellSettings, Params
from pipeline.provenance import git_commit
from pipeline.training import train_cell


def run_cell(
    params: Params,
    cell: Cell,
    data_dir: Path,
    out_dir: Path,
    settings: CellSettings | None = None,
    lr_policy: str = "fixed",
) -> dict:
    """Train `cell` of the study `params` on the prepared data in `data_dir`; returns its summary.

    `settings` default to the cell's as the study gives them; a sweep or tuned cell passes its
    own (another rate, or the sweep's budget), with `lr_policy` "sweep" or "tuned" saying which.
    """
    from pipeline import tracking  # MLflow only where it is used: the training library stays importable without it

    if not (data_dir / "meta.json").is_file():
        raise UserError(
            f"{data_dir}: no prepared data; run `dvc repro` for the study first (its stage prepare@{cell.dataset})"
        )
    prepared = json.loads((data_dir / "meta.json").read_text(encoding="utf-8")).get("dataset")
    if prepared != cell.dataset:
        raise UserError(f"{data_dir} holds {prepared} data, but cell {cell.name} trains on {cell.dataset}")
    tracking.check_reachable(tracking.tracking_uri())  # seconds now, not after the training
    settings = cell_settings(params, cell) if settings is None else settings
    apply_determinism(settings.train.deterministic)  # before check_device starts the backend: XLA reads its flags once
    device = check_device()
    data = load_prepared(data_dir)
    root = tracking.repo_root()
    checkpoint = cell_checkpoint(root, params.study.name, cell.name, settings, data.meta["data_digest"], lr_policy)
    checkpoint.discard_others()  # of other settings or code: never resumed
    tracking.mark_stale_runs_killed(params, cell, lr_policy)
    with sigterm_raises(), tracking.track_cell(params, cell, settings, data.meta, device, lr_policy) as run:
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
            "git_commit": git_commit(),
        }
        paths = write_cell_outputs(out_dir, CellOutputs(summary, result.history, result.steps))
        checkpoint.clear()  # the outputs hold the result; a later run of the stage trains afresh
        run.log_steps(result.steps)
        # Times to the study's targets go to MLflow only: the report recomputes them, since
        # targets can change without retraining.
        times = target_metrics(
            result.history, params.targets_for(cell.dataset), result.steps, params.report.loss_window
        )
        run.finish(summary, times, paths)
    return summary
