"""Errors a user can cause and fix; each stage prints them as one message and exits non-zero."""

from __future__ import annotations

import sys
from collections.abc import Callable


class UserError(Exception):
    """Bad input: the message names the problem and the fix."""


def run_cli(main: Callable[[], int]) -> int:
    """Run a stage's main; a UserError becomes one line on stderr and exit code 1, not a traceback."""
    try:
        return main()
    except UserError as error:
        print(f"bnbench: {error}", file=sys.stderr)
        return 1
