"""The report's figures, as PNG bytes ready to inline in the page.

Reads the per-run results and histories (as `collect.collect_results` returns them);
writes nothing. Every line style pairs an Okabe-Ito colour with its own dash and
marker, so BN placements stay apart in greyscale and for colour-blind readers; the
heatmap uses cividis, which is monotone in lightness.
"""

from __future__ import annotations

import io
import itertools
import textwrap

import matplotlib

matplotlib.use("Agg")  # files only, no display
import matplotlib.lines  # noqa: E402
import matplotlib.patches  # noqa: E402
import matplotlib.pyplot as plt  # noqa: E402
import matplotlib.ticker  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from pipeline.report.diagnostics import GRAD_PREFIX, MOVING, RECOMPUTED, gradient_layers  # noqa: E402
from pipeline.report.stats import complete_band  # noqa: E402
from pipeline.report.survival import censored_times, follow_up, kaplan_meier  # noqa: E402
from pipeline.report.tables import value_text  # noqa: E402
from pipeline.study.axes import format_value  # noqa: E402
from pipeline.study.cells import Cell, axis_label  # noqa: E402
from pipeline.study.schema import LEARNING_RATE  # noqa: E402

# Okabe-Ito colours; lightness also differs (black, light orange, mid blue), and so do dashes and markers.
BN_STYLE = {
    "off": {"color": "#000000", "linestyle": "-", "marker": "o"},
    "pre": {"color": "#E69F00", "linestyle": "--", "marker": "s"},
    "post": {"color": "#0072B2", "linestyle": "-.", "marker": "^"},
}
UNIT_LABEL = {"steps": "optimizer steps", "seconds": "training seconds"}
DPI = 80
SEED_LINE = {"linewidth": 0.7, "alpha": 0.45}


def _png(fig: plt.Figure) -> bytes:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=DPI, metadata={"Software": None})  # no version stamp: same bytes
    plt.close(fig)
    return buffer.getvalue()


def _bn_order(values) -> list[str]:
    present = set(values)
    return [bn for bn in BN_STYLE if bn in present]


# The axes a figure lays out itself: one per page section, one per line style, the replicates.
LAID_OUT = ("dataset", "bn", "seed")


def condition_axes(axes: list[str]) -> list[str]:
    """The axes that get a panel each: every axis except those laid out another way."""
    return [axis for axis in axes if axis not in LAID_OUT]


def _condition_label(axes: list[str], key: tuple) -> str:
    """ "relu, dropout 0, learning_rate 0.01"; "all runs" when there is nothing to tell apart."""
    words = [
        str(value) if axis == "activation" else f"{axis_label(axis)} {value_text(value)}"
        for axis, value in zip(axes, key, strict=True)
    ]
    # Wrapped: with several axes a one-line title would run into its neighbour's.
    return textwrap.fill(", ".join(words), 34) or "all runs"


def _conditions(runs: pd.DataFrame, axes: list[str]) -> list[tuple[tuple, pd.DataFrame]]:
    """The runs of each condition (a value of every axis in `axes`), in sorted order."""
    if not axes:
        return [((), runs)]
    return [(k if isinstance(k, tuple) else (k,), g) for k, g in runs.groupby(axes, sort=True)]


def plot_curves(
    dataset: str,
    histories: dict[Cell, pd.DataFrame],
    targets: list[float],
    axes: list[str],
    diverged: frozenset[Cell] = frozenset(),
    column: str = "val_accuracy",
) -> bytes:
    """Rows: each condition (`condition_axes`); columns: against optimizer steps, against training seconds.

    Per BN placement: a thin line per seed, the mean over seeds (thick, only where every
    seed has a value: no mean over the survivors of a divergence) and a band from the
    lowest to the highest seed; x marks the last evaluation of a seed that diverged.
    Against seconds, the mean and band sit at the seeds' mean time of each evaluation.
    """
    panels = condition_axes(axes)

    def condition_of(cell: Cell) -> tuple:
        return tuple(cell[axis] for axis in panels)

    cells = [c for c in histories if c.dataset == dataset]
    conditions = sorted({condition_of(c) for c in cells})
    fig, grid = plt.subplots(
        len(conditions), 2, figsize=(15, 3.0 * len(conditions) + 0.6), squeeze=False, sharey=True,
        constrained_layout=True,
    )  # fmt: skip
    placements = _bn_order(c["bn"] for c in cells)
    for (row, condition), bn in itertools.product(enumerate(conditions), placements):
        style = BN_STYLE[bn]
        mine = sorted((c for c in cells if condition_of(c) == condition and c["bn"] == bn), key=lambda c: c.seed)
        if not mine:
            continue
        curve = complete_band([histories[c] for c in mine], column)
        for col, x_column in enumerate(("step", "seconds")):
            ax = grid[row][col]
            for cell in mine:
                run = histories[cell]
                ax.plot(run[x_column], run[column], color=style["color"], linestyle="-", **SEED_LINE)
                if cell in diverged and run[column].notna().any():
                    last = run[column].last_valid_index()
                    ax.plot(
                        run.loc[last, x_column], run.loc[last, column], marker="x", color=style["color"], markersize=8
                    )
            x = curve[x_column].to_numpy()
            ax.fill_between(x, curve["low"], curve["high"], color=style["color"], alpha=0.15, linewidth=0)
            ax.plot(
                x, curve["mean"], color=style["color"], linestyle=style["linestyle"], marker=style["marker"],
                markersize=4, markevery=max(1, len(x) // 8), linewidth=2, label=f"BN {bn} (n = {len(mine)})",
            )  # fmt: skip
    for row, condition in enumerate(conditions):
        for col in (0, 1):
            ax = grid[row][col]
            for target in targets:
                ax.axhline(target, color="#555555", linewidth=0.7, linestyle=":")
            ax.set_title(f"{_condition_label(panels, condition)}: against {('steps', 'seconds')[col]}", fontsize=10)
            ax.grid(alpha=0.3)
            ax.set_xlabel(UNIT_LABEL[("steps", "seconds")[col]])
        grid[row][0].set_ylabel(column.replace("val_", "validation ").replace("_", " "))
    grid[0][0].legend(fontsize=8, loc="lower right")
    return _png(fig)


def plot_survival(dataset: str, results: pd.DataFrame, targets: dict[str, str], unit: str, axes: list[str]) -> bytes:
    """Kaplan-Meier: the fraction of seeds that reached each target by a step (or second).

    Rows: targets; columns: each condition (`condition_axes`); a line per BN placement,
    + where a seed's budget ended without reaching the target (censored).
    """
    panels = condition_axes(axes)
    conditions = _conditions(results[results["dataset"] == dataset], panels)
    fig, grid = plt.subplots(
        len(targets), len(conditions), figsize=(max(5.0, 3.0 * len(conditions)), 2.3 * len(targets) + 0.6),
        squeeze=False, sharex=True, sharey=True, constrained_layout=True,
    )  # fmt: skip
    for (row, (key, label)), (col, (condition, mine)) in itertools.product(
        enumerate(targets.items()), enumerate(conditions)
    ):
        ax = grid[row][col]
        for bn in _bn_order(mine["bn"]):
            data = censored_times(mine[mine["bn"] == bn], key, unit)
            curve = kaplan_meier(data)
            style = BN_STYLE[bn]
            end = float(follow_up(mine[mine["bn"] == bn], unit).max())  # the curve is known until here
            x = np.concatenate([[0.0], curve.times, [end]])
            y = np.concatenate([[0.0], curve.reached_fraction, curve.reached_fraction[-1:]])
            ax.step(x, y, where="post", color=style["color"], linestyle=style["linestyle"], linewidth=1.8,
                    label=f"BN {bn}: {data.hits}/{data.runs} reached")  # fmt: skip
            levels = y[np.searchsorted(x, curve.censored_at, side="right") - 1]  # the step's height there
            ax.plot(curve.censored_at, levels, linestyle="none", marker="+", markersize=9, color=style["color"])
        ax.set_ylim(-0.03, 1.03)
        ax.grid(alpha=0.3)
        ax.set_title(f"{_condition_label(panels, condition)}; target {label}", fontsize=9)
        ax.legend(fontsize=7, loc="best")
        if row == len(targets) - 1:
            ax.set_xlabel(UNIT_LABEL[unit])
        if col == 0:
            ax.set_ylabel("fraction of seeds\nthat reached the target")
    return _png(fig)


def plot_accuracy_heatmap(results: pd.DataFrame, axes: list[str], metric: str = "test_accuracy") -> bytes:
    """Mean `metric` over seeds for every configuration.

    Rows: the first condition axis (the activation) x BN placement; columns: the
    dataset x the other condition axes (dropout, and any axis a study adds).
    """
    panels = condition_axes(axes)
    row_axes, col_axes = panels[:1] + ["bn"], ["dataset"] + panels[1:]
    bn_rank = {bn: i for i, bn in enumerate(BN_STYLE)}
    rows = sorted({tuple(k) for k in results[row_axes].itertuples(index=False)},
                  key=lambda k: (*k[:-1], bn_rank.get(k[-1], len(bn_rank))))  # fmt: skip
    cols = sorted({tuple(k) for k in results[col_axes].itertuples(index=False)})
    grid = np.full((len(rows), len(cols)), np.nan)
    notes = [["" for _ in cols] for _ in rows]
    for (i, row), (j, col) in itertools.product(enumerate(rows), enumerate(cols)):
        wanted = dict(zip(row_axes + col_axes, row + col, strict=True))
        runs = results[np.logical_and.reduce([results[a] == v for a, v in wanted.items()])]
        values = pd.to_numeric(runs[metric], errors="coerce").dropna()
        if len(values):
            grid[i, j] = values.mean()
        missing = len(runs) - len(values)
        notes[i][j] = f"n = {len(values)}" + (f"\n{missing} without value" if missing else "")
    fig, ax = plt.subplots(figsize=(1.9 * len(cols) + 2.6, 0.55 * len(rows) + 1.3), constrained_layout=True)
    image = ax.imshow(grid, cmap="cividis", vmin=0, vmax=1, aspect="auto")
    for i, j in itertools.product(range(len(rows)), range(len(cols))):
        value = grid[i, j]
        text = "–" if np.isnan(value) else f"{value:.3f}"
        ax.text(j, i, f"{text}  {notes[i][j]}", ha="center", va="center", fontsize=8,
                color="black" if not np.isnan(value) and value > 0.6 else "white")  # fmt: skip
    col_labels = [f"{c[0]}\n{_condition_label(col_axes[1:], c[1:])}" if len(c) > 1 else c[0] for c in cols]
    ax.set_xticks(range(len(cols)), col_labels, fontsize=8)
    ax.set_yticks(
        range(len(rows)), [f"{_condition_label(row_axes[:-1], r[:-1])}, BN {r[-1]}" for r in rows], fontsize=8
    )
    fig.colorbar(image, ax=ax, label=metric.replace("_", " ") + " (mean over seeds)")
    return _png(fig)


def performance_profiles(
    results: pd.DataFrame, targets: dict[str, list[str]], unit: str, axes: list[str]
) -> dict[str, np.ndarray]:
    """Per BN placement, each problem's time to target divided by the fastest placement's (inf: a miss).

    A problem is one value of every other axis (the seed among them) and a target:
    the placements compared on it share their seed, so their data order.
    """
    placements = _bn_order(results["bn"])
    ratios: dict[str, list[float]] = {bn: [] for bn in placements}
    others = [axis for axis in axes if axis != "bn"]
    for _, problem in results.groupby(others, sort=True):
        by_bn = problem.set_index("bn")
        for key in targets[problem["dataset"].iloc[0]]:
            times = {
                bn: (float(by_bn.loc[bn, f"{unit}_to_{key}"]) if bool(by_bn.loc[bn, f"reached_{key}"]) else np.inf)
                for bn in placements
                if bn in by_bn.index
            }
            best = min(times.values())
            for bn, time in times.items():
                ratios[bn].append(time / best if np.isfinite(best) and best > 0 else np.inf)
    return {bn: np.asarray(values) for bn, values in ratios.items()}


def plot_performance_profiles(results: pd.DataFrame, targets: dict[str, list[str]], axes: list[str]) -> bytes:
    """Dolan-Moré profiles: the fraction of problems on which a BN placement is within tau of the fastest."""
    fig, panels = plt.subplots(1, 2, figsize=(10, 3.4), sharey=True, constrained_layout=True)
    for ax, unit in zip(panels, ("steps", "seconds"), strict=True):
        ratios = performance_profiles(results, targets, unit, axes)
        finite = np.concatenate([r[np.isfinite(r)] for r in ratios.values()])
        top = max(2.0, float(finite.max()) * 1.1) if len(finite) else 2.0
        taus = np.geomspace(1.0, top, 200)
        for bn, r in ratios.items():
            style = BN_STYLE[bn]
            fraction = (r[None, :] <= taus[:, None]).mean(axis=1)
            ax.step(taus, fraction, where="post", color=style["color"], linestyle=style["linestyle"], linewidth=2,
                    label=f"BN {bn} ({len(r)} problems)")  # fmt: skip
        ax.set_xscale("log", base=2)
        ax.xaxis.set_major_formatter(matplotlib.ticker.ScalarFormatter())
        ax.set_ylim(-0.03, 1.03)
        ax.grid(alpha=0.3, which="both")
        ax.set_xlabel("τ (ratio to the fastest placement's time, log scale)")
        ax.set_title(f"time to target in {UNIT_LABEL[unit]}", fontsize=10)
    panels[0].set_ylabel("fraction of problems")
    panels[0].legend(fontsize=8, loc="lower right")
    return _png(fig)


SENSITIVITY_METRICS = {"test_accuracy": "test accuracy", "val_auc": "validation AUC (accurate sooner: higher)"}


def learning_rate_points(runs: pd.DataFrame, metric: str) -> tuple[pd.Series, pd.Series]:
    """Mean `metric` over the completed runs at each learning rate, and the count of diverged runs at each."""
    completed = runs["outcome"] != "diverged"
    values = pd.to_numeric(runs.loc[completed, metric], errors="coerce")
    means = values.groupby(runs.loc[completed, LEARNING_RATE]).mean().sort_index()
    return means, runs.loc[~completed, LEARNING_RATE].value_counts().sort_index()


def plot_learning_rate_sensitivity(results: pd.DataFrame, axes: list[str]) -> bytes:
    """Each metric against the learning rate (log scale): a line per BN placement.

    Rows: dataset x metric (test accuracy, validation AUC); columns: each condition of
    the other axes. Per placement and rate: the mean over seeds (thick), each seed (dots)
    and the runs that diverged (x at the bottom, with their count): a rate at which a
    configuration diverges is a rate it does not tolerate, not a missing value.
    """
    panels = [axis for axis in condition_axes(axes) if axis != LEARNING_RATE]
    datasets = sorted(results["dataset"].unique())
    conditions = _conditions(results, panels)
    rows = [(d, m) for d in datasets for m in SENSITIVITY_METRICS]
    fig, grid = plt.subplots(
        len(rows), len(conditions), figsize=(max(5.0, 3.6 * len(conditions)), 2.6 * len(rows) + 0.6),
        squeeze=False, sharex=True, constrained_layout=True,
    )  # fmt: skip
    for (row, (dataset, metric)), (col, (condition, runs)) in itertools.product(enumerate(rows), enumerate(conditions)):
        ax = grid[row][col]
        mine = runs[runs["dataset"] == dataset]
        for bn in _bn_order(mine["bn"]):
            style = BN_STYLE[bn]
            placement = mine[mine["bn"] == bn]
            means, diverged = learning_rate_points(placement, metric)
            ax.plot(means.index, means.to_numpy(), color=style["color"], linestyle=style["linestyle"],
                    marker=style["marker"], linewidth=2, label=f"BN {bn}")  # fmt: skip
            completed = placement[placement["outcome"] != "diverged"]
            ax.plot(completed[LEARNING_RATE], pd.to_numeric(completed[metric], errors="coerce"), linestyle="none",
                    marker="o", markersize=3, color=style["color"], alpha=0.5)  # fmt: skip
            for rate, count in diverged.items():
                ax.plot(rate, 0.0, marker="x", markersize=9, color=style["color"])
                ax.annotate(f"{count} diverged", (rate, 0.0), textcoords="offset points", xytext=(4, 4), fontsize=7,
                            color=style["color"])  # fmt: skip
        ax.set_xscale("log")
        ax.set_ylim(-0.05, 1.05)
        ax.grid(alpha=0.3, which="both")
        ax.set_title(f"{dataset}: {_condition_label(panels, condition)}", fontsize=9)
        if col == 0:
            ax.set_ylabel(SENSITIVITY_METRICS[metric])
        if row == len(rows) - 1:
            ax.set_xlabel("learning rate (log scale)")
    grid[0][0].legend(fontsize=8, loc="best")
    return _png(fig)


# What a sweep may choose by (pipeline/study/params.py SWEEP_SCORES), as an axis reads it, with its unit.
SWEEP_SCORE_LABELS = {
    "best_val_accuracy": "best validation accuracy\n(fraction correct)",
    "final_val_accuracy": "final validation accuracy\n(fraction correct)",
    "val_auc": "validation AUC\n(mean accuracy over the budget, 0–1)",
    "final_val_loss": "final validation loss\n(cross-entropy, nats)",
}
SWEEP_WORST_BAND = 0.2  # the bottom of each panel, in axes fraction: the rates that scored worst, never a value


def sweep_points(entry: dict) -> tuple[pd.Series, list[float], list[float], float]:
    """One configuration's sweep exactly as chosen.json states it.

    Returns each rate's score (NaN where the rate scored worst: never drawn as a value), the
    rates where a sweep run diverged, the rates that scored worst without a divergence (a seed
    recorded no value), and the chosen rate.
    """
    scores = {float(rate): score for rate, score in entry["scores"].items()}
    values = pd.Series({rate: np.nan if score is None else float(score) for rate, score in scores.items()}, dtype=float)
    diverged = sorted(float(rate) for rate in entry["diverged"])
    no_value = sorted(rate for rate, score in scores.items() if score is None and rate not in diverged)
    return values.sort_index(), diverged, no_value, float(entry["learning_rate"])


def sweep_figure(dataset: str, chosen: dict, axes: list[str]) -> plt.Figure | None:
    """The sweep's score of each learning rate (log scale), as the choice saw it: a line per configuration.

    Panels: each condition of the other axes (`condition_axes`); in a panel a line per BN
    placement, so each line is one configuration. Everything comes from chosen.json: each rate's
    score (the mean of `choose_by` over the sweep seeds); x in the grey band at the bottom: a rate
    where a sweep run diverged (it scored worst, whatever it reached: no value is drawn); ?: a rate
    that scored worst because a run recorded no value; ring: the chosen rate. None when no
    configuration of the dataset was swept.
    """
    entries = {name: e for name, e in chosen["configurations"].items() if e["axes"]["dataset"] == dataset}
    if not entries:
        return None
    panels = [axis for axis in condition_axes(axes) if axis != LEARNING_RATE]
    conditions = sorted({tuple(e["axes"][a] for a in panels) for e in entries.values()})
    rates = sorted(float(rate) for rate in chosen["learning_rates"])
    finite = [float(s) for e in entries.values() for s in e["scores"].values() if s is not None]
    low, high = (min(finite), max(finite)) if finite else (0.0, 1.0)
    span = max(high - low, 0.05)
    bn_rank = {bn: i for i, bn in enumerate(BN_STYLE)}
    fig, grid = plt.subplots(
        1, len(conditions), figsize=(max(7.5, 4.6 * len(conditions)), 4.2), squeeze=False, sharey=True,
        constrained_layout=True,
    )  # fmt: skip
    for col, condition in enumerate(conditions):
        ax = grid[0][col]
        worst = ax.get_xaxis_transform()  # x: the rate; y: a fraction of the panel, not a score
        ax.add_patch(matplotlib.patches.Rectangle(
            (0, 0), 1, SWEEP_WORST_BAND, transform=ax.transAxes, color="#e8e8e8", zorder=0, linewidth=0
        ))  # fmt: skip
        ax.text(0.01, SWEEP_WORST_BAND - 0.02, "scored worst (no value)", transform=ax.transAxes, fontsize=7,
                va="top", color="#444444")  # fmt: skip
        mine = sorted(
            ((name, e) for name, e in entries.items() if tuple(e["axes"][a] for a in panels) == condition),
            key=lambda item: bn_rank.get(item[1]["axes"]["bn"], len(bn_rank)),
        )
        for i, (name, entry) in enumerate(mine):
            bn = entry["axes"]["bn"]
            style = BN_STYLE[bn]
            values, diverged, no_value, rate = sweep_points(entry)
            ax.plot(values.index, values.to_numpy(), color=style["color"], linestyle=style["linestyle"],
                    marker=style["marker"], linewidth=2, markersize=6, gid=f"score:{name}",
                    label=f"BN {bn}: chosen {format_value(rate)}")  # fmt: skip
            level = 0.04 + 0.05 * i  # each placement its own height in the band (at most three)
            if diverged:
                ax.plot(diverged, [level] * len(diverged), transform=worst, linestyle="none", marker="x",
                        markersize=9, markeredgewidth=2, color=style["color"], gid=f"diverged:{name}")  # fmt: skip
            if no_value:
                ax.plot(no_value, [level] * len(no_value), transform=worst, linestyle="none", marker="$?$",
                        markersize=9, color=style["color"], gid=f"no-value:{name}")  # fmt: skip
            y, transform = values.get(rate, np.nan), ax.transData
            if not np.isfinite(y):  # every rate scored worst: the smallest is chosen, marked in the band
                y, transform = level, worst
            ax.plot([rate], [y], transform=transform, linestyle="none", marker="o", markersize=16,
                    markerfacecolor="none", markeredgecolor=style["color"], markeredgewidth=2,
                    gid=f"chosen:{name}")  # fmt: skip
        ax.set_xscale("log")
        ax.set_xticks(rates, [format_value(r) for r in rates], fontsize=8)
        ax.xaxis.set_minor_locator(matplotlib.ticker.NullLocator())
        ax.set_xlim(rates[0] / 2, rates[-1] * 2)
        # the data stay above the band of the rates that scored worst, and no score is ticked inside it
        bottom, top = low - span * (SWEEP_WORST_BAND + 0.05) / (0.95 - SWEEP_WORST_BAND), high + 0.05 * span
        band_top = bottom + SWEEP_WORST_BAND * (top - bottom)
        ax.set_yticks([t for t in matplotlib.ticker.MaxNLocator(6).tick_values(low, high) if band_top < t <= top])
        ax.set_ylim(bottom, top)
        ax.grid(alpha=0.3)
        ax.set_title(f"{dataset}: {_condition_label(panels, condition)}", fontsize=9)
        ax.set_xlabel("learning rate (optimizer step size, log scale)")
        if col == 0:
            ax.set_ylabel(SWEEP_SCORE_LABELS.get(chosen["choose_by"], chosen["choose_by"]))
        handles, labels = ax.get_legend_handles_labels()
        key = [
            matplotlib.lines.Line2D([], [], linestyle="none", marker="o", markersize=10, markerfacecolor="none",
                                    markeredgecolor="#000000", label="chosen rate"),
            matplotlib.lines.Line2D([], [], linestyle="none", marker="x", markersize=8, color="#000000",
                                    label="a sweep run diverged"),
        ]  # fmt: skip
        ax.legend(handles=handles + key, fontsize=7, loc="upper left")
    seeds = ", ".join(str(s) for s in chosen["seeds"])
    fig.suptitle(
        f"{dataset}: learning-rate sweep, {chosen['epochs']} epoch(s) per run;\n"
        f"score: {chosen['choose_by']}, mean over sweep seeds {seeds}",
        fontsize=10,
    )
    return fig


def plot_sweep(dataset: str, chosen: dict, axes: list[str]) -> bytes | None:
    """`sweep_figure` as PNG bytes (None: no configuration of the dataset was swept)."""
    fig = sweep_figure(dataset, chosen, axes)
    return None if fig is None else _png(fig)


def _moments(steps: list[int]) -> list[tuple[int, str]]:
    """A few training moments among the evaluated steps: the first after step 0, mid-training, the end."""
    later = sorted({s for s in steps if s > 0})
    if not later:
        return []
    end = later[-1]
    middle = min(later, key=lambda s: (abs(s - end / 2), s))
    moments: dict[int, str] = {}
    for step, name in ((later[0], "first evaluation"), (middle, "mid-training"), (end, "end")):
        moments.setdefault(step, name)
    return sorted(moments.items())


def gradient_norm_profile(histories: list[pd.DataFrame], layers: list[str], step: int) -> pd.DataFrame:
    """Per layer (rows, in depth order): the median, lowest and highest kernel gradient norm over the runs at `step`.

    A run without an evaluation at `step` (it diverged earlier) or without a finite, positive
    norm there is left out of that layer; `n` counts the runs used.
    """
    rows = []
    for layer in layers:
        values = []
        for history in histories:
            column = GRAD_PREFIX + layer
            if column not in history.columns:
                continue
            at = pd.to_numeric(history.loc[history["step"] == step, column], errors="coerce").to_numpy(dtype=float)
            values += [v for v in at if np.isfinite(v) and v > 0]
        rows.append(
            {
                "layer": layer,
                "median": float(np.median(values)) if values else np.nan,
                "low": min(values, default=np.nan),
                "high": max(values, default=np.nan),
                "n": len(values),
            }
        )
    return pd.DataFrame(rows)


def plot_gradient_norms(dataset: str, histories: dict[Cell, pd.DataFrame], axes: list[str]) -> bytes | None:
    """Kernel gradient norm (log scale) of each layer against its depth, at a few training moments.

    Rows: each condition (`condition_axes`); columns: the first evaluation after step 0,
    mid-training, the end. Per BN placement: the median over seeds (thick) and the band from
    the lowest to the highest seed. None when no run of the dataset recorded gradient norms.
    """
    cells = [c for c in histories if c.dataset == dataset and gradient_layers(histories[c])]
    if not cells:
        return None
    layers = max((gradient_layers(histories[c]) for c in cells), key=len)
    moments = _moments([int(s) for c in cells for s in histories[c]["step"]])
    if not moments:
        return None
    panels = condition_axes(axes)
    conditions = sorted({tuple(c[a] for a in panels) for c in cells})
    fig, grid = plt.subplots(
        len(conditions), len(moments), figsize=(max(7.5, 4.4 * len(moments)), 2.9 * len(conditions) + 0.8),
        squeeze=False, sharey=True, constrained_layout=True,
    )  # fmt: skip
    depth = np.arange(1, len(layers) + 1)
    for (row, condition), (col, (step, moment)) in itertools.product(enumerate(conditions), enumerate(moments)):
        ax = grid[row][col]
        mine = [c for c in cells if tuple(c[a] for a in panels) == condition]
        for bn in _bn_order(c["bn"] for c in mine):
            style = BN_STYLE[bn]
            runs = [histories[c] for c in sorted(mine, key=lambda c: c.seed) if c["bn"] == bn]
            profile = gradient_norm_profile(runs, layers, step)
            ax.fill_between(depth, profile["low"], profile["high"], color=style["color"], alpha=0.15, linewidth=0)
            ax.plot(depth, profile["median"], color=style["color"], linestyle=style["linestyle"],
                    marker=style["marker"], linewidth=2, markersize=5,
                    label=f"BN {bn} (median of {int(profile['n'].max())}, band: range)")  # fmt: skip
        ax.set_yscale("log")
        ax.grid(alpha=0.3, which="both")
        ax.set_xticks(depth, layers, fontsize=8, rotation=30 if len(layers) > 6 else 0)
        ax.set_title(f"{_condition_label(panels, condition)}: step {step} ({moment})", fontsize=9)
        if row == len(conditions) - 1:
            ax.set_xlabel("layer, input side → output (depth)")
        if col == 0:
            ax.set_ylabel("‖∂loss/∂kernel‖₂ (log scale)")
            ax.legend(fontsize=7, loc="best")
    return _png(fig)


# Two quantities of one run, told apart by colour (black, vermillion), dash and marker.
BN_STATISTICS_STYLE = {
    MOVING: {"color": "#000000", "linestyle": "-", "marker": "o", "label": "moving statistics (as trained)"},
    RECOMPUTED: {"color": "#D55E00", "linestyle": "--", "marker": "s", "label": "recomputed on training images"},
}


def plot_bn_statistics(dataset: str, histories: dict[Cell, pd.DataFrame], axes: list[str]) -> bytes | None:
    """Validation accuracy of BN runs with BN's moving statistics and with recomputed ones, against steps.

    Rows: each condition (`condition_axes`); columns: each BN placement. Per quantity: the
    mean over seeds (only where every seed has a value) and the band from the lowest to the
    highest seed. None when no BN run of the dataset recorded the recomputed accuracy.
    """
    cells = [
        c for c in histories
        if c.dataset == dataset and c["bn"] != "off" and RECOMPUTED in histories[c].columns
        and histories[c][RECOMPUTED].notna().any()
    ]  # fmt: skip
    if not cells:
        return None
    panels = condition_axes(axes)
    conditions = sorted({tuple(c[a] for a in panels) for c in cells})
    placements = _bn_order(c["bn"] for c in cells)
    fig, grid = plt.subplots(
        len(conditions), len(placements), figsize=(max(7.5, 6.0 * len(placements)), 2.9 * len(conditions) + 0.6),
        squeeze=False, sharey=True, constrained_layout=True,
    )  # fmt: skip
    for (row, condition), (col, bn) in itertools.product(enumerate(conditions), enumerate(placements)):
        ax = grid[row][col]
        mine = sorted((c for c in cells if tuple(c[a] for a in panels) == condition and c["bn"] == bn),
                      key=lambda c: c.seed)  # fmt: skip
        for column, style in BN_STATISTICS_STYLE.items():
            if not mine:
                break
            curve = complete_band([histories[c] for c in mine], column)
            x = curve["step"].to_numpy()
            ax.fill_between(x, curve["low"], curve["high"], color=style["color"], alpha=0.15, linewidth=0)
            ax.plot(x, curve["mean"], color=style["color"], linestyle=style["linestyle"], marker=style["marker"],
                    markersize=4, markevery=max(1, len(x) // 8), linewidth=2,
                    label=f"{style['label']} (mean of {len(mine)})")  # fmt: skip
        ax.set_ylim(-0.03, 1.03)
        ax.grid(alpha=0.3)
        ax.set_title(f"{_condition_label(panels, condition)}, BN {bn}", fontsize=9)
        if row == len(conditions) - 1:
            ax.set_xlabel(UNIT_LABEL["steps"])
        if col == 0:
            ax.set_ylabel("validation accuracy")
        if mine:
            ax.legend(fontsize=7, loc="best")
    return _png(fig)


# Okabe-Ito colours with their own dashes and markers, one per condition of a speed-up curve.
CONDITION_STYLES = [
    {"color": c, "linestyle": d, "marker": m}
    for c, d, m in zip(
        ("#000000", "#E69F00", "#0072B2", "#009E73", "#D55E00", "#CC79A7", "#56B4E9", "#F0E442"),
        ("-", "--", "-.", ":", "-", "--", "-.", ":"),
        ("o", "s", "^", "D", "v", "P", "X", "*"),
        strict=True,
    )
]
QUANTITY_AXIS = {"val_accuracy": "validation accuracy target", "train_loss": "training-loss target (trailing mean)"}


def plot_speedup_curves(curves: list, declared: dict[str, list[float]], margin: float, title: str) -> bytes | None:
    """The speed-up at every target level (thresholds.py): a panel per quantity, a line per condition.

    Grey band: within the claim's margin of no effect; dotted: the declared targets, where the verdicts are.
    Loss levels run from high to low, so that harder targets lie to the right in both panels.
    """
    quantities = list(dict.fromkeys(c.quantity for c in curves if np.isfinite(c.speedups).any()))
    if not quantities:
        return None
    fig, grid = plt.subplots(
        1, len(quantities), figsize=(5.2 * len(quantities), 3.4), squeeze=False, constrained_layout=True
    )
    labels = list(dict.fromkeys(c.label for c in curves))
    for ax, quantity in zip(grid[0], quantities, strict=True):
        for curve in (c for c in curves if c.quantity == quantity):
            style = CONDITION_STYLES[labels.index(curve.label) % len(CONDITION_STYLES)]
            ax.plot(curve.levels, curve.speedups, markersize=3, linewidth=1.5, label=curve.label, **style)
        ax.set_yscale("log")
        ax.axhspan(1 / margin, margin, color="#dddddd", zorder=0)
        ax.axhline(1.0, color="#777777", linewidth=0.8)
        for level in declared.get(quantity, []):
            ax.axvline(level, color="#555555", linestyle=":", linewidth=1)
        if quantity == "train_loss":
            ax.invert_xaxis()
        ax.yaxis.set_major_locator(matplotlib.ticker.LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
        ax.yaxis.set_major_formatter(matplotlib.ticker.FuncFormatter(lambda v, _: f"{v:g}×"))
        ax.yaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
        ax.set_xlabel(QUANTITY_AXIS.get(quantity, quantity))
        ax.set_ylabel("speed-up (restricted means)")
        ax.grid(alpha=0.3, which="both")
        ax.legend(fontsize=7, loc="best")
    fig.suptitle(textwrap.fill(title, 90), fontsize=9)
    return _png(fig)
