"""Stage `stage-code`: one file per kind of stage (fetch, prepare, choose, report) that stands for its code.

Reads:  per kind, the files of pipeline/study/code.py's `code_deps` of its entry point (STAGE_ENTRIES):
        the entry module, every project module it imports, transitively, and the files they read at
        run time (the report's page template).
Writes: <out>/<kind>.json for each kind (JSON: {"files": {file: md5}}, sorted).
Run:    python -m pipeline.stage_code --out results/code

Why: DVC's `dvc exp show` has a column for every file any stage depends on. With every stage
listing the modules it imports, 84 of its columns were files under pipeline/. Instead each stage of
a kind, in every study, depends on its kind's one digest file, and this stage on the folder
pipeline/ whole: any change there re-runs it, a second's work, and only the kinds whose files
changed get a new digest, so only their stages go stale (a report fix re-runs the reports, never
prepare).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

from pipeline.errors import run_cli
from pipeline.repo import repo_root
from pipeline.study.code import STAGE_ENTRIES, code_deps, digest


def stage_digests(root: Path) -> dict[str, dict]:
    return {kind: digest(root, code_deps(root, entry)) for kind, entry in STAGE_ENTRIES.items()}


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, required=True, help="the folder of the digests, one <kind>.json each")
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    for kind, files in stage_digests(repo_root()).items():
        (args.out / f"{kind}.json").write_text(json.dumps(files, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    print(f"stage_code: {', '.join(STAGE_ENTRIES)} into {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main))
