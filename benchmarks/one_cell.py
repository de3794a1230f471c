"""One cell in a fresh process, for the benchmarks that compare backends and determinism modes.

The cell: seed_cnn (MaxPool, whose XLA gradient is a select-and-scatter), BN after the activation,
dropout 0.5, on synthetic CIFAR-10-shaped images (a template per class plus noise), batch 32.
A child process (`python -m benchmarks.one_cell DATA DETERMINISTIC OUT`, KERAS_BACKEND from the
environment) trains it with `train.deterministic` as given and writes its measurements (all but
time), its times and, on JAX, the device memory JAX reports, to OUT.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

TIMING = {"seconds", "compile_seconds", "train_seconds", "throughput_images_per_s"}
SETTINGS = {
    "dataset": "cifar10", "activation": "relu", "bn": "post", "dropout": 0.5, "seed": 3,
    "train": {"architecture": "seed_cnn", "optimizer": {"name": "rmsprop", "learning_rate": 0.001}, "epochs": 2,
              "batch_size": 32, "evals_per_epoch": 4, "bn_momentum": 0.99, "bn_epsilon": 0.001},
}  # fmt: skip


def write_data(folder: Path, train: int, val: int, test: int, dataset: str = "cifar10") -> None:
    """Synthetic images of `dataset`'s shape: a template per class plus noise, so that there is something to learn."""
    import numpy as np

    from pipeline.data.datasets import DATASETS
    from pipeline.data.prepared import Split, channel_stats, write_prepared

    descriptor = DATASETS[dataset]
    rng = np.random.default_rng(0)
    templates = rng.integers(0, 256, size=(10, *descriptor.input_shape))

    def split(n: int) -> Split:
        labels = rng.integers(0, 10, size=n).astype(np.uint8)
        noise = rng.normal(0, 60, size=(n, *descriptor.input_shape))
        return Split(np.clip(templates[labels] + noise, 0, 255).astype(np.uint8), labels)

    splits = {"train": split(train), "val": split(val), "test": split(test)}
    mean, std = channel_stats(splits["train"].images)
    names = list(descriptor.class_names)
    meta = {"mean": mean, "std": std, "class_names": names, "data_digest": "synthetic", "published_data": False}
    write_prepared(folder, splits, meta)


def child(data: Path, deterministic: bool, out: Path) -> None:
    """One cell in this process; its measurements, time and device memory into `out`."""
    from pipeline.cell.backend import apply_determinism, name

    apply_determinism(deterministic)  # before the backend starts: XLA reads its flags once
    from pipeline.cell.device import check_device
    from pipeline.cell.training import train_cell
    from pipeline.data.prepared import load_prepared
    from pipeline.study.schema import CellSettings

    device = check_device()
    settings = CellSettings.model_validate({**SETTINGS, "train": {**SETTINGS["train"], "deterministic": deterministic}})
    began = time.perf_counter()
    result = train_cell(settings, load_prepared(data))
    stats = {}
    if name() == "jax":
        import jax

        stats = jax.devices()[0].memory_stats() or {}
    record = {
        "device": device,
        "xla_flags": os.environ.get("XLA_FLAGS", ""),
        "wall_s": time.perf_counter() - began,
        "timing": {k: result.summary[k] for k in TIMING - {"seconds"}} | {"last_epoch_seconds": last_epoch(result)},
        "memory": {k: stats.get(k) for k in ("bytes_limit", "peak_bytes_in_use")},
        "history": result.history.drop(columns=[c for c in result.history if c in TIMING]).to_dict(orient="list"),
        "steps": result.steps.to_dict(orient="list"),
        "summary": {k: v for k, v in result.summary.items() if k not in TIMING},
    }
    out.write_text(json.dumps(record, allow_nan=True))


def last_epoch(result) -> float:
    """Training seconds of the last epoch alone: every step shape is compiled by then (XLA compiles the
    epoch's smaller last batch anew, inside the first epoch's timed segments)."""
    history, per_epoch = result.history, result.summary["steps_per_epoch"]
    end = history["step"].iloc[-1]
    start = history.loc[history["step"] == end - per_epoch, "seconds"]
    return float(history["seconds"].iloc[-1] - start.iloc[0])


def spawn(data: Path, deterministic: bool, out: Path, env: dict | None = None) -> subprocess.Popen:
    """A child process training the cell; its output goes to `out` with .log in place of .json."""
    command = [sys.executable, "-m", "benchmarks.one_cell", str(data), str(int(deterministic)), str(out)]
    with out.with_suffix(".log").open("w") as log:
        return subprocess.Popen(command, env={**os.environ, **(env or {})}, stdout=log, stderr=subprocess.STDOUT)


def outcome(out: Path, code: int) -> dict:
    """The child's record, or its exit code and the end of its log."""
    if code == 0:
        return json.loads(out.read_text())
    return {"failed": code, "log_tail": out.with_suffix(".log").read_text()[-3000:]}


def compare(a: dict, b: dict) -> dict:
    """Whether two runs measured the same, and by how much their per-step losses differ where they do not."""
    import numpy as np

    same = all(json.dumps(a[p], sort_keys=True) == json.dumps(b[p], sort_keys=True) for p in ("history", "steps"))
    same = same and json.dumps(a["summary"], sort_keys=True) == json.dumps(b["summary"], sort_keys=True)
    steps = np.asarray(a["steps"]["train_loss"], float), np.asarray(b["steps"]["train_loss"], float)
    first = np.flatnonzero(steps[0] != steps[1])
    return {
        "identical": same,
        "first_step_differing": int(first[0]) + 1 if len(first) else None,
        "max_abs_step_loss_difference": float(np.max(np.abs(steps[0] - steps[1]))),
        "test_accuracy": [a["summary"]["test_accuracy"], b["summary"]["test_accuracy"]],
        "test_loss": [a["summary"]["test_loss"], b["summary"]["test_loss"]],
    }


if __name__ == "__main__":
    child(Path(sys.argv[1]), bool(int(sys.argv[2])), Path(sys.argv[3]))
