"""Benchmark: what `train.deterministic` costs on the CPU, per Keras backend.

For TensorFlow and JAX, with `train.deterministic` true and false, the cell of benchmarks/one_cell.py
at the quick study's size (1,080 training images, 2 epochs, 68 steps of 32) is trained `--repeats`
times, each in a fresh process, the variants interleaved so that a change in the machine's load hits
them alike. Deterministic on TensorFlow: op determinism and no XLA; not: XLA-compiled steps. On JAX
the step is XLA-compiled either way and the flag that differs is a GPU one, so its two rows measure
the noise. Reported per variant: the median training time after the compile step (evaluations
excluded), the same for the last epoch alone (every step shape compiled by then: with XLA, the
epoch's smaller last batch compiles a second step inside the first epoch's timed segments), the
compile step, throughput, and whether the repeats measured the same numbers.

Run:    uv run python -m benchmarks.determinism [--repeats 3] [--out benchmarks/results]
Writes: <out>/determinism.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
from pathlib import Path

from benchmarks.one_cell import compare, outcome, spawn, write_data

VARIANTS = [(backend, deterministic) for backend in ("tensorflow", "jax") for deterministic in (True, False)]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp())
    write_data(work / "data", train=1080, val=120, test=500)
    runs: dict = {variant: [] for variant in VARIANTS}
    loads = []
    for repeat in range(args.repeats):
        for backend, deterministic in VARIANTS:
            out = work / f"{backend}-{deterministic}-{repeat}.json"
            env = {"KERAS_BACKEND": backend, "CUDA_VISIBLE_DEVICES": "-1", "TF_CPP_MIN_LOG_LEVEL": "3"}
            runs[backend, deterministic].append(outcome(out, spawn(work / "data", deterministic, out, env).wait()))
            loads.append(os.getloadavg()[0])
            print(backend, deterministic, runs[backend, deterministic][-1].get("timing"), flush=True)
    rows = []
    for (backend, deterministic), done in runs.items():
        failed = [r for r in done if "failed" in r]
        if failed:
            rows.append({"backend": backend, "deterministic": deterministic, "failed": failed[0]})
            continue
        timing = [r["timing"] for r in done]
        rows.append(
            {
                "backend": backend,
                "deterministic": deterministic,
                "train_seconds": statistics.median(t["train_seconds"] for t in timing),
                "last_epoch_seconds": statistics.median(t["last_epoch_seconds"] for t in timing),
                "compile_seconds": statistics.median(t["compile_seconds"] for t in timing),
                "throughput_images_per_s": statistics.median(t["throughput_images_per_s"] for t in timing),
                "train_seconds_each": [t["train_seconds"] for t in timing],
                "repeats_identical": all(compare(done[0], r)["identical"] for r in done[1:]),
            }
        )
    results = {
        "machine": f"{platform.machine()}, {os.cpu_count()} cores",
        "load_average_during": [min(loads), max(loads)],
        "repeats": args.repeats,
        "variants": rows,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "determinism.json").write_text(json.dumps(results, indent=2) + "\n")
    print(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
