"""Stage `train-code`: one file that stands for the cells' code, an md5 per module they import.

Reads:  the project modules `pipeline.train` imports, transitively (pipeline/dvcfile.py finds them).
Writes: <out> (JSON: the entry point and {file: md5}, sorted).
Run:    python -m pipeline.code_digest --entry pipeline.train --out results/code/train.json

Why: a study has hundreds of cell stages, and each depended on every module it imports. Their
dvc.lock entries then listed the same two dozen files hundreds of times (2.5 MB for the default
study), and a no-op `dvc repro` spent most of its time reading them back. Now the cells depend on
this one file, and this stage on the modules: a code change re-runs this stage, the new digest
makes the cells stale, exactly as before; a change elsewhere re-runs nothing.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
from collections.abc import Sequence
from pathlib import Path

from pipeline.dvcfile import code_deps
from pipeline.errors import run_cli

ROOT = Path(__file__).resolve().parents[1]


def _md5(path: Path) -> str:
    if path.is_dir():  # a folder a module reads at run time (templates): its files, in order
        digest = hashlib.md5()
        for file in sorted(p for p in path.rglob("*") if p.is_file()):
            digest.update(file.relative_to(path).as_posix().encode() + b"\0" + file.read_bytes())
        return digest.hexdigest()
    return hashlib.md5(path.read_bytes()).hexdigest()


def code_digest(root: Path, entry: str) -> dict:
    return {"entry": entry, "files": {name: _md5(root / name) for name in code_deps(root, entry)}}


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--entry", required=True, help="the entry point's module, e.g. pipeline.train")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    digest = code_digest(ROOT, args.entry)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(digest, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    print(f"code_digest: {args.entry}: {len(digest['files'])} files into {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main))
