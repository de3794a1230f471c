"""Figures: what their lines are computed from, and that each renders a PNG."""

from __future__ import annotations

import io
import math

import matplotlib.image
import pandas as pd
import pytest

from pipeline.report import figures
from pipeline.report.build import build_report
from pipeline.report.collect import collect_results
from pipeline.report.mlflow_links import RunLinks
from pipeline.report.stats import complete_band
from tests.fabricated_cells import study_params, write_cell


def _history(accuracies, seconds_per_step=1.0):
    steps = [10 * i for i in range(len(accuracies))]
    return pd.DataFrame(
        {"step": steps, "epoch": [s / 20 for s in steps], "seconds": [s * seconds_per_step for s in steps],
         "val_accuracy": accuracies}
    )  # fmt: skip


def test_the_mean_curve_stops_where_a_seed_diverged():
    survivor = _history([0.1, 0.4, 0.6, 0.8])
    diverged = _history([0.1, 0.2, math.nan, math.nan], seconds_per_step=3.0)
    curve = complete_band([survivor, diverged], "val_accuracy")
    assert curve["step"].tolist() == [0, 10]
    assert curve["mean"].tolist() == pytest.approx([0.1, 0.3])
    assert curve["low"].tolist() == [0.1, 0.2] and curve["high"].tolist() == [0.1, 0.4]
    assert curve["seconds"].tolist() == pytest.approx([0.0, 20.0])  # mean of 10 s and 30 s


def _is_png(data: bytes) -> tuple[int, int]:
    image = matplotlib.image.imread(io.BytesIO(data), format="png")
    return image.shape[1], image.shape[0]


def test_every_figure_renders_with_a_diverged_run(tmp_path):
    params = study_params(tmp_path, activation=["sigmoid", "relu"], bn=["off", "pre", "post"], seed=[0, 1])
    cells = tmp_path / "cells"
    for activation in ("sigmoid", "relu"):
        for bn in ("off", "pre", "post"):
            for seed in (0, 1):
                diverged = 40 if (activation, bn, seed) == ("relu", "off", 1) else None
                crossings = (
                    {0.5: 30 + seed, 0.6: 50, 0.7: None} if diverged is None else {0.5: None, 0.6: None, 0.7: None}
                )
                write_cell(cells, activation=activation, bn=bn, seed=seed, crossings=crossings, diverged_at=diverged)
    results, histories = collect_results(params, cells)
    targets = {"acc50": "0.5", "acc60": "0.6", "acc70": "0.7"}
    axes = list(params.matrix)
    diverged = frozenset(c for c in histories if c.name == "cifar10-relu-off-0.0-1")
    assert len(diverged) == 1
    pngs = [
        figures.plot_curves("cifar10", histories, [0.5, 0.6, 0.7], axes, diverged),
        figures.plot_survival("cifar10", results, targets, "steps", axes),
        figures.plot_survival("cifar10", results, targets, "seconds", axes),
        figures.plot_accuracy_heatmap(results, axes),
        figures.plot_performance_profiles(results, {"cifar10": list(targets)}, axes),
    ]
    assert all(width > 300 and height > 150 for width, height in map(_is_png, pngs))
    # Same inputs, same bytes: the page is deterministic.
    assert figures.plot_accuracy_heatmap(results, axes) == pngs[3]


def test_performance_profiles_never_count_a_miss_as_within_reach(tmp_path):
    params = study_params(tmp_path, bn=["off", "post"], seed=[0])
    cells = tmp_path / "cells"
    write_cell(cells, bn="off", crossings={0.5: 40, 0.6: None, 0.7: None})
    write_cell(cells, bn="post", crossings={0.5: 20, 0.6: 30, 0.7: None})
    results, _ = collect_results(params, cells)
    ratios = figures.performance_profiles(
        results, {"cifar10": ["acc50", "acc60", "acc70"]}, "steps", list(params.matrix)
    )
    assert ratios["post"].tolist() == [1.0, 1.0, math.inf]  # target 0.7: nobody reached it
    assert ratios["off"].tolist() == [2.0, math.inf, math.inf]


def _lr_study(tmp_path):
    rates = [0.1, 0.01, 0.001]
    params = study_params(
        tmp_path, bn=["off", "post"], seed=[0, 1], extra_axes={"train.optimizer.learning_rate": rates}
    )
    cells = tmp_path / "cells"
    for bn in ("off", "post"):
        for seed in (0, 1):
            for rate in rates:
                diverged = 20 if (bn, rate) == ("off", 0.1) else None  # no BN does not tolerate the highest rate
                crossings = {0.5: 30, 0.6: None, 0.7: None} if diverged is None else {0.5: None, 0.6: None, 0.7: None}
                accuracy = 0.6 + rate + 0.01 * seed + (0.1 if bn == "post" else 0)
                write_cell(cells, bn=bn, seed=seed, crossings=crossings, diverged_at=diverged,
                           test_accuracy=accuracy, extra_axes={"train.optimizer.learning_rate": rate})  # fmt: skip
    return params, cells


def test_learning_rate_points_average_completed_runs_and_count_divergences(tmp_path):
    params, cells = _lr_study(tmp_path)
    results, _ = collect_results(params, cells)
    off = results[results["bn"] == "off"]
    means, diverged = figures.learning_rate_points(off, "test_accuracy")
    assert means.to_dict() == pytest.approx({0.001: 0.606, 0.01: 0.615})  # mean of seeds 0 and 1; 0.1: none completed
    assert diverged.to_dict() == {0.1: 2}
    post_means, post_diverged = figures.learning_rate_points(results[results["bn"] == "post"], "test_accuracy")
    assert post_means[0.1] == pytest.approx(0.805) and post_diverged.empty


def test_a_learning_rate_axis_brings_the_sensitivity_figure(tmp_path):
    params, cells = _lr_study(tmp_path)
    html, results, _, _report_answers, _curves = build_report(params, cells, links=RunLinks())
    assert 'id="learning-rates"' in html and "the runs share one learning rate" not in html
    results, _ = collect_results(params, cells)
    width, height = _is_png(figures.plot_learning_rate_sensitivity(results, list(params.matrix)))
    assert width > 300 and height > 300
    single = study_params(tmp_path, bn=["off", "post"], seed=[0])
    other = tmp_path / "single"
    for bn in ("off", "post"):
        write_cell(other, bn=bn, crossings={0.5: 30, 0.6: None, 0.7: None})
    html, _, _, _report_answers, _curves = build_report(single, other, links=RunLinks())
    assert 'id="learning-rates"' not in html and "the runs share one learning rate" in html
