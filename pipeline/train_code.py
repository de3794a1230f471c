"""Stage `train-code`: one file that stands for the cells' code, an md5 per file that decides their outputs.

Reads:  the files of pipeline/study/code.py's `cell_code`: the modules of pipeline/cell/ and the
        project modules they import, transitively (never tracking, the runner or the report).
Writes: <out> (JSON: {file: md5}, sorted).
Run:    python -m pipeline.train_code --out results/code/train.json

Why: a study has hundreds of cell stages. Each depending on every module it imports would list
the same two dozen files hundreds of times in dvc.lock (2.5 MB for the default study), and a no-op
`dvc repro` would spend most of its time reading them back. The cells depend on this one file, and
this stage on the folder pipeline/ (one dependency, one `dvc exp show` column): any change there
re-runs this stage, a second's work; only a change to the cells' code gives a new digest and makes
the cells stale.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

from pipeline.errors import run_cli
from pipeline.repo import repo_root
from pipeline.study.code import cell_code, digest


def code_digest(root: Path) -> dict:
    return digest(root, cell_code(root))


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    digest = code_digest(repo_root())
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(digest, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    print(f"train_code: {len(digest['files'])} files into {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main))
