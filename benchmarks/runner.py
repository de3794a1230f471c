"""Benchmark: the quick study's cells trained by sequential `dvc repro` and by the runner with k slots.

In a copy of the repository (as a fresh clone has it) with full-size synthetic datasets from a local
mirror, the upstream stages (fetch, prepare) run once; then each variant starts from a copy of that
state and trains the study's 16 cells and writes its report:
- `dvc repro studies/quick/dvc.yaml` (one process per cell, one after another),
- `python -m pipeline.runner studies/quick/dvc.yaml --slots k` for k = 1, 2.
Reported: wall time, speed-up over dvc repro, slot utilisation (busy slot-seconds over k x the
training phase's wall time); and per cell: cold (the stage under dvc repro: a fresh process),
warm (in a runner worker that already trained a cell) and a bare Keras fit of the same model,
data, batch size and epochs (build, compile, fit, one test evaluation) in a warm process.

Run:    uv run python -m benchmarks.runner [--out benchmarks/results]
Writes: <out>/runner.json and <out>/runner.png
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from statistics import mean

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from benchmarks.quick_study import run_timed  # noqa: E402
from tools.fake_data import full_size_mirror_env  # noqa: E402
from tools.repo_copy import copy_repo  # noqa: E402

STUDY = "studies/quick/dvc.yaml"
SLOTS = (1, 2)

# Run in the study's folder of a copy: the bare Keras fit of every cell, in one warm process.
BARE_FIT = """
import json, sys, time
from pathlib import Path
import keras
from pipeline.study.cells import cell_settings, expand_matrix
from pipeline.data.prepared import load_prepared
from pipeline.cell.models import build_model, model_spec
from pipeline.cell.optimizers import build_optimizer
from pipeline.study.params import load_params
from pipeline.cell.seeding import seed_everything
from pipeline.cell.backend import apply_determinism, jit_compile

params = load_params(Path("../../params.yaml"), Path("params.yaml"))
data = {}
seconds = []
for cell in expand_matrix(params):
    s = cell_settings(params, cell)
    d = data.setdefault(cell.dataset, load_prepared(Path("data/prepared") / cell.dataset))
    began = time.perf_counter()
    keras.backend.clear_session()
    apply_determinism(s.train.deterministic)
    seed_everything(s.seed)
    model = build_model(model_spec(s), d.input_shape, d.num_classes)
    model.compile(optimizer=build_optimizer(s.train.optimizer), loss="sparse_categorical_crossentropy",
                  metrics=["accuracy"], jit_compile=jit_compile(s.train.deterministic))
    model.fit(d.train.images, d.train.labels, batch_size=s.train.batch_size, epochs=s.train.epochs, verbose=0)
    model.evaluate(d.test.images, d.test.labels, batch_size=512, verbose=0)
    seconds.append(time.perf_counter() - began)
json.dump(seconds, sys.stdout)
"""


def _link_data(source: str, dest: str) -> None:
    """Hard links for the large read-only data (raw, prepared, DVC's cache); copies for what DVC rewrites."""
    if "/data/" in source or "/.dvc/cache/" in source:
        os.link(source, dest)
    else:
        shutil.copy2(source, dest)


def timed(command: list[str], cwd: Path, env: dict) -> float:
    began = time.perf_counter()
    done = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True)
    if done.returncode:
        raise SystemExit(f"{' '.join(command)} failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
    return time.perf_counter() - began


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    args = parser.parse_args()
    record: dict = {"machine": f"{platform.machine()}, {os.cpu_count()} cores, CPU only", "variants": {}}
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        base = root / "base"
        copy_repo(base)
        env = full_size_mirror_env(root)
        env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"  # `python` in stages
        prepare = ["studies/quick/dvc.yaml:prepare@cifar10", "studies/quick/dvc.yaml:prepare@fashion_mnist"]
        timed([sys.executable, "-m", "dvc", "repro", *prepare], base, {**env, "PYTHONPATH": str(base)})

        def fresh(name: str) -> tuple[Path, dict]:
            repo = root / name
            shutil.copytree(base, repo, symlinks=True, copy_function=_link_data)
            return repo, {**env, "PYTHONPATH": str(repo)}

        repo, venv = fresh("sequential")
        total, stages = run_timed([sys.executable, "-m", "dvc", "repro", STUDY], repo, venv)
        cold = [s for name, s in stages.items() if ":train@" in name]
        record["variants"]["dvc repro"] = {"wall_s": total, "cells": len(cold)}
        warm: list[float] = []
        for k in SLOTS:
            repo, venv = fresh(f"runner-{k}")
            wall = timed([sys.executable, "-m", "pipeline.runner", STUDY, "--slots", str(k)], repo, venv)
            summary = json.loads((repo / ".bnbench" / "runner-summary.json").read_text())
            (trained,) = summary["rounds"]
            results = trained["results"]
            by_worker: dict[int, list[dict]] = {}
            for r in sorted(results, key=lambda r: r["started"]):
                by_worker.setdefault(r["pid"], []).append(r)
            if k == 1:  # every cell after a worker's first: the framework already imported and warmed up
                warm = [r["ended"] - r["started"] for cells in by_worker.values() for r in cells[1:]]
            t0 = min(r["started"] for r in results)
            record["variants"][f"runner, {k} slot{'s' if k > 1 else ''}"] = {
                "wall_s": wall,
                "cells": len(results),
                "training_phase_s": trained["wall_s"],
                "slot_utilisation": trained["utilisation"],
                "threads_per_slot": summary["threads_per_slot"],
                "timeline": [[r["slot"], r["started"] - t0, r["ended"] - t0] for r in results],
            }
        bare = json.loads(
            subprocess.run(
                [sys.executable, "-c", BARE_FIT],
                cwd=base / "studies" / "quick",
                env={**env, "PYTHONPATH": str(base)},
                capture_output=True,
                text=True,
                check=True,
            ).stdout
        )
    sequential = record["variants"]["dvc repro"]["wall_s"]
    for variant in record["variants"].values():
        variant["speedup"] = sequential / variant["wall_s"]
    record["per_cell_s"] = {
        "cold (dvc repro stage, fresh process)": mean(cold),
        "warm (runner worker, after its first cell)": mean(warm),
        "bare Keras fit (build, compile, fit, test; warm process)": mean(bare[1:]),
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "runner.json").write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
    plot(record, args.out / "runner.png")
    print(f"quick study, 16 cells, {record['machine']}")
    print(f"{'variant':<22} {'wall s':>8} {'speed-up':>9} {'slot use':>9}")
    for name, v in record["variants"].items():
        use = f"{v['slot_utilisation']:.0%}" if "slot_utilisation" in v else "-"
        print(f"{name:<22} {v['wall_s']:8.1f} {v['speedup']:8.2f}x {use:>9}")
    for name, seconds in record["per_cell_s"].items():
        print(f"{seconds:7.2f} s per cell  {name}")


def plot(record: dict, path: Path) -> None:
    fig, (walls, cells, gantt) = plt.subplots(1, 3, figsize=(14, 3.6), constrained_layout=True)
    names = list(record["variants"])
    walls.barh(names, [record["variants"][n]["wall_s"] for n in names], color="#1f77b4")
    walls.invert_yaxis()
    walls.set(xlabel="seconds (16 cells + report)", title="wall time")
    for i, n in enumerate(names):
        walls.text(record["variants"][n]["wall_s"], i, f" {record['variants'][n]['speedup']:.2f}x", va="center")
    labels = list(record["per_cell_s"])
    cells.barh([lab.split(" (")[0] for lab in labels], list(record["per_cell_s"].values()), color="#ff7f0e")
    cells.invert_yaxis()
    cells.set(xlabel="seconds per cell", title="one cell: cold, warm, bare fit")
    timeline = record["variants"][names[-1]]["timeline"]
    for slot, start, end in timeline:
        gantt.barh(slot, end - start, left=start, color="#2ca02c", edgecolor="white")
    gantt.set(xlabel="seconds", ylabel="slot", title=f"{names[-1]}: cells per slot")
    fig.suptitle(f"the runner on the quick study ({record['machine']})")
    fig.savefig(path, dpi=90)


if __name__ == "__main__":
    main()
