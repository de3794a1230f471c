"""Stage `report`: read every cell's outputs and write the report.

Reads:  <cells>/*/ for the cells of the current study (pipeline/cell/outputs.py);
        the study's params (params.yaml, then any overlay given by a further --params);
        the dvc.lock given by --lock (its digest, for provenance); the tracking settings
        (pipeline/tracking/settings.py): the page links each run, and the report is attached
        to the study's parent run in MLflow (pipeline/tracking/study_run.py).
        With --tuned and --chosen (a study with `sweep:`), the tuned cells too, shown beside
        the fixed-rate ones, and the sweep's learning-rate sensitivity (from chosen.json); with
        --sweep also the sweep cells, which must be those chosen.json was computed from.
        With --claims (repeatable), other studies' findings.json: the claim studies run with
        this one, whose answers this page shows as the articles' claims.
Writes: <out>/index.html (one self-contained page), <out>/results.csv (one row per
        run, `lr_policy` fixed or tuned), <out>/findings.json (the page's answers, for another
        study's page); with --sweep, <out>/sweep.csv (one row per sweep run: axes, rate, seed,
        score, diverged, chosen). DVC's views: with --metrics, the headline answers as DVC metrics
        (pipeline/report/dvc_metrics.py); with --curves-prefix, <prefix>_<dataset>.csv per dataset,
        the validation curves DVC's plot overlays (pipeline/report/dvc_curves.py).
Run:    python -m pipeline.report --cells results/cells --lock dvc.lock --out reports
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from pipeline.errors import UserError, run_cli
from pipeline.repo import repo_root
from pipeline.report.build import write_report
from pipeline.report.questions import known_questions_text, unknown_questions
from pipeline.study.generate import ensure_current
from pipeline.study.params import load_params
from pipeline.tracking.settings import read_tracking_settings
from pipeline.tracking.study_run import attach_report


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--params", type=Path, action="append", help="params.yaml, then overlays (repeatable)")
    parser.add_argument("--cells", type=Path, required=True, help="directory holding one folder per cell")
    parser.add_argument("--tuned", type=Path, default=None, help="a study with `sweep:`: one folder per tuned cell")
    parser.add_argument("--chosen", type=Path, default=None, help="with --tuned: the choose stage's file")
    parser.add_argument(
        "--sweep", type=Path, default=None, help="with --tuned and --chosen: one folder per sweep cell (sweep.csv)"
    )
    parser.add_argument(
        "--claims",
        type=Path,
        action="append",
        default=[],
        help="another study's findings.json (a claim study run with this one), shown as an article's claims",
    )
    parser.add_argument("--lock", type=Path, default=None, help="the pipeline's dvc.lock, for provenance")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument(
        "--metrics", type=Path, default=None, help="the study's DVC metrics file (its headline answers)"
    )
    parser.add_argument(
        "--curves-prefix", type=Path, default=None, help="writes <prefix>_<dataset>.csv: the curves DVC's plot overlays"
    )
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    params = load_params(*(args.params or [Path("params.yaml")]))
    unknown = unknown_questions(params.report.questions)
    if unknown:
        raise UserError(f"report.questions: no question {', '.join(unknown)}; {known_questions_text()}")
    ensure_current()  # a stale dvc.yaml would leave cells of the study untrained
    if (args.tuned is None) != (args.chosen is None):
        raise UserError("--tuned and --chosen go together (the tuned cells and the rates they were chosen at)")
    if args.sweep is not None and args.chosen is None:
        raise UserError("--sweep goes with --tuned and --chosen (the sweep runs and the rates chosen from them)")
    tracking = read_tracking_settings(repo_root())
    runs = write_report(
        params,
        args.cells,
        args.out,
        lock_path=args.lock,
        tuned_dir=args.tuned,
        chosen_path=args.chosen,
        claims_files=args.claims,
        sweep_dir=args.sweep,
        tracking=tracking,
        metrics_path=args.metrics,
        curves_prefix=args.curves_prefix,
    )
    print(f"report: {runs} cells -> {args.out / 'index.html'}")
    study_run = attach_report(tracking, params, args.out, args.metrics)
    if study_run is not None:
        print(f"report: attached to the study's MLflow run {study_run}")
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main))
