"""Stage `choose`: the learning rate of each configuration, chosen on validation from its sweep.

Reads:  <sweep>/*/metrics.json, one folder per sweep cell (pipeline/cell/outputs.py);
        the study's params (its `sweep:` section and matrix).
Writes: <out> (JSON): per configuration, every rate's score, the rates that diverged,
        and the chosen rate; with the rule that chose it (pipeline/study/choice.py).
Run:    python -m pipeline.choose --sweep results/sweep/cells --out results/sweep/chosen.json
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

from pipeline.errors import run_cli
from pipeline.study.axes import format_value
from pipeline.study.choice import choose
from pipeline.study.params import load_params


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--params", type=Path, action="append", help="params.yaml, then overlays (repeatable)")
    parser.add_argument("--sweep", type=Path, required=True, help="directory holding one folder per sweep cell")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    params = load_params(*(args.params or [Path("params.yaml")]))
    chosen = choose(params, args.sweep)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(chosen, indent=2, sort_keys=True, allow_nan=False) + "\n", encoding="utf-8")
    for name, entry in chosen["configurations"].items():
        print(f"choose: {name}: learning rate {format_value(entry['learning_rate'])}")
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main))
