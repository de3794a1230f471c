"""SIGTERM during a cell: an exception that `with` blocks see, then one line and exit code 143."""

from __future__ import annotations

import os
import signal
import time

import pytest

from pipeline.cell.interrupts import sigterm_raises
from pipeline.errors import Terminated, run_cli


def test_sigterm_raises_inside_the_block_and_not_after():
    previous = signal.getsignal(signal.SIGTERM)
    cleaned = []
    with pytest.raises(Terminated), sigterm_raises():
        try:
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(5)  # the handler interrupts the sleep
        finally:
            cleaned.append(True)
    assert cleaned == [True]
    assert signal.getsignal(signal.SIGTERM) is previous


def test_a_terminated_stage_exits_143_with_one_line(capsys):
    def stage() -> int:
        with sigterm_raises():
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(5)
        return 0

    assert run_cli(stage) == 143
    err = capsys.readouterr().err
    assert err.startswith("bnbench: stopped by signal SIGTERM") and len(err.strip().splitlines()) == 1
