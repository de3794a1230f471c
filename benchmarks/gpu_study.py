"""Device check: warm workers sharing one GPU, at real dataset sizes, and the full default study's time from them.

What it measures (a machine with an NVIDIA GPU, Keras on JAX: KERAS_BACKEND=jax):
- k warm workers at once on the GPU (k = 1 and each of --workers), each with the runner's own slot
  settings (`pipeline.runner.local.slot_config`: CPU threads cores/k, XLA_PYTHON_CLIENT_PREALLOCATE=false,
  XLA_PYTHON_CLIENT_MEM_FRACTION=0.9/k). Each worker imports once, trains one small warm-up cell, waits
  until every worker is warm, then trains its cells: the main study's settings (params.yaml: seed CNN,
  evaluations, probes, determinism) at real sizes, a CIFAR-10 one (45,000 training images) and a
  Fashion-MNIST one (54,000), `--epochs` each, on synthetic images of those shapes.
- Per k: the window from the common start to the last cell's end; the cells' training images over it
  (aggregate images/s, evaluation time included, against k = 1); each cell's wall time, compile time
  and training-only images/s.
- The main study (root params.yaml: `train`, `sweep` and `tuned` cells, with their epochs) on one
  GPU, extrapolated from the best k: each cell costs its dataset's measured compile time plus its
  epochs times the measured wall time per epoch (wall less compile, over the measured epochs: the
  step-0 and test evaluations counted as epoch time, so the estimate errs long), over k workers.

- With --batch-sizes: a bare Keras fit of the same CIFAR-10 model, one epoch, alone on the GPU, at
  each batch size, with `train.deterministic` true and false (each in a fresh process): if images/s
  grow with the batch as fast as the batch, each step's cost is a fixed per-step overhead, not the
  GPU's arithmetic; the two modes say what determinism costs at each size.

Run:    KERAS_BACKEND=jax python -m benchmarks.gpu_study --out DIR [--workers 4 8] [--epochs 2] [--fraction 1]
                                                     [--skip-uncached] [--batch-sizes 32 128 512] [--only-bare-fits]
Writes: DIR/gpu_study.json
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from statistics import median

from benchmarks.one_cell import write_data

# real sizes: the official training set less the 10% held out, the official test set
SIZES = {"cifar10": (45_000, 5_000, 10_000), "fashion_mnist": (54_000, 6_000, 10_000)}


def write_dataset(folder: Path, dataset: str, fraction: float = 1.0) -> None:
    """Synthetic images of the dataset's shape and sizes (times `fraction`, at least 64 each)."""
    train, val, test = (max(64, round(n * fraction)) for n in SIZES[dataset])
    write_data(folder / dataset, train, val, test, dataset)


def main_study_cells() -> list[tuple[str, int]]:
    """(dataset, epochs) of every train, sweep and tuned cell of the main study (root params.yaml)."""
    from pipeline.study.cells import cell_settings, expand_matrix, expand_sweep, sweep_settings
    from pipeline.study.params import load_params

    params = load_params(Path("params.yaml"))
    fixed = [(c.dataset, cell_settings(params, c).train.epochs) for c in expand_matrix(params)]
    sweep = [(c.dataset, sweep_settings(params, c).train.epochs) for c in expand_sweep(params)]
    return fixed + sweep + fixed  # tuned: the fixed cells again, each at its chosen rate


def worker(data: Path, slot: int, epochs: int, go: Path, out: Path) -> None:
    """One warm worker: a warm-up cell, then (after `go` appears) one cell per dataset, measured."""
    from pipeline.cell.backend import apply_determinism

    apply_determinism(True)  # before JAX starts: XLA reads its flags once
    import keras

    from pipeline.cell.training import train_cell
    from pipeline.data.prepared import load_prepared
    from pipeline.study.axes import apply_axes
    from pipeline.study.cells import expand_matrix
    from pipeline.study.params import load_params

    params = load_params(Path("params.yaml"))
    chosen = {"activation": "relu", "bn": "post", "dropout": 0.0}  # one configuration of the matrix
    cells = {c.dataset: c for c in expand_matrix(params) if all(c[k] == v for k, v in chosen.items())}
    datasets = {name: load_prepared(data / name) for name in SIZES}

    def settings(dataset: str, epochs: int):
        """The study's cell for `dataset`, with this worker's seed and `epochs`."""
        return apply_axes(params.train, {**cells[dataset].as_dict(), "seed": slot, "train.epochs": epochs})

    small = datasets["cifar10"]
    warm = type(small)(train=type(small.train)(small.train.images[:1024], small.train.labels[:1024]),
                       val=small.val, test=small.test, meta=small.meta)  # fmt: skip
    train_cell(settings("cifar10", 1), warm)
    go.parent.joinpath(f"ready-{slot}").touch()
    while not go.exists():
        time.sleep(0.05)
    records = []
    for dataset in SIZES:
        keras.backend.clear_session()
        began = time.time()
        result = train_cell(settings(dataset, epochs), datasets[dataset])
        records.append({
            "dataset": dataset, "began": began, "ended": time.time(),
            "images": len(datasets[dataset].train.labels) * epochs,
            "compile_s": result.summary["compile_seconds"], "train_s": result.summary["train_seconds"],
            "train_images_per_s": result.summary["throughput_images_per_s"],
            "outcome": result.summary["outcome"],
        })  # fmt: skip
    out.write_text(json.dumps(records))


def bare_fit_rates(data: Path, batch_sizes: list[int], deterministic: bool, out: Path) -> None:
    """Images/s of a bare `fit` (the study's CIFAR-10 cell, no evaluations) at each batch size, in this process."""
    from pipeline.cell.backend import apply_determinism

    apply_determinism(deterministic)  # before JAX starts: XLA reads its flags once
    import keras

    from pipeline.cell.models import build_model, model_spec
    from pipeline.cell.optimizers import build_optimizer
    from pipeline.data.prepared import load_prepared
    from pipeline.study.axes import apply_axes
    from pipeline.study.cells import expand_matrix
    from pipeline.study.params import load_params

    params = load_params(Path("params.yaml"))
    cell = next(c for c in expand_matrix(params) if c.dataset == "cifar10" and c["bn"] == "post")
    settings = apply_axes(params.train, cell.as_dict())
    prepared = load_prepared(data / "cifar10")
    rates = {}
    for batch in batch_sizes:
        # whole batches only: a last, smaller batch would compile a step of its own inside the timed epoch
        whole = len(prepared.train.labels) // batch * batch
        images, labels = prepared.train.images[:whole], prepared.train.labels[:whole]
        keras.backend.clear_session()
        model = build_model(model_spec(settings), prepared.input_shape, prepared.num_classes)
        model.compile(optimizer=build_optimizer(settings.train.optimizer), loss="sparse_categorical_crossentropy",
                      metrics=["accuracy"], jit_compile=True)  # fmt: skip
        model.fit(images[: batch * 20], labels[: batch * 20], batch_size=batch, verbose=0)  # compile
        began = time.perf_counter()
        model.fit(images, labels, batch_size=batch, epochs=1, verbose=0)
        seconds = time.perf_counter() - began
        rates[str(batch)] = {
            "images_per_s": len(labels) / seconds,
            "ms_per_step": 1000 * seconds / -(-len(labels) // batch),
        }
    out.write_text(json.dumps(rates))


def run_workers(data: Path, k: int, epochs: int, work: Path, cache: Path | None) -> dict:
    from pipeline.runner.local import slot_config
    from pipeline.runner.worker import slot_environment

    config = slot_config(k, None, None)
    folder = work / f"k{k}-{'cache' if cache else 'nocache'}"
    folder.mkdir()
    # JAX's persistent compilation cache: a cell compiles the same programs as every other cell of its
    # shapes (the weights are arguments), so with it only the first cell of a kind compiles
    caching = {"JAX_COMPILATION_CACHE_DIR": str(cache), "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS": "0"}
    go = folder / "go"
    procs = []
    for slot in range(k):
        env = {**os.environ, **slot_environment(config, slot), **(caching if cache else {})}
        command = [sys.executable, "-m", "benchmarks.gpu_study", "--worker", str(data), str(slot), str(epochs),
                   str(go), str(folder / f"out-{slot}.json")]  # fmt: skip
        log = (folder / f"log-{slot}.txt").open("w")
        procs.append(subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT))
    while len(list(folder.glob("ready-*"))) < k:
        if any(p.poll() not in (None, 0) for p in procs):
            break
        time.sleep(0.05)
    start = time.time()
    go.touch()
    codes = [p.wait() for p in procs]
    if any(codes):
        tails = [(folder / f"log-{s}.txt").read_text()[-2000:] for s, c in enumerate(codes) if c]
        return {"k": k, "cache": bool(cache), "failed": codes, "log_tails": tails}
    cells = [r for s in range(k) for r in json.loads((folder / f"out-{s}.json").read_text())]
    window = max(r["ended"] for r in cells) - start
    per_dataset = {}
    for dataset in SIZES:
        mine = [r for r in cells if r["dataset"] == dataset]
        walls = [r["ended"] - r["began"] for r in mine]
        per_dataset[dataset] = {
            "cell_wall_s": median(walls),
            "compile_s": median(r["compile_s"] for r in mine),
            "epoch_wall_s": median((w - r["compile_s"]) / epochs for w, r in zip(walls, mine, strict=True)),
            "train_images_per_s_per_cell": median(r["train_images_per_s"] for r in mine),
        }
    return {
        "k": k,
        "cache": bool(cache),
        "threads_per_worker": config.threads,
        "memory_fraction": config.gpu_memory_fraction,
        "window_s": window,
        "aggregate_images_per_s": sum(r["images"] for r in cells) / window,
        "per_dataset": per_dataset,
        "outcomes": sorted({r["outcome"] for r in cells}),
    }


def extrapolate(measured: dict, cells: list[tuple[str, int]]) -> float:
    """Seconds for `cells` on one GPU with measured['k'] workers, each cell as its dataset measured."""
    per = measured["per_dataset"]
    total = sum(per[d]["compile_s"] + epochs * per[d]["epoch_wall_s"] for d, epochs in cells)
    return total / measured["k"]


def summarize(record: dict) -> None:
    """Each run's aggregate against one worker's with the same cache setting, and the main study's time."""
    good = [r for r in record["runs"] if "failed" not in r]
    for r in good:
        one = next((o for o in good if o["k"] == 1 and o["cache"] == r["cache"]), None)
        if one:
            r["aggregate_vs_one"] = r["aggregate_images_per_s"] / one["aggregate_images_per_s"]
    cells = main_study_cells()
    record["main_study"] = {
        "cells": len(cells),
        "cell_epochs": sum(e for _, e in cells),
        "extrapolated_minutes": {f"k={r['k']}, cache={r['cache']}": extrapolate(r, cells) / 60 for r in good},
    }


def main() -> int:
    if len(sys.argv) > 1 and sys.argv[1] == "--worker":
        data, slot, epochs, go, out = sys.argv[2:7]
        worker(Path(data), int(slot), int(epochs), Path(go), Path(out))
        return 0
    if len(sys.argv) > 1 and sys.argv[1] == "--bare-fits":
        bare_fit_rates(Path(sys.argv[2]), [int(b) for b in sys.argv[5:]], sys.argv[4] == "1", Path(sys.argv[3]))
        return 0
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    parser.add_argument("--workers", type=int, nargs="*", default=[4, 8], help="k > 1 to run besides k = 1")
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--fraction", type=float, default=1.0, help="of the real sizes (a smoke run on a CPU)")
    parser.add_argument("--skip-uncached", action="store_true", help="no k = 1 run without the compilation cache")
    parser.add_argument("--batch-sizes", type=int, nargs="*", default=[], help="bare fits at these batch sizes")
    parser.add_argument("--only-bare-fits", action="store_true", help="no worker runs, only the bare fits")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bnbench-gpu-study-"))
    for dataset in SIZES:
        write_dataset(work / "data", dataset, args.fraction)
    from importlib import metadata

    record: dict = {
        "versions": {n: metadata.version(n) for n in ("jax", "jaxlib", "keras")},
        "epochs": args.epochs,
        "fraction_of_real_sizes": args.fraction,
    }
    record["runs"] = []
    args.out.mkdir(parents=True, exist_ok=True)
    cache = work / "jax-cache"
    # most telling first, so that a run cut short still says the most: the cache's effect comes last
    runs = [(1, True), *((k, True) for k in sorted(args.workers, reverse=True))]
    runs += [] if args.skip_uncached else [(1, False)]
    for k, cached in [] if args.only_bare_fits else runs:
        record["runs"].append(run_workers(work / "data", k, args.epochs, work, cache if cached else None))
        print(json.dumps(record["runs"][-1]), flush=True)
        summarize(record)
        (args.out / "gpu_study.json").write_text(json.dumps(record, indent=2) + "\n")  # so far, if cut short
    print(json.dumps(record.get("main_study")), flush=True)
    for deterministic in (True, False) if args.batch_sizes else ():
        out = work / f"bare-fits-{deterministic}.json"
        command = [sys.executable, "-m", "benchmarks.gpu_study", "--bare-fits", str(work / "data"), str(out)]
        subprocess.run([*command, str(int(deterministic)), *map(str, args.batch_sizes)], check=True)
        key = f"bare_fit_by_batch_size{'' if deterministic else '_not_deterministic'}"
        record[key] = json.loads(out.read_text())
        print(key, json.dumps(record[key]), flush=True)
        (args.out / "gpu_study.json").write_text(json.dumps(record, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
