"""A new study: its overlay, studies/<name>/params.yaml, and its generated pipeline, studies/<name>/dvc.yaml.

The overlay sets only the study's own name (its MLflow experiment, bnbench-<name>); the keys one
usually changes follow as comments holding the main study's current values, so that uncommenting a
line changes nothing until it is edited. Until then the study trains the main study's matrix under its
own name and into its own folder. The overlay is validated, laid over the root params.yaml, before
anything is written; an existing study or a bad name is refused.

Writes: studies/<name>/params.yaml, studies/<name>/dvc.yaml, and the root dvc.yaml (whose first stage,
        preflight, checks every study's params).
Run:    uv run bnbench new-study NAME      (or python -m pipeline.new_study NAME)
"""

from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Sequence
from pathlib import Path

from pipeline.dvcfile import plan_pipelines
from pipeline.errors import UserError, command_main, run_cli
from pipeline.repo import repo_root
from pipeline.study.cells import expand_matrix, expand_sweep
from pipeline.study.generate import STUDIES
from pipeline.study.params import STUDY_NAME_PREFIX, load_params
from pipeline.study.schema import Params

# A folder name, a DVC stage prefix (<name>-train@...) and part of an MLflow experiment name alike.
NAME = re.compile(r"[a-z0-9][a-z0-9_]*")


def _yaml(value: object) -> str:
    """A value as YAML 1.2 reads it back: null, true/false, lists in flow style with `off` quoted (DVC: no boolean)."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, list):
        return "[" + ", ".join('"off"' if v == "off" else _yaml(v) for v in value) + "]"
    return str(value)


def _line(text: str, why: str = "") -> str:
    return f"{text:<30} # {why}" if why else text


def overlay_text(name: str, base: Params) -> str:
    """The overlay: its name, then the usual keys commented out, each with the main study's value."""
    train, prepare = base.train, base.prepare
    where = f"{STUDIES}/{name}"
    lines = [
        f"# The study {name}: an overlay of ../../params.yaml. Only the keys set here change; every other key",
        "# is the main study's. The commented keys are those a study usually changes, with the main study's",
        "# values: uncomment and edit them, then check the study and regenerate its pipeline:",
        f"#   uv run bnbench check {where}/params.yaml   (laid over the root params.yaml, as its stages read it)",
        f"#   uv run bnbench generate                    (rewrites {where}/dvc.yaml)",
        "# and run it:",
        f"#   uv run dvc repro {where}/dvc.yaml          (or: uv run bnbench run {where}/dvc.yaml --slots 2)",
        "",
        "study:",
        _line(f"  name: {STUDY_NAME_PREFIX}{name}", "its MLflow experiment: a parent run holding the study's cells"),
        _line("  # runs_with_main: true", "its stages join the root dvc.yaml: a plain `dvc repro` trains it too"),
        "",
        "# prepare:",
        _line(f"#   max_train_examples: {_yaml(prepare.max_train_examples)}", "a stratified subset; null: all"),
        _line(f"#   max_test_examples: {_yaml(prepare.max_test_examples)}"),
        "",
        _line("# matrix:", "an axis listed here replaces the main study's values, whole"),
        *(f"#   {key}: {_yaml(values)}" for key, values in base.matrix.items()),
        _line("#   train.optimizer.learning_rate: [0.001, 0.01]", "any leaf of train may be an axis"),
        "",
        "# train:",
        _line(f"#   architecture: {train.architecture}", "declared in pipeline/cell/architectures.py"),
        _line(f"#   epochs: {train.epochs}", "the budget of each cell"),
        _line(f"#   batch_size: {train.batch_size}"),
        "#   optimizer:",
        _line(f"#     name: {train.optimizer.name}", "rmsprop, sgd or adam"),
        _line(f"#     learning_rate: {train.optimizer.learning_rate}"),
        "",
        _line("# sweep: null", "no learning-rate sweep: the fixed-rate cells only"),
    ]
    return "\n".join(lines) + "\n"


def describe_cells(params: Params) -> str:
    """How many cells the study trains, in words: fixed-rate, and with a sweep its sweep and tuned cells."""
    fixed = len(expand_matrix(params))
    if params.sweep is None:
        return f"{fixed} cells to train"
    sweep = len(expand_sweep(params))
    return f"{2 * fixed + sweep} cells to train ({fixed} at the fixed rate, {sweep} in the sweep, {fixed} tuned)"


def create_study(root: Path, name: str) -> tuple[Path, str, list[str]]:
    """Write the study's overlay and the pipelines; returns its folder, its cells in words and the files written."""
    if not NAME.fullmatch(name):
        raise UserError(
            f"{name!r} is not a study name: use lower-case letters, digits and _, starting with a letter or "
            "digit (e.g. my_study)"
        )
    study = root / STUDIES / name
    if study.exists():
        raise UserError(f"{study.relative_to(root)} exists already: pick another name, or edit its params.yaml")
    text = overlay_text(name, load_params(root / "params.yaml"))
    study.mkdir(parents=True)
    try:
        (study / "params.yaml").write_text(text, encoding="utf-8")
        params = load_params(root / "params.yaml", study / "params.yaml")
        # Every study rendered, as `bnbench generate` does: its own dvc.yaml is new, and the root one's first
        # stage (preflight) lists every study's params.
        _, changes = plan_pipelines(root)
    except BaseException:  # a half-made study would be refused as existing when tried again
        (study / "params.yaml").unlink(missing_ok=True)
        study.rmdir()
        raise
    for path, new_text in changes.items():
        if new_text is None:
            path.unlink()
        else:
            path.write_text(new_text, encoding="utf-8")
    written = [(study / "params.yaml").relative_to(root).as_posix(), *(p.relative_to(root).as_posix() for p in changes)]
    return study, describe_cells(params), written


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("name", help="the study's folder under studies/; its MLflow experiment is bnbench-NAME")


def run_command(args: argparse.Namespace) -> int:
    root = repo_root()
    study, cells, written = create_study(root, args.name)
    where = study.relative_to(root).as_posix()
    print(f"new-study: wrote {', '.join(written)}")
    print(f"{where}: {cells}: the main study's design until you change it.")
    print(f"Edit {where}/params.yaml, run `uv run bnbench generate`, then run the study:")
    print(f"  uv run dvc repro {where}/dvc.yaml")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    return command_main(__doc__, add_arguments, run_command, argv)


if __name__ == "__main__":
    sys.exit(run_cli(main))
