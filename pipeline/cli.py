"""The `bnbench` command line: one entry point over the commands users run besides `dvc`.

Each subcommand is a module's own command: the module adds its arguments to the subcommand's parser
(`add_arguments`) and runs it (`run_command`), so `bnbench run ...` and `python -m pipeline.runner ...`
are the same command with the same options. Only the chosen subcommand's module is imported: some
import MLflow or TensorFlow, which take seconds, and `bnbench --help` should not wait for them.

The DVC stages keep calling their modules (`python -m pipeline.train ...` in dvc.yaml): they are the
pipeline's commands, not a user's.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence
from dataclasses import dataclass

from pipeline.errors import run_cli


@dataclass(frozen=True)
class Command:
    module: str  # the module whose add_arguments and run_command make the subcommand
    summary: str  # one line for `bnbench --help`


COMMANDS = {
    "check": Command("pipeline.study.params", "validate a study's params (an overlay is laid over params.yaml)"),
    "new-study": Command("pipeline.new_study", "write studies/NAME/params.yaml and generate its dvc.yaml"),
    "generate": Command("pipeline.dvcfile", "write every study's dvc.yaml from its params (--check: only check)"),
    "run": Command("pipeline.runner.__main__", "train a study's out-of-date cells in warm workers; DVC as after repro"),
    "repro": Command("pipeline.repro", "dvc repro, after refusing a target or --glob pattern that names no stage"),
    "sync": Command("pipeline.tracking.sync", "deliver the runs a tracking server missed to MLflow"),
    "lock-digest": Command("pipeline.report.lockfile", "print the digest of a dvc.lock the report shows"),
}

EPILOG = "Each command's options: bnbench COMMAND --help. The pipeline itself: uv run dvc repro (README.md)."


def build_parser(chosen: str | None) -> argparse.ArgumentParser:
    """The parser; only the chosen command's module is imported and adds its arguments."""
    parser = argparse.ArgumentParser(prog="bnbench", description=__doc__.splitlines()[0], epilog=EPILOG)
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, command in COMMANDS.items():
        sub = commands.add_parser(name, help=command.summary, description=command.summary)
        if name == chosen:
            module = importlib.import_module(command.module)
            sub.description = module.__doc__
            sub.formatter_class = argparse.RawDescriptionHelpFormatter
            module.add_arguments(sub)
            sub.set_defaults(run_command=module.run_command)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    chosen = next((arg for arg in argv if not arg.startswith("-")), None)  # bnbench has no option taking a value
    args = build_parser(chosen).parse_args(argv)
    return run_cli(lambda: args.run_command(args))


if __name__ == "__main__":
    sys.exit(main())
