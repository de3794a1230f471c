"""`dvc repro` with its targets checked first: a target or `--glob` pattern that names no stage is refused.

DVC 3.67 reproduces the whole pipeline when its targets select no stage: `dvc repro --glob PATTERN`
with a pattern that matches nothing runs every stage of dvc.yaml, hours of training for a typo. This
command asks DVC's own stage collection (what `dvc repro` itself selects, target by target) first,
refuses any target that selects nothing in one line naming the nearest stage names and where each
study's stages are, and otherwise runs `dvc repro` with the same arguments, its output and exit code
unchanged.

Run:    uv run bnbench repro --dry --glob 'article001-*'      (or python -m pipeline.repro ...)
        uv run bnbench repro article001-report -- --keep-going  (any other `dvc repro` flag after --)

In that order: this command's options, the targets, then `--` and any other `dvc repro` flag. Every
option of `dvc repro` is a flag, so the flags after `--` go to DVC as they are; the targets are
checked with `-R/--recursive` when it is among them, and not at all with `-P/--all-pipelines`, which
ignores them.
"""

from __future__ import annotations

import argparse
import difflib
import subprocess
import sys
from collections.abc import Iterable, Sequence

from pipeline.errors import UserError, command_main, run_cli

NEAREST = 3  # near matches named in the message


def study_prefixes(stages: Iterable[tuple[str, bool]]) -> list[str]:
    """Where each study's stages are, from (addressing, whether it runs in a study's folder): `<study>-` in the
    root dvc.yaml (a study run with the main one; a study's name has no `-`), `<path>/dvc.yaml:` elsewhere."""
    prefixes = set()
    for address, in_study in stages:
        path, _, name = address.rpartition(":")
        if path:
            prefixes.add(f"{path}:")
        elif in_study:
            prefixes.add(name.split("-")[0] + "-")
    return sorted(prefixes)


def refusal(target: str, glob: bool, addressings: Sequence[str], prefixes: Sequence[str]) -> str:
    """The one line for a target that selects no stage: the nearest stage names and the study prefixes."""
    # Only an empty glob makes DVC run everything; an unknown stage name is an error to DVC too, said here the same way.
    what = f"--glob {target!r} matches no stage, and nothing ran (DVC would have reproduced the whole pipeline)"
    what = what if glob else f"{target!r} names no stage, and nothing ran"
    near = difflib.get_close_matches(target.replace("*", ""), addressings, n=NEAREST, cutoff=0.4)
    hints = [f"nearest: {', '.join(near)}"] if near else []
    hints.append(f"the studies' stages start with {', '.join(prefixes)}")
    return f"{what}; {'; '.join(hints)}. List the stages with `uv run dvc stage list --all`"


def check_targets(targets: Sequence[str], glob: bool, recursive: bool) -> None:
    """Refuse the first target that selects no stage, as DVC's `dvc repro` collects them (dvc.repo.reproduce)."""
    from dvc.exceptions import DvcException
    from dvc.repo import Repo

    with Repo() as repo:
        for target in targets:
            try:
                found = repo.stage.collect(target, recursive=recursive, glob=glob)
            except DvcException:  # a stage name or path DVC does not know
                found = []
            if not found:
                stages = repo.index.stages
                # A stage of the root dvc.yaml that runs in another folder belongs to a study run with the main one.
                places = study_prefixes((s.addressing, s.wdir != repo.root_dir) for s in stages)
                raise UserError(refusal(target, glob, sorted(s.addressing for s in stages), places))


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "targets",
        nargs="*",
        help="stages, dvc.yaml files or (with --glob) patterns, as dvc repro takes them; "
        "after --, any other dvc repro flag (--keep-going, --downstream, --pull, ...)",
    )
    parser.add_argument("--glob", action="store_true", help="the targets are shell-style patterns of stage names")
    parser.add_argument("--dry", action="store_true", help="only print the commands that would run")
    parser.add_argument("-f", "--force", action="store_true", help="reproduce even if nothing changed")
    parser.add_argument(
        "-s", "--single-item", action="store_true", help="only the targets, without their upstream stages"
    )


def run_command(args: argparse.Namespace) -> int:
    # argparse hands the words after `--` over as targets; a DVC stage name never starts with `-`.
    flags = [word for word in args.targets if word.startswith("-")]
    targets = [word for word in args.targets if not word.startswith("-")]
    if not {"-P", "--all-pipelines"} & set(flags):
        check_targets(targets, args.glob, recursive=bool({"-R", "--recursive"} & set(flags)))
    own = [flag for flag, given in (("--glob", args.glob), ("--dry", args.dry), ("--force", args.force),
                                    ("--single-item", args.single_item)) if given]  # fmt: skip
    return subprocess.run([sys.executable, "-m", "dvc", "repro", *own, *flags, *targets]).returncode


def main(argv: Sequence[str] | None = None) -> int:
    return command_main(__doc__, add_arguments, run_command, argv)


if __name__ == "__main__":
    sys.exit(run_cli(main))
