"""Benchmark: what one cell costs over a bare Keras `fit` of the same model, data and epochs.

The cell: the main study's seed CNN (BN post, ReLU) on a stratified 5,600-image subset of a
full-size synthetic Fashion-MNIST, 5 epochs of 32-image steps, with per-step losses, MLflow
logging and output files: 20-60 s on 2 CPU cores, as loaded.
The bare fit: what the articles write, `model.fit(x, y, epochs, batch_size,
validation_data=...)` with one validation pass per epoch, then one test evaluation; the same
model builder, optimizer, seed and compile settings (no XLA, as the cell), and no files.

The cell runs under two measurement schedules (SCHEDULES), each a params overlay:
- "bare": what the bare fit measures, one validation pass per epoch and no probes (the cell adds
  one at step 0): the pipeline's own overhead, where the targets apply;
- "study": the study's defaults (params.yaml: 4 validation passes per epoch plus early ones, the
  gradient-norm and re-estimated-BN probes at each): what those measurements cost, a choice made
  in params (`train.evals_per_epoch`, `early_evals`, `gradient_probe`, `bn_probe`, `probe_every`).
  The warm study-schedule cells also say where their time goes (validation, probes, training).

Measured side by side, alternating, `--repeat` times each (medians reported):
- cold: a fresh process each, Python and the framework imported in it (the train stage's own
  command, as `dvc repro` runs it, against a script doing the bare fit);
- warm: in one process that has already trained once (a runner worker), `run_cell` against the
  bare fit.
Targets (issue "The full study in minutes"), for the bare schedule: at most 1.10x cold and 1.05x warm.

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
  epochs: 5
sweep: null
"""
# the cell's measurement schedules: params overlays on top of the study's (see the docstring)
SCHEDULES = {
    "bare": "train:\n  evals_per_epoch: 1\n  early_evals: false\n  gradient_probe: 0\n  bn_probe: 0\n",
    "study": "train: {}\n",
}

# Shared by the cold bare script and the warm loop: the bare fit of the study's one cell.
BARE_FIT = """
import time
from pathlib import Path
import keras
from pipeline.study.cells import cell_settings, expand_matrix
from pipeline.data.prepared import load_prepared
from pipeline.cell.models import build_model, model_spec
from pipeline.cell.optimizers import build_optimizer
from pipeline.study.params import load_params
from pipeline.cell.seeding import seed_everything

PARAMS = load_params(Path("../../params.yaml"), Path("params.yaml"))
SCHEDULE_PARAMS = {name: load_params(Path("../../params.yaml"), Path("params.yaml"), Path(f"schedule-{name}.yaml"))
                   for name in ("bare", "study")}
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
import collections, json, sys
from pipeline.cell import training
from pipeline.cell.checkpoints import CHECKPOINTS_DIR
from pipeline.cell.gradients import GradientNorms
from pipeline.cell.precise_bn import PreciseBN
from pipeline.cell.run import run_cell
from pipeline.repo import repo_root
from pipeline.tracking.runs import MlflowTracker
from pipeline.tracking.settings import read_tracking_settings

spent = collections.defaultdict(float)  # seconds per part of the cell, for the study schedule's breakdown


def timed(owner, name, part):
    inner = getattr(owner, name)

    def wrapper(*args, **kwargs):
        began = time.perf_counter()
        try:
            return inner(*args, **kwargs)
        finally:
            spent[part] += time.perf_counter() - began

    setattr(owner, name, wrapper)


timed(training, "evaluate", "validation and test passes")
timed(PreciseBN, "predict", "re-estimated BN probe")
timed(GradientNorms, "__call__", "gradient-norm probe")
timed(keras.Model, "fit", "training (fit segments)")


def cell(schedule):
    spent.clear()
    began = time.perf_counter()
    params, root = SCHEDULE_PARAMS[schedule], repo_root()
    tracker = MlflowTracker(read_tracking_settings(root), params)
    out = Path("results/warm") / CELL.name
    run_cell(params, CELL, Path("data/prepared") / CELL.dataset, out, tracker, root / CHECKPOINTS_DIR)
    return time.perf_counter() - began, dict(spent)

cell("study"); cell("bare"); bare_fit()  # the worker's first cells: imports, tracing, the MLflow store
times = {"cell_bare": [], "cell_study": [], "bare": [], "parts_study": []}
for _ in range(int(sys.argv[1])):
    for schedule in ("bare", "study"):
        seconds, parts = cell(schedule)
        times[f"cell_{schedule}"].append(seconds)
        if schedule == "study":
            times["parts_study"].append(parts)
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
        for name, overlay in SCHEDULES.items():
            (study / f"schedule-{name}.yaml").write_text(overlay, encoding="utf-8")
        cmd = _train_command(study)
        cold: dict[str, list[float]] = {"cell_bare": [], "cell_study": [], "bare": []}
        for _ in range(args.repeat):
            for name in SCHEDULES:
                shutil.rmtree(study / "results", ignore_errors=True)
                schedule = ["--params", f"schedule-{name}.yaml"]
                cold[f"cell_{name}"].append(run([sys.executable, "-m", *cmd, *schedule], study, env)[0])
            cold["bare"].append(run([sys.executable, "-c", BARE_FIT + "\nbare_fit()\n"], study, env)[0])
        warm = json.loads(run([sys.executable, "-c", WARM, str(args.repeat)], study, env)[1])
        cell_summary = json.loads(next((study / "results" / "warm").glob("*/metrics.json")).read_text())

    parts = warm.pop("parts_study")
    record = {
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, CPU only, Python {platform.python_version()}",
        "load_average_1min_at_end": os.getloadavg()[0],
        "cell": cell_summary["cell"],
        "steps": cell_summary["steps_trained"],
        "schedules": SCHEDULES,
        "cold_s": cold,
        "warm_s": warm,
        "ratio": {
            f"{kind}_{name}": median(times[f"cell_{name}"]) / median(times["bare"])
            for kind, times in (("cold", cold), ("warm", warm))
            for name in SCHEDULES
        },
        "warm_study_parts_s": {part: median(p.get(part, 0.0) for p in parts) for part in parts[0]},
        "targets": TARGETS,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "overhead.json").write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
    _plot(record, args.out / "overhead.png")
    print(f"{record['cell']}, {record['steps']} steps ({record['machine']})")
    print("| | schedule | cell (s) | bare fit (s) | ratio | target |\n| --- | --- | --- | --- | --- | --- |")
    for kind, times in (("cold", cold), ("warm", warm)):
        for name in SCHEDULES:
            target = f"<= {TARGETS[kind]:.2f}x" if name == "bare" else "-"
            print(
                f"| {kind} | {name} | {median(times[f'cell_{name}']):.1f} | {median(times['bare']):.1f} | "
                f"{record['ratio'][f'{kind}_{name}']:.2f}x | {target} |"
            )
    print("warm cell, study schedule, median seconds per part:")
    for part, seconds in record["warm_study_parts_s"].items():
        print(f"  {part}: {seconds:.1f}")


def _train_command(study: Path) -> list[str]:
    """The train stage's command for the study's one cell, as its generated dvc.yaml has it."""
    from ruamel.yaml import YAML

    stages = YAML(typ="safe").load((study / "dvc.yaml").read_text(encoding="utf-8"))["stages"]
    (cell,) = stages["train"]["foreach"]
    cmd = stages["train"]["do"]["cmd"].replace("${key}", cell).replace("${item.dataset}", "fashion_mnist")
    return cmd.split()[2:]  # after `python -m`


def _plot(record: dict, path: Path) -> None:
    fig, ax = plt.subplots(figsize=(6.5, 3.4), constrained_layout=True)
    rows = [(kind, name) for kind in ("cold", "warm") for name in SCHEDULES]
    for i, (kind, name) in enumerate(rows):
        cell, bare = median(record[f"{kind}_s"][f"cell_{name}"]), median(record[f"{kind}_s"]["bare"])
        ax.barh(i, cell, height=0.38, color="#1f77b4", label="cell" if i == 0 else None)
        ax.barh(i + 0.4, bare, height=0.38, color="#999", label="bare Keras fit" if i == 0 else None)
    labels = []
    for kind, name in rows:
        target = f", target {TARGETS[kind]:.2f}x" if name == "bare" else ""
        labels.append(f"{kind}, {name} schedule\n{record['ratio'][f'{kind}_{name}']:.2f}x{target}")
    ax.set_yticks([i + 0.2 for i in range(len(rows))], labels)
    ax.invert_yaxis()
    cores = record["machine"].split(",")[1].strip()
    ax.set(xlabel="seconds (median)", title=f"one cell against a bare fit ({cores})")
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.18), ncols=2, frameon=False)
    fig.savefig(path, dpi=100, metadata={"Software": None})


if __name__ == "__main__":
    main()
