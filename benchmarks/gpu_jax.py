"""Device check: a cell on an NVIDIA GPU with Keras' JAX backend, deterministic or not, and shared by four.

What it measures (one machine with a GPU, JAX's CUDA plugin, KERAS_BACKEND=jax):
1. `train.deterministic: true` (XLA_FLAGS --xla_gpu_deterministic_ops=true, pipeline/cell/backend.py): the
   same cell trained twice, each in a fresh process; whether every measurement but time is identical.
2. The same with `train.deterministic: false`: how far two runs of one seed drift apart on a GPU.
3. Four cells at once on the GPU, each process capped as a runner slot or a Ray task with
   num_gpus=0.25 is (XLA_PYTHON_CLIENT_PREALLOCATE=false, XLA_PYTHON_CLIENT_MEM_FRACTION=0.2): whether
   they all finish, and each one's memory limit and peak as JAX reports them.
The cell (benchmarks/one_cell.py): seed_cnn, BN after the activation, dropout 0.5, on 4,096 synthetic
CIFAR-10-shaped images, batch 32, 2 epochs; each run a fresh process.

Run:    KERAS_BACKEND=jax python -m benchmarks.gpu_jax --out DIR
Writes: DIR/gpu_jax.json
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from importlib import metadata
from pathlib import Path

from benchmarks.one_cell import SETTINGS, compare, outcome, spawn, write_data


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp())
    write_data(work / "data", train=4096, val=512, test=1024)
    versions = {name: metadata.version(name) for name in ("jax", "jaxlib", "keras")}
    results: dict = {"settings": SETTINGS, "versions": versions}
    for deterministic in (True, False):
        runs = []
        for i in range(2):
            out = work / f"{deterministic}-{i}.json"
            runs.append(outcome(out, spawn(work / "data", deterministic, out).wait()))
        key = "deterministic" if deterministic else "not_deterministic"
        results[key] = {
            "runs": [
                {k: r.get(k) for k in ("device", "xla_flags", "wall_s", "timing", "memory", "failed", "log_tail")}
                for r in runs
            ],
            **(compare(*runs) if all("failed" not in r for r in runs) else {}),
        }
        print(json.dumps({key: results[key]}, indent=1), flush=True)
    shared = {"XLA_PYTHON_CLIENT_PREALLOCATE": "false", "XLA_PYTHON_CLIENT_MEM_FRACTION": "0.2"}
    deterministic = results["deterministic"]["runs"][0]["failed"] is None  # the mode that ran, if one failed
    began = time.perf_counter()
    outs = [work / f"shared-{i}.json" for i in range(4)]
    codes = [p.wait() for p in [spawn(work / "data", deterministic, out, shared) for out in outs]]
    results["four_at_once"] = {
        "env": shared,
        "deterministic": deterministic,
        "wall_s": time.perf_counter() - began,
        "exit_codes": codes,
        "runs": [
            {k: r.get(k) for k in ("wall_s", "timing", "memory", "failed", "log_tail")}
            for r in (outcome(out, code) for out, code in zip(outs, codes, strict=True))
        ],
    }
    print(json.dumps({"four_at_once": results["four_at_once"]}, indent=1), flush=True)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "gpu_jax.json").write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
