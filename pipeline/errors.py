"""Errors a user can cause and fix; each stage prints them as one message and exits non-zero."""

from __future__ import annotations

import sys
from collections.abc import Callable


class UserError(Exception):
    """Bad input: the message names the problem and the fix."""


def run_cli(main: Callable[[], int]) -> int:
    """Run a stage's main; a UserError becomes one line on stderr and exit code 1, not a traceback.

    A SIGTERM that a cell turned into `Terminated` (pipeline/interrupts.py) becomes one line and 143.
    """
    from pipeline.interrupts import EXIT_CODE, Terminated

    try:
        return main()
    except UserError as error:
        print(f"bnbench: {error}", file=sys.stderr)
        return 1
    except Terminated as stop:
        print(f"bnbench: {stop}; work finished so far is kept, and the same command resumes", file=sys.stderr)
        return EXIT_CODE
