"""Benchmark: what a cell's MLflow logging costs on its training path, before and after "logging off the training path".

The cell: `run_cell` as the train stage and the runner call it, with the `MlflowTracker` on a SQLite
store, on generated Fashion-MNIST-format data (tests/helpers.py: write_tiny_prepared) sized so that
an epoch has a full study cell's steps (1,407 steps of 32 images, as CIFAR-10's 45,000 training
images), the study's evaluation schedule (4 passes per epoch, the early ones, both probes), 3 epochs
(`--epochs`; the study's 10 take minutes a cell here, and logging grows with the steps as the cell's
time does) and the small `mlp` architecture. Its steps are cheaper than a real cell's, so logging's
share of its wall time is larger than in a real cell's.

Variants, alternating in one warm process (a runner worker's), `--repeat` times each (medians):
- "none": a tracker that logs nothing; the cell's wall time without logging;
- "before": the logging as it was: every step's loss as a metric, and each call delivered to the
  store before it returns (here: the delivery thread's request answered in the calling thread);
- "after": the logging as it is: the per-step metric downsampled (pipeline/tracking/step_losses.py),
  each call journaled and its delivery left to the run's delivery thread.
Logging's cost is the time spent inside the run's calls (log_params, log_eval, log_steps, finish,
end: end waits for the delivery thread) over the cell's wall time; the target is under 5%. Beside
it, the delivery's own time and CPU time wherever it ran: off the training path, it still shares
the CPU with training.

Run:    uv run python -m benchmarks.logging_cost [--out benchmarks/results] [--repeat 3] [--epochs 3]
Writes: <out>/logging_cost.json and <out>/logging_cost.png
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import tempfile
import time
from collections import defaultdict
from pathlib import Path
from statistics import median

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from mlflow.tracking import MlflowClient  # noqa: E402
from ruamel.yaml import YAML  # noqa: E402

from pipeline.cell.run import run_cell  # noqa: E402
from pipeline.study.cells import expand_matrix  # noqa: E402
from pipeline.study.params import load_params  # noqa: E402
from pipeline.tracking import runs  # noqa: E402
from pipeline.tracking.delivery import Delivery  # noqa: E402
from pipeline.tracking.names import STEP_LOSS_METRIC  # noqa: E402
from pipeline.tracking.settings import read_tracking_settings  # noqa: E402
from pipeline.tracking.spool import now_ms  # noqa: E402
from tests.helpers import REPO, write_tiny_prepared  # noqa: E402

TARGET_SHARE = 0.05
STEPS_PER_EPOCH = 1407  # CIFAR-10's 45,000 training images in steps of 32
CALLS = ("log_params", "log_eval", "log_steps", "finish", "end")
VARIANTS = ("none", "before", "after")


class NoRun:
    def log_eval(self, row): ...

    def log_steps(self, steps): ...

    def finish(self, summary, target_metrics, artifacts): ...

    def log_model(self, model): ...


class NoTracker:
    """A tracker that records nothing: the cell's time without logging."""

    def check(self): ...

    def end_stale_runs(self, cell, lr_policy): ...

    def open_run(self, cell, settings, data_meta, device, lr_policy):
        return contextlib.nullcontext(NoRun())


def every_step(self, steps) -> None:
    """The per-step metric as it was: one point per step."""
    now = now_ms()
    self.spool.add_metrics(
        [
            (STEP_LOSS_METRIC, float(loss), now, int(step))
            for step, loss in zip(steps["step"], steps["train_loss"], strict=True)
        ]
    )
    self.delivery.request()


@contextlib.contextmanager
def patched(variant: str, spent: dict[str, float], run_ids: list[str]):
    """CellRun's calls timed into `spent`, its run's id in `run_ids`; for "before", every step logged and each call
    delivered before it returns."""
    originals = {name: getattr(runs.CellRun, name) for name in CALLS}
    request, deliver = Delivery.request, Delivery.deliver

    def timed_delivery(self):
        began, cpu = time.perf_counter(), time.thread_time()
        failure = deliver(self)
        spent["delivery"] += time.perf_counter() - began
        spent["delivery_cpu"] += time.thread_time() - cpu
        return failure

    Delivery.deliver = timed_delivery
    for name, call in originals.items():
        call = every_step if variant == "before" and name == "log_steps" else call

        def timed(self, *args, _call=call, _name=name):
            began = time.perf_counter()
            _call(self, *args)
            spent[_name] += time.perf_counter() - began
            run_ids[:] = [self.run_id]

        setattr(runs.CellRun, name, timed)
    if variant == "before":
        Delivery.request = Delivery.deliver
    try:
        yield
    finally:
        for name, call in originals.items():
            setattr(runs.CellRun, name, call)
        Delivery.request, Delivery.deliver = request, deliver


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bnbench-logging-") as tmp:
        root = Path(tmp)
        os.environ["MLFLOW_TRACKING_URI"] = f"sqlite:///{root / 'mlflow.db'}"
        train = STEPS_PER_EPOCH * 32  # all of them training images: the validation split is a quarter more
        data = write_tiny_prepared(root / "data", train=train * 4 // 3, test=2000, val_fraction=0.25)
        overlay = {
            "study": {"name": "bnbench-logging-cost"},
            "matrix": {"dataset": ["fashion_mnist"], "activation": ["relu"], "bn": ["post"], "dropout": [0.0], "seed": [0]},
            "train": {"architecture": "mlp", "epochs": args.epochs},
        }  # fmt: skip
        YAML().dump(overlay, root / "overlay.yaml")
        params = load_params(REPO / "params.yaml", root / "overlay.yaml")
        (cell,) = expand_matrix(params)
        tracker = runs.MlflowTracker(read_tracking_settings(root), params)
        client = MlflowClient(os.environ["MLFLOW_TRACKING_URI"])
        record: dict = {variant: [] for variant in VARIANTS}

        def one(variant: str, index: int) -> dict:
            spent: dict[str, float] = defaultdict(float)
            run_ids: list[str] = []
            out = root / "results" / f"{variant}-{index}"
            began = time.perf_counter()
            with patched(variant, spent, run_ids):
                summary = run_cell(params, cell, data, out, NoTracker() if variant == "none" else tracker, root / "ck")
            wall = time.perf_counter() - began
            points = [len(client.get_metric_history(run_id, STEP_LOSS_METRIC)) for run_id in run_ids]
            return {"wall_s": wall, "calls_s": dict(spent), "steps": summary["steps_trained"], "step_points": points}

        one("after", -1)  # warm-up: imports, tracing, the store's tables
        for index in range(args.repeat):
            for variant in VARIANTS:
                record[variant].append(one(variant, index))

    summary = {
        variant: {
            "wall_s": median(r["wall_s"] for r in record[variant]),
            "logging_s": median(_logging(r) for r in record[variant]),
            "share": median(_logging(r) / r["wall_s"] for r in record[variant]),
            "calls_s": {name: median(r["calls_s"].get(name, 0.0) for r in record[variant]) for name in CALLS},
            "delivery_s": median(r["calls_s"].get("delivery", 0.0) for r in record[variant]),
            "delivery_cpu_s": median(r["calls_s"].get("delivery_cpu", 0.0) for r in record[variant]),
        }
        for variant in VARIANTS
    }
    result = {
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, CPU only, Python {platform.python_version()}",
        "load_average_1min_at_end": os.getloadavg()[0],
        "store": "SQLite",
        "cell": f"{cell.name}, architecture mlp, {args.epochs} epochs of {STEPS_PER_EPOCH} steps",
        "steps": record["after"][0]["steps"],
        "step_metric_points": {variant: record[variant][0]["step_points"] for variant in ("before", "after")},
        "runs": record,
        "median": summary,
        "target_share": TARGET_SHARE,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "logging_cost.json").write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    _plot(result, args.out / "logging_cost.png")
    print(f"{result['cell']}, {result['steps']} steps ({result['machine']}), medians of {args.repeat}")
    print("| variant | cell wall (s) | in logging calls (s) | share | " + " | ".join(CALLS) + " | delivery (CPU) s |")
    print("| --- " * (5 + len(CALLS)) + "|")
    for variant in VARIANTS:
        s = summary[variant]
        calls = " | ".join(f"{s['calls_s'][name]:.2f}" for name in CALLS)
        delivery = f"{s['delivery_s']:.2f} ({s['delivery_cpu_s']:.2f})"
        print(
            f"| {variant} | {s['wall_s']:.1f} | {s['logging_s']:.2f} | {100 * s['share']:.1f}% | {calls} | {delivery} |"
        )
    print(f"target: under {100 * TARGET_SHARE:.0f}% of the cell's wall time")
    print(f"points of {STEP_LOSS_METRIC} per run: {result['step_metric_points']}")


def _logging(run: dict) -> float:
    """Seconds on the training path: in the run's calls (where "before" delivered too)."""
    return sum(run["calls_s"].get(name, 0.0) for name in CALLS)


def _plot(result: dict, path: Path) -> None:
    fig, ax = plt.subplots(figsize=(6.5, 3.1), layout="constrained")
    for i, variant in enumerate(VARIANTS):
        s = result["median"][variant]
        ax.barh(i, s["wall_s"] - s["logging_s"], color="#999", label="the rest of the cell" if i == 0 else None)
        ax.barh(
            i,
            s["logging_s"],
            left=s["wall_s"] - s["logging_s"],
            color="#d62728",
            label="logging calls" if i == 0 else None,
        )
        ax.text(s["wall_s"], i, f" {100 * s['share']:.1f}%", va="center")
    ax.set_yticks(
        range(len(VARIANTS)), ["no tracking", "before: every step,\nsynchronous", "after: downsampled,\nbackground"]
    )
    ax.invert_yaxis()
    cores = result["machine"].split(",")[1].strip()
    ax.set(xlabel="seconds per cell (median)", title=f"MLflow logging on a cell's path, SQLite ({cores}); target < 5%")
    ax.set_xlim(0, 1.12 * max(result["median"][v]["wall_s"] for v in VARIANTS))  # room for the shares
    fig.legend(loc="outside lower center", ncols=2, fontsize=8)
    fig.savefig(path, dpi=110)


if __name__ == "__main__":
    main()
