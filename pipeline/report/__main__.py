"""Stage `report`: read every cell's outputs and write the report.

Reads:  <cells>/*/metrics.json and history.csv for the cells of the current matrix;
        params `study`, `prepare`, `matrix`, `train`, `targets`, `report`; the dvc.lock
        given by --lock (its digest, for provenance); MLFLOW_TRACKING_URI, when it is a
        server, for links to each run.
Writes: <out>/index.html (one self-contained page), <out>/results.csv (one row per
        run), <out>/metrics.json (DVC metrics: per-configuration means).
Run:    python -m pipeline.report --cells results/cells --lock dvc.lock --out reports
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

from pipeline.errors import run_cli
from pipeline.params import load_params
from pipeline.report.build import build_report

__all__ = ["build_report", "main"]


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--params", type=Path, default=Path("params.yaml"))
    parser.add_argument("--cells", type=Path, required=True, help="directory holding one folder per cell")
    parser.add_argument("--lock", type=Path, default=None, help="the pipeline's dvc.lock, for provenance")
    parser.add_argument("--out", type=Path, required=True)
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    params = load_params(args.params)
    html, results, dvc_metrics = build_report(params, args.cells, lock_path=args.lock)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "index.html").write_text(html, encoding="utf-8")
    results.to_csv(args.out / "results.csv", index=False, float_format="%.6g")
    (args.out / "metrics.json").write_text(json.dumps(dvc_metrics, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    print(f"report: {len(results)} cells -> {args.out / 'index.html'}")
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main))
