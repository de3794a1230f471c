"""Benchmark: a group of G cells trained as one program against the same G cells one by one (Keras on JAX).

The cells: the main study's seed CNN (BN pre, ReLU, dropout 0.5) on generated Fashion-MNIST-format data
(`--train` images, stratified validation and test as the prepare stage splits them), `--epochs` epochs
of 32-image steps, seeds 0..G-1, with the study's evaluation schedule reduced to one pass per epoch
and no probes (what is measured is training). In one process, side by side:
- one-cell: `train_cell` for each seed in turn (Keras' fit; the runner's one-cell engine);
- group: `train_group` of the G seeds (pipeline/cell/group.py), and of one seed (G = 1, the engine's
  own overhead).
Reported: each variant's wall time and its training images per second over the training segments
after the first (compilation excluded), summed over the cells it trained, and the per-step losses'
largest difference between a member and its one-cell run.

Run:    KERAS_BACKEND=jax uv run python -m benchmarks.group_engine [--out benchmarks/results] [--size 5]
Writes: <out>/group_engine.json and <out>/group_engine.png
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def _settings(seed: int, epochs: int):
    from pipeline.study.schema import CellSettings

    train = {
        "architecture": "seed_cnn", "optimizer": {"name": "rmsprop", "learning_rate": 1e-4}, "epochs": epochs,
        "batch_size": 32, "evals_per_epoch": 1, "early_evals": False, "gradient_probe": 0, "bn_probe": 0,
        "bn_momentum": 0.99, "bn_epsilon": 0.001,
    }  # fmt: skip
    cell = {"dataset": "fashion_mnist", "activation": "relu", "bn": "pre", "dropout": 0.5, "seed": seed}
    return CellSettings.model_validate({**cell, "train": train})


def _throughput(results) -> float:
    """Training images per second of all `results` together, compilation excluded.

    A group's members each report the group's seconds (they trained at once); one-cell runs add up.
    """
    images = sum(r.summary["throughput_images_per_s"] * r.summary["train_seconds"] for r in results)
    grouped = results[0].summary["engine"] == "group"
    seconds = results[0].summary["train_seconds"] if grouped else sum(r.summary["train_seconds"] for r in results)
    return images / seconds


def main() -> None:
    import keras
    import numpy as np

    from pipeline.cell.group import train_group
    from pipeline.cell.training import train_cell
    from pipeline.data.prepared import load_prepared
    from tests.helpers import write_tiny_prepared

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    parser.add_argument("--size", type=int, default=5, help="G, the cells of the group")
    parser.add_argument("--train", type=int, default=1200, help="generated training-set images before the split")
    parser.add_argument("--epochs", type=int, default=2)
    args = parser.parse_args()
    if keras.config.backend() != "jax":
        raise SystemExit("the group engine trains Keras on JAX: run with KERAS_BACKEND=jax")
    with tempfile.TemporaryDirectory() as folder:
        data = load_prepared(write_tiny_prepared(Path(folder), train=args.train, test=200, val_fraction=0.1))
    settings = [_settings(seed, args.epochs) for seed in range(args.size)]
    variants = {}
    began = time.perf_counter()
    singles = [train_cell(s, data) for s in settings]
    variants["one-cell x G"] = (time.perf_counter() - began, singles)
    began = time.perf_counter()
    grouped = train_group(settings, data)
    variants[f"group G={args.size}"] = (time.perf_counter() - began, grouped)
    began = time.perf_counter()
    alone = train_group(settings[:1], data)
    variants["group G=1"] = (time.perf_counter() - began, alone)
    difference = max(
        float(np.abs(g.steps["train_loss"].to_numpy() - s.steps["train_loss"].to_numpy()).max())
        for g, s in zip(grouped, singles, strict=True)
    )
    rows = [
        {"variant": name, "cells": len(results), "wall_s": wall, "train_images_per_s": _throughput(results)}
        for name, (wall, results) in variants.items()
    ]
    print(f"{'variant':<16}{'cells':>6}{'wall s':>10}{'train images/s':>16}")
    for row in rows:
        print(f"{row['variant']:<16}{row['cells']:>6}{row['wall_s']:>10.1f}{row['train_images_per_s']:>16.0f}")
    print(f"largest per-step loss difference, member against its one-cell run: {difference:.2e}")
    args.out.mkdir(parents=True, exist_ok=True)
    machine = f"{platform.machine()}, {os.cpu_count()} cores, {jax_device()}"
    result = {
        "machine": machine, "size": args.size, "epochs": args.epochs, "train_images": len(data.train.labels),
        "steps_per_cell": int(singles[0].summary["steps_trained"]), "rows": rows,
        "largest_loss_difference": difference,
    }  # fmt: skip
    (args.out / "group_engine.json").write_text(json.dumps(result, indent=2) + "\n")
    figure, axis = plt.subplots(figsize=(6, 3))
    axis.barh([r["variant"] for r in rows], [r["train_images_per_s"] for r in rows])
    axis.set_xlabel("training images per second, all cells together")
    axis.set_title(f"group engine on {machine}", fontsize=9)
    figure.tight_layout()
    figure.savefig(args.out / "group_engine.png", dpi=120)


def jax_device() -> str:
    import jax

    device = jax.devices()[0]
    return f"jax {jax.__version__} on {device.platform}: {device.device_kind}"


if __name__ == "__main__":
    main()
