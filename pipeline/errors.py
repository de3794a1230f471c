"""How a command ends when it cannot go on: one message and a non-zero exit, never a traceback.

- UserError: bad input a user can fix; the message names the problem and the fix. Exit 1.
- Terminated: the process received SIGTERM while a cell trained (pipeline/cell/interrupts.py turns
  the signal into this exception, so that `finally` and `with` blocks run). Exit 143.
"""

from __future__ import annotations

import argparse
import signal
import sys
from collections.abc import Callable, Sequence

TERMINATED_EXIT_CODE = 128 + signal.SIGTERM


class UserError(Exception):
    """Bad input: the message names the problem and the fix."""


class Terminated(BaseException):
    """The process received SIGTERM (a BaseException, so that `except Exception` does not swallow it)."""


def run_cli(main: Callable[[], int]) -> int:
    """Run a command's main; a UserError becomes one line on stderr and exit code 1, a Terminated one line and 143."""
    try:
        return main()
    except UserError as error:
        print(f"bnbench: {error}", file=sys.stderr)
        return 1
    except Terminated as stop:
        print(f"bnbench: {stop}; work finished so far is kept, and the same command resumes", file=sys.stderr)
        return TERMINATED_EXIT_CODE


def command_main(
    doc: str | None,
    add_arguments: Callable[[argparse.ArgumentParser], None],
    run_command: Callable[[argparse.Namespace], int],
    argv: Sequence[str] | None,
) -> int:
    """A command module's `python -m` entry: the same arguments and run as its `bnbench` subcommand (pipeline/cli.py)."""
    parser = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_arguments(parser)
    return run_command(parser.parse_args(argv))
