"""Gradient norms and BN statistics: the per-run scalars (planted, computed by hand), the figures and the page text."""

from __future__ import annotations

import io
import math

import matplotlib.image
import pandas as pd
import pytest

from pipeline.report import diagnostics, figures
from pipeline.report.build import build_report
from pipeline.report.collect import collect_results
from pipeline.report.mlflow_links import RunLinks
from tests.fabricated_cells import study_params, write_cell

# Budget 4: evaluations at steps 0, 1, 2, 3, 4.
NO_CROSSING = {0.5: None, 0.6: None, 0.7: None}
# conv1 / dense1 after step 0: 1/10, 2/10, 3/10, 100/10 -> median 0.25. Counting step 0 (9/1) would give 0.3;
# taking the softmax output as the last layer (norm 1) would give median(1, 2, 3, 100) = 2.5.
GRADS = {
    "conv1": [9.0, 1.0, 2.0, 3.0, 100.0],
    "conv2": [5.0, 5.0, 5.0, 5.0, 5.0],
    "dense1": [1.0, 10.0, 10.0, 10.0, 10.0],
    "output": [1.0, 1.0, 1.0, 1.0, 1.0],
}
# recomputed - moving per evaluation: the largest is 0.3 at step 2 (the largest in size is -0.5, at step 0).
LAGGING = [-0.5, 0.05, 0.3, 0.1, 0.08]
AGREEING = [0.0, 0.01, 0.015, -0.01, 0.01]


def _png_size(data: bytes) -> tuple[int, int]:
    image = matplotlib.image.imread(io.BytesIO(data), format="png")
    return image.shape[1], image.shape[0]


def _study(tmp_path, gaps=(LAGGING, LAGGING), grads=GRADS):
    """sigmoid, BN off and post, seeds 0 and 1; only the post cells get the recomputed column (`gaps` per seed)."""
    params = study_params(tmp_path, activation=["sigmoid"], bn=["off", "post"], seed=[0, 1])
    cells = tmp_path / "cells"
    for bn in ("off", "post"):
        for seed in (0, 1):
            write_cell(cells, activation="sigmoid", bn=bn, seed=seed, crossings=NO_CROSSING, budget=4,
                       grad_norms=grads, bn_gap=gaps[seed] if bn == "post" else None)  # fmt: skip
    return params, cells


def test_the_scalars_are_the_planted_ones(tmp_path):
    params, cells = _study(tmp_path)
    results, _ = collect_results(params, cells)
    by_cell = results.set_index("cell")
    post, off = by_cell.loc["cifar10-sigmoid-post-0.0-0"], by_cell.loc["cifar10-sigmoid-off-0.0-0"]
    assert post["grad_norm_first_over_last"] == pytest.approx(0.25)
    assert off["grad_norm_first_over_last"] == pytest.approx(0.25)
    assert post["max_bn_statistics_gap"] == pytest.approx(0.3)
    # the last evaluation's moving-statistics accuracy is the fabricated ceiling 0.45, plus the planted 0.08
    assert post["final_val_accuracy"] == pytest.approx(0.45)
    assert post["final_val_accuracy_recomputed_bn"] == pytest.approx(0.53)
    assert off[["max_bn_statistics_gap", "final_val_accuracy_recomputed_bn"]].isna().all()  # BN off: None


def test_older_outputs_without_the_columns_give_none_and_a_page(tmp_path):
    params = study_params(tmp_path, activation=["sigmoid"], bn=["off", "post"], seed=[0])
    cells = tmp_path / "cells"
    for bn in ("off", "post"):
        write_cell(cells, activation="sigmoid", bn=bn, crossings=NO_CROSSING, budget=4)
    results, histories = collect_results(params, cells)
    for column in ("grad_norm_first_over_last", "final_val_accuracy_recomputed_bn", "max_bn_statistics_gap"):
        assert results[column].isna().all(), column
    axes = list(params.matrix)
    assert figures.plot_gradient_norms("cifar10", histories, axes) is None
    assert figures.plot_bn_statistics("cifar10", histories, axes) is None
    assert diagnostics.bn_gap_explanation(histories, axes) is None
    html, tidy, _, _answers, _curves = build_report(params, cells, links=RunLinks())
    assert "gradient-norms" not in html and "bn-statistics" not in html
    assert "per-layer gradient norms (the histories record none)" in html
    assert "max_bn_statistics_gap" in tidy.columns


def test_a_single_hidden_layer_has_no_ratio():
    history = pd.DataFrame({"step": [0, 1], "val_accuracy": [0.1, 0.2], "grad_norm/dense1": [1.0, 2.0],
                            "grad_norm/output": [1.0, 1.0]})  # fmt: skip
    assert diagnostics.gradient_layers(history) == ["dense1", "output"]
    assert diagnostics.grad_norm_first_over_last(history) is None


def test_gradient_profile_is_the_median_and_range_over_seeds_at_a_step():
    runs = [
        pd.DataFrame({"step": [0, 2], "grad_norm/conv1": [1.0, v], "grad_norm/dense1": [1.0, 2 * v]})
        for v in (1.0, 2.0, 6.0)
    ]
    profile = figures.gradient_norm_profile(runs, ["conv1", "dense1"], 2)
    assert profile["median"].tolist() == [2.0, 4.0]  # the mean would be 3 and 6
    assert profile["low"].tolist() == [1.0, 2.0] and profile["high"].tolist() == [6.0, 12.0]
    assert profile["n"].tolist() == [3, 3]
    assert figures._moments([0, 1, 2, 3, 4, 10]) == [(1, "first evaluation"), (4, "mid-training"), (10, "end")]


def test_the_figures_render_as_png(tmp_path):
    params, cells = _study(tmp_path)
    _, histories = collect_results(params, cells)
    axes = list(params.matrix)
    for png in (figures.plot_gradient_norms("cifar10", histories, axes),
                figures.plot_bn_statistics("cifar10", histories, axes)):  # fmt: skip
        width, height = _png_size(png)
        assert width > 300 and height > 150


def test_a_planted_lag_is_told_with_its_step_and_run(tmp_path):
    params, cells = _study(tmp_path)
    _, histories = collect_results(params, cells)
    text = diagnostics.bn_gap_explanation(histories, list(params.matrix))
    assert text.startswith("The moving statistics lag")
    assert "in 2 of 2 BN runs (up to +0.080, at step 4" in text
    assert "+0.300 at step 2 (activation sigmoid, BN post, dropout 0, seed 0)" in text
    html, _, _, _answers, _curves = build_report(params, cells, links=RunLinks())
    assert 'id="cifar10-gradient-norms"' in html and 'id="cifar10-bn-statistics"' in html
    assert "The moving statistics lag" in html and "here 0.25 to 0.25 over 4 runs" in html


def test_statistics_within_the_tolerance_agree(tmp_path):
    params, cells = _study(tmp_path, gaps=(AGREEING, AGREEING))
    _, histories = collect_results(params, cells)
    text = diagnostics.bn_gap_explanation(histories, list(params.matrix))
    assert text.startswith("Moving and recomputed statistics agree within 0.02")
    assert "all 2 BN runs (largest final gap +0.010)" in text
    assert "+0.015 at step 2" in text


def test_one_lagging_seed_is_counted(tmp_path):
    params, cells = _study(tmp_path, gaps=(AGREEING, LAGGING))
    _, histories = collect_results(params, cells)
    text = diagnostics.bn_gap_explanation(histories, list(params.matrix))
    assert "in 1 of 2 BN runs (up to +0.080, at step 4, activation sigmoid, BN post, dropout 0, seed 1)" in text


def test_a_diverged_bn_run_has_no_final_recomputed_accuracy(tmp_path):
    params = study_params(tmp_path, activation=["sigmoid"], bn=["post"], seed=[0])
    cells = tmp_path / "cells"
    write_cell(cells, activation="sigmoid", bn="post", crossings=NO_CROSSING, budget=4, diverged_at=3,
               grad_norms={layer: norms[:4] for layer, norms in GRADS.items()}, bn_gap=LAGGING[:4])  # fmt: skip
    results, _ = collect_results(params, cells)
    run = results.iloc[0]
    assert run["final_val_accuracy_recomputed_bn"] is None or math.isnan(run["final_val_accuracy_recomputed_bn"])
    assert run["max_bn_statistics_gap"] == pytest.approx(0.3)  # the evaluations before the divergence count
    assert run["grad_norm_first_over_last"] == pytest.approx(0.15)  # median of 1/10 and 2/10 (step 3: no norms)
