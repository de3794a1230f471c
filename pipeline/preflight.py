"""Stage `preflight`: every study's params valid and every dvc.yaml current, before anything downloads.

It is the first stage of the main pipeline, upstream of fetch, so of every stage of every study: a
typo in any overlay, or a dvc.yaml its params no longer give, stops `dvc repro` here, before a
dataset downloads and before DVC deletes the outputs of a stage it is about to run. Its output says
only that the check passed, the same bytes every time: a params edit that passes, or a new study,
re-runs this check and nothing downstream of it (no fetch, no other study's stage).

Reads:  params.yaml and every studies/<name>/params.yaml (its params deps: any edit reruns it);
        every dvc.yaml, compared with what the params generate.
Writes: <out> (JSON: {"preflight": "passed"}, the same every time).
Run:    python -m pipeline.preflight --out results/preflight.json   (a stage; by hand: uv run bnbench generate --check)
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

from pipeline.dvcfile import plan_pipelines, study_names
from pipeline.errors import UserError, run_cli
from pipeline.repo import repo_root
from pipeline.study.generate import GENERATOR

PASSED = {"preflight": "passed"}  # the output: where the check fails, the stage fails and writes nothing


def check_studies(root: Path) -> dict[str, str]:
    """Every study validated, and every dvc.yaml current; returns each study's folder and experiment name."""
    stale, _ = plan_pipelines(root)  # renders every study: its params, its name, the report questions it names
    if stale:
        raise UserError(
            f"out of date with the params: {', '.join(stale)}; run `{GENERATOR}`, then `dvc repro` again "
            "(nothing was downloaded or deleted)"
        )
    return study_names(root)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, required=True, help="the stage's output: the studies checked")
    args = parser.parse_args(argv)
    names = check_studies(repo_root())
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(PASSED) + "\n", encoding="utf-8")
    print(f"preflight: {len(names)} studies valid ({', '.join(sorted(names.values()))}), every dvc.yaml current")
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main))
