"""One of k processes that log a cell of the same study at once, through the cell's own tracking calls.

    python -m tests.faults.tracking_writer <control folder> <index> <params files...>

With <control>/hold present, it stops after its first evaluation instead: writes <control>/held-<index>
(the run's id) and waits to be killed, as a cell killed mid-training. With <control>/hold-delivery
present, its delivery thread stops in its first store call instead (<control>/delivering-<index>),
and the cell, everything logged, waits for it in the run's end (<control>/ending-<index>): a cell
killed mid-delivery.

Loads the study, takes the study's cell number <index>, writes <control>/ready-<index>, waits for
<control>/go (so that all k start together), then runs the cell's tracking as a training cell
does: track_cell, EVALS evaluations, the per-step losses of STEPS steps, finish with one artifact.
Every value is a function of (index, step): `expected_evals` and `expected_steps` give them to the test.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import pandas as pd

from pipeline.repo import repo_root
from pipeline.study.cells import cell_settings, expand_matrix
from pipeline.study.params import load_params
from pipeline.tracking import runs as tracking
from pipeline.tracking.settings import read_tracking_settings
from pipeline.tracking.spool import RunSpool

EVALS = 40
STEPS = 1500  # two log_batch calls' worth of per-step losses
META = {"data_digest": "digest", "published_data": False}


def expected_evals(index: int) -> list[dict]:
    return [
        {"step": 10 * k, "epoch": k / 4, "val_accuracy": (1000 * index + k) / 1e5, "val_loss": 2.0 + index + k / 100}
        for k in range(EVALS)
    ]


def expected_steps(index: int) -> pd.DataFrame:
    return pd.DataFrame({"step": range(1, STEPS + 1), "train_loss": [index + s / 1e4 for s in range(STEPS)]})


def hold_delivery(control: Path, index: int) -> None:
    send, end = RunSpool._send, tracking.CellRun.end

    def held_send(self, client, group):
        (control / f"delivering-{index}").write_text(self.run_id)
        time.sleep(3600)
        send(self, client, group)

    def held_end(self, status):
        (control / f"ending-{index}").write_text(self.run_id)
        end(self, status)

    RunSpool._send, tracking.CellRun.end = held_send, held_end


def main(control: Path, index: int, files: list[Path]) -> None:
    if (control / "hold-delivery").exists():
        hold_delivery(control, index)
    params = load_params(*files)
    cell = expand_matrix(params)[index]
    (control / f"ready-{index}").write_text("")
    while not (control / "go").exists():
        time.sleep(0.02)
    artifact = control / f"artifact-{index}.txt"
    artifact.write_text(f"cell {index}\n")
    with tracking.track_cell(
        read_tracking_settings(repo_root()), params, cell, cell_settings(params, cell), META, "cpu"
    ) as run:
        for row in expected_evals(index):
            run.log_eval(row)
            if (control / "hold").exists():
                (control / f"held-{index}").write_text(run.run_id)
                time.sleep(3600)
        run.log_steps(expected_steps(index))
        summary = {"outcome": "completed", "steps_trained": STEPS, "test_accuracy": index / 10}
        run.finish(summary, {}, [artifact])


if __name__ == "__main__":
    main(Path(sys.argv[1]), int(sys.argv[2]), [Path(f) for f in sys.argv[3:]])
