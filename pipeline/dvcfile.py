"""Write each study's dvc.yaml from its params (pipeline/study/generate.py), or check that they are current.

Every study is rendered, and so validated (its params, and the report questions it names), before
any file changes: a bad study stops the command with every dvc.yaml as it was.

Run:    uv run bnbench generate            (rewrite every study's dvc.yaml; or python -m pipeline.dvcfile)
        uv run bnbench generate --check    (exit 1 if one is out of date)
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from pipeline.errors import UserError, command_main, run_cli
from pipeline.repo import repo_root
from pipeline.report.questions import known_questions_text, unknown_questions
from pipeline.study.generate import GENERATOR, has_own_pipeline, params_files, render, study_dirs
from pipeline.study.params import load_params


def _shown(path: Path) -> Path:
    """A path as a user types it from here (params.yaml, studies/quick/params.yaml), for the messages."""
    resolved = path.resolve()
    return resolved.relative_to(Path.cwd().resolve()) if resolved.is_relative_to(Path.cwd().resolve()) else resolved


def check_questions(root: Path, study: Path) -> None:
    """The report questions a study names exist (here, not in the schema: see pipeline/report/questions.py)."""
    params = load_params(*(_shown(study / f) for f in params_files(root, study)))
    unknown = unknown_questions(params.report.questions)
    if unknown:
        raise UserError(
            f"{study / 'params.yaml'}: report.questions: no question {', '.join(unknown)}; {known_questions_text()}"
        )


def study_names(root: Path) -> dict[str, str]:
    """Each study's folder and its MLflow experiment; two studies of one name are refused."""
    names: dict[str, str] = {}
    for study in study_dirs(root):
        name = load_params(*(study / f for f in params_files(root, study))).study.name
        twin = next((folder for folder, other in names.items() if other == name), None)
        folder = study.relative_to(root).as_posix()
        if twin is not None:
            # One experiment for two studies: their cells would mix under one parent run in MLflow.
            raise UserError(
                f"{folder}/params.yaml: study.name {name} is {twin}'s too; give each study its own name "
                "(or leave it out: a study is then named bnbench-<its folder>)"
            )
        names[folder] = name
    return names


def plan_pipelines(root: Path) -> tuple[list[str], dict[Path, str | None]]:
    """Every study rendered, and so validated: the out-of-date dvc.yaml files, and each one's new text (None: remove)."""
    for study in study_dirs(root):  # each study's params first, so the first error names that study's files
        check_questions(root, study)
    study_names(root)
    stale, changes = [], {}
    for study in study_dirs(root):
        path = study / "dvc.yaml"
        if not has_own_pipeline(root, study):  # its stages are in the root dvc.yaml: two copies would clash
            if path.is_file():
                stale.append(path.relative_to(root).as_posix() + " (its stages belong in the root dvc.yaml)")
                changes[path] = None
            continue
        text = render(root, study)
        if path.is_file() and path.read_text(encoding="utf-8") == text:
            continue
        stale.append(path.relative_to(root).as_posix())
        changes[path] = text
    return stale, changes


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--check", action="store_true", help="write nothing; exit 1 if a dvc.yaml is out of date")


def run_command(args: argparse.Namespace) -> int:
    root = repo_root()
    # Every study is rendered, and so validated, before any file changes: a bad one stops the run
    # with every dvc.yaml as it was, not half of them rewritten.
    stale, changes = plan_pipelines(root)
    if args.check and stale:
        raise UserError(f"out of date: {', '.join(stale)}; run `{GENERATOR}`")
    if not args.check:
        for path, text in changes.items():
            if text is None:
                path.unlink()
            else:
                path.write_text(text, encoding="utf-8")
    print(f"dvcfile: {len(study_dirs(root))} studies, {'rewrote ' + ', '.join(stale) if stale else 'all current'}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    return command_main(__doc__, add_arguments, run_command, argv)


if __name__ == "__main__":
    sys.exit(run_cli(main))
