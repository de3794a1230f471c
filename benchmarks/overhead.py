"""Benchmark: what one cell costs over a bare Keras `fit` of the same model, data and epochs.

The cell: the main study's seed CNN (BN post, ReLU) on a stratified 5,600-image subset of a
full-size synthetic Fashion-MNIST, 3 epochs of 32-image steps, with the study's measurement
settings (4 validation passes per epoch plus early ones, gradient-norm and BN probes, per-step
losses, MLflow logging, output files): about a minute on 2 CPU cores.
The bare fit: what the articles write, `model.fit(x, y, epochs, batch_size,
validation_data=...)` with one validation pass per epoch, then one test evaluation; the same
model builder, optimizer, seed and compile settings (no XLA, as the cell), and no files.

Measured side by side, alternating, `--repeat` times each (medians reported):
- cold: a fresh process each, Python and the framework imported in it (the train stage's own
  command, as `dvc repro` runs it, against a script doing the bare fit);
- warm: in one process that has already trained once (a runner worker), `run_cell` against the
  bare fit.
Targets (issue "The full study in minutes"): at most 1.10x cold and 1.05x warm.

Run:    uv run python -m benchmarks.overhead [--out benchmarks/results] [--repeat 3]
Writes: <out>/overhead.json and <out>/overhead.png
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
from statistics import median

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from tools.fake_data import full_size_mirror_env  # noqa: E402
from tools.repo_copy import copy_repo  # noqa: E402

TARGETS = {"cold": 1.10, "warm": 1.05}
STUDY = "studies/overhead"
OVERLAY = """\
study:
  name: bnbench-overhead
prepare:
  max_train_examples: 5600
  max_test_examples: 2000
matrix:
  dataset: [fashion_mnist]
  activation: [relu]
  bn: [post]
  dropout: [0.0]
  seed: [0]
train:
  epochs: 3
sweep: null
"""

# Shared by the cold bare script and the warm loop: the bare fit of the study's one cell.
BARE_FIT = """
import time
from pathlib import Path
import keras
from pipeline.cells import cell_settings, expand_matrix
from pipeline.data.prepared import load_prepared
from pipeline.models import build_model, model_spec
from pipeline.optimizers import build_optimizer
from pipeline.params import load_params
from pipeline.seeding import seed_everything

PARAMS = load_params(Path("../../params.yaml"), Path("params.yaml"))
(CELL,) = expand_matrix(PARAMS)
DATA = load_prepared(Path("data/prepared") / CELL.dataset)


def bare_fit():
    s = cell_settings(PARAMS, CELL)
    began = time.perf_counter()
    keras.backend.clear_session()
    seed_everything(s.seed)
    model = build_model(model_spec(s), DATA.input_shape, DATA.num_classes)
    model.compile(optimizer=build_optimizer(s.train.optimizer), loss="sparse_categorical_crossentropy",
                  metrics=["accuracy"], jit_compile=False)
    model.fit(DATA.train.images, DATA.train.labels, batch_size=s.train.batch_size, epochs=s.train.epochs,
              validation_data=(DATA.val.images, DATA.val.labels), verbose=0)
    model.evaluate(DATA.test.images, DATA.test.labels, batch_size=512, verbose=0)
    return time.perf_counter() - began
"""

WARM = (
    BARE_FIT
    + """
import json, sys
from pipeline.run_cell import run_cell

def cell():
    began = time.perf_counter()
    run_cell(PARAMS, CELL, Path("data/prepared") / CELL.dataset, Path("results/warm") / CELL.name)
    return time.perf_counter() - began

cell(); bare_fit()  # the worker's first cell: imports, tracing, the MLflow store
times = {"cell": [], "bare": []}
for _ in range(int(sys.argv[1])):
    times["cell"].append(cell())
    times["bare"].append(bare_fit())
json.dump(times, sys.stdout)
"""
)


def run(command: list[str], cwd: Path, env: dict) -> tuple[float, str]:
    began = time.perf_counter()
    done = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True)
    if done.returncode:
        raise SystemExit(f"{' '.join(command)} failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
    return time.perf_counter() - began, done.stdout


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bnbench-overhead-") as tmp:
        repo = Path(tmp) / "repo"
        copy_repo(repo)
        (repo / STUDY).mkdir(parents=True)
        (repo / STUDY / "params.yaml").write_text(OVERLAY, encoding="utf-8")
        env = {**full_size_mirror_env(Path(tmp)), "PYTHONPATH": str(repo)}
        env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
        study = repo / STUDY
        run([sys.executable, "-m", "pipeline.dvcfile"], repo, env)
        run([sys.executable, "-m", "dvc", "repro", f"{STUDY}/dvc.yaml:prepare@fashion_mnist"], repo, env)
        cmd = _train_command(study)
        cold: dict[str, list[float]] = {"cell": [], "bare": []}
        for _ in range(args.repeat):
            shutil.rmtree(study / "results", ignore_errors=True)
            cold["cell"].append(run([sys.executable, "-m", *cmd], study, env)[0])
            cold["bare"].append(run([sys.executable, "-c", BARE_FIT + "\nbare_fit()\n"], study, env)[0])
        warm = json.loads(run([sys.executable, "-c", WARM, str(args.repeat)], study, env)[1])
        cell_summary = json.loads(next((study / "results" / "warm").glob("*/metrics.json")).read_text())

    record = {
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, CPU only, Python {platform.python_version()}",
        "cell": cell_summary["cell"],
        "steps": cell_summary["steps_trained"],
        "cold_s": cold,
        "warm_s": warm,
        "ratio": {k: median(v["cell"]) / median(v["bare"]) for k, v in (("cold", cold), ("warm", warm))},
        "targets": TARGETS,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "overhead.json").write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
    _plot(record, args.out / "overhead.png")
    print(f"{record['cell']}, {record['steps']} steps ({record['machine']})")
    print("| | cell (s) | bare fit (s) | ratio | target |\n| --- | --- | --- | --- | --- |")
    for kind, times in (("cold", cold), ("warm", warm)):
        print(
            f"| {kind} | {median(times['cell']):.1f} | {median(times['bare']):.1f} | "
            f"{record['ratio'][kind]:.2f}x | <= {TARGETS[kind]:.2f}x |"
        )


def _train_command(study: Path) -> list[str]:
    """The train stage's command for the study's one cell, as its generated dvc.yaml has it."""
    from ruamel.yaml import YAML

    stages = YAML(typ="safe").load((study / "dvc.yaml").read_text(encoding="utf-8"))["stages"]
    (cell,) = stages["train"]["foreach"]
    cmd = stages["train"]["do"]["cmd"].replace("${key}", cell).replace("${item.dataset}", "fashion_mnist")
    return cmd.split()[2:]  # after `python -m`


def _plot(record: dict, path: Path) -> None:
    fig, ax = plt.subplots(figsize=(6, 2.8), constrained_layout=True)
    kinds = ["cold", "warm"]
    for offset, (what, color) in enumerate((("cell", "#1f77b4"), ("bare", "#999"))):
        values = [median(record[f"{k}_s"][what]) for k in kinds]
        ax.barh([i + 0.4 * offset for i in range(2)], values, height=0.38, color=color, label=what)
    ax.set_yticks([0.2, 1.2], [f"{k}\n{record['ratio'][k]:.2f}x (target {TARGETS[k]:.2f}x)" for k in kinds])
    ax.invert_yaxis()
    ax.set(xlabel="seconds (median)", title=f"one cell against a bare fit ({record['machine'].split(',')[1].strip()})")
    ax.legend(["cell", "bare Keras fit"], loc="lower right")
    fig.savefig(path, dpi=100, metadata={"Software": None})


if __name__ == "__main__":
    main()
