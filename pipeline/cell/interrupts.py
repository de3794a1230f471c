"""SIGTERM raised as an exception in the main thread, as Ctrl-C raises KeyboardInterrupt.

Python's default SIGTERM ends the process at once: no `finally`, no `with` exit, so a cell's
run would stay RUNNING. Raised as `Terminated` instead, the run's context ends it as
FAILED (as for Ctrl-C), and the stage exits with 143 (128 + SIGTERM), its checkpoint kept.
SIGKILL cannot be caught: the next start of the cell ends such a run (its tracker's end_stale_runs).
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator

from pipeline.errors import Terminated


def _raise_terminated(signum, frame) -> None:
    raise Terminated(f"stopped by signal {signal.Signals(signum).name}")


@contextlib.contextmanager
def sigterm_raises() -> Iterator[None]:
    """While the block runs, SIGTERM raises Terminated in the main thread (elsewhere, nothing changes)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGTERM, _raise_terminated)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
