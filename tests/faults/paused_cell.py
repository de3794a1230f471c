"""The train stage exactly as `python -m pipeline.train` runs it, held at two points a test chooses.

    python -m tests.faults.paused_cell <control folder> <the train stage's arguments...>

- At the cell's first evaluation, before it is logged: writes <control>/started with the run's id,
  then waits for <control>/resume-training.
- When training is over, before the summary and the output files are logged: writes
  <control>/trained, then waits for <control>/resume-finish (create it first to pass straight on).
  From there on the run's delivery thread retries a failed delivery at the next log call, as it
  does once its pause after a failure (30 s) is over.
- Before the run is ended: stops the delivery thread once it has served every log call's request
  (the end's own delivery, past the pause, would hide a thread that never retries), writes
  <control>/logged, then waits for <control>/resume-end.

So a test can kill the tracking server once the run exists and bring it back (or not) before the
cell ends, by construction rather than by timing. Its exit status and output are the stage's.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

from pipeline import train
from pipeline.errors import run_cli
from pipeline.tracking import runs as tracking

WAIT_S = 600  # a test that never answers: fail rather than hang


def wait_for(path: Path) -> None:
    deadline = time.monotonic() + WAIT_S
    while not path.exists():
        if time.monotonic() > deadline:
            raise SystemExit(f"paused_cell: {path} did not appear in {WAIT_S} s")
        time.sleep(0.1)


def hold(control: Path) -> None:
    log_eval, finish, end = tracking.CellRun.log_eval, tracking.CellRun.finish, tracking.CellRun.end

    def held_log_eval(self, row):
        if not (control / "started").exists():
            (control / "started").write_text(self.run_id)
            wait_for(control / "resume-training")
        log_eval(self, row)

    def held_finish(self, summary, target_metrics, artifacts):
        (control / "trained").write_text(self.run_id)
        wait_for(control / "resume-finish")
        self.delivery.retry_pause_s = 0
        finish(self, summary, target_metrics, artifacts)

    def held_end(self, status):
        self.delivery.close()  # its last pass is a log call's, not a flush: end() closes it again, a no-op
        (control / "logged").write_text(self.run_id)
        wait_for(control / "resume-end")
        end(self, status)

    tracking.CellRun.log_eval, tracking.CellRun.finish, tracking.CellRun.end = held_log_eval, held_finish, held_end


if __name__ == "__main__":
    control, argv = Path(sys.argv[1]), sys.argv[2:]
    hold(control)
    sys.exit(run_cli(lambda: train.main(argv)))
