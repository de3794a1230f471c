"""The report reads the learning-rate sweep: sweep.csv, and the sensitivity figure drawn from chosen.json."""

from __future__ import annotations

import csv
import io
import json
import math

import matplotlib.image
import numpy as np
import pytest

from pipeline.errors import UserError
from pipeline.report import figures
from pipeline.report.build import build_report, write_report
from pipeline.report.mlflow_links import RunLinks
from pipeline.study import choice
from pipeline.study.cells import expand_matrix, expand_sweep
from tests.fabricated_cells import study_params, write_cell

LR = "train.optimizer.learning_rate"
RATES = [0.0001, 0.001, 0.01, 0.1]
SWEEP = {"learning_rates": RATES, "seeds": [0, 1], "epochs": 3, "choose_by": "best_val_accuracy"}
OFF, POST = "cifar10-relu-off-0.0", "cifar10-relu-post-0.0"
# best_val_accuracy of each sweep run, (configuration, rate) -> (seed 0, seed 1). Off at 0.1: seed 1 diverged
# after reaching 0.95, more than any other run: still the worst, never drawn as a value. Off's best is 0.001
# (mean 0.6), below the largest rate that scored (0.01); post's best is 0.1.
SCORES = {
    (OFF, 0.0001): (0.3, 0.3), (OFF, 0.001): (0.5, 0.7), (OFF, 0.01): (0.5, 0.5), (OFF, 0.1): (0.4, 0.95),
    (POST, 0.0001): (0.2, 0.2), (POST, 0.001): (0.4, 0.4), (POST, 0.01): (0.7, 0.7), (POST, 0.1): (0.8, 0.8),
}  # fmt: skip
DIVERGED = {(OFF, 0.1, 1)}


def _study(tmp_path):
    """Fixed, sweep and tuned runs of a swept study written by hand, and chosen.json by the choose stage's own rule."""
    params = study_params(tmp_path, bn=["off", "post"], seed=[2, 3], sweep=SWEEP)  # the sweep seeds are never reported
    cells, sweep_dir, tuned_dir = tmp_path / "cells", tmp_path / "sweep", tmp_path / "tuned"
    crossings = {0.5: 30, 0.6: None, 0.7: None}
    for cell in expand_sweep(params):
        rate = cell[LR]
        diverged = (cell.configuration, rate, cell.seed) in DIVERGED
        write_cell(sweep_dir, cell=cell, crossings=crossings, diverged_at=20 if diverged else None,
                   settings_changes={"train.epochs": SWEEP["epochs"]}, lr_policy="sweep",
                   summary_changes={"best_val_accuracy": SCORES[(cell.configuration, rate)][cell.seed]})  # fmt: skip
    chosen = choice.choose(params, sweep_dir)
    chosen_path = tmp_path / "chosen.json"
    chosen_path.write_text(json.dumps(chosen, indent=2, sort_keys=True))
    for cell in expand_matrix(params):
        write_cell(cells, cell=cell, crossings=crossings)
        rate = chosen["configurations"][cell.configuration]["learning_rate"]
        write_cell(tuned_dir, cell=cell, crossings=crossings, settings_changes={LR: rate}, lr_policy="tuned")
    return params, cells, sweep_dir, tuned_dir, chosen_path


def _is_png(data: bytes) -> tuple[int, int]:
    image = matplotlib.image.imread(io.BytesIO(data), format="png")
    return image.shape[1], image.shape[0]


def test_sweep_csv_has_one_row_per_sweep_run_exactly(tmp_path):
    params, cells, sweep_dir, tuned_dir, chosen_path = _study(tmp_path)
    chosen = json.loads(chosen_path.read_text())["configurations"]
    assert chosen[OFF]["learning_rate"] == 0.001 and chosen[POST]["learning_rate"] == 0.1
    out = tmp_path / "reports"
    write_report(params, cells, out, tuned_dir=tuned_dir, chosen_path=chosen_path, sweep_dir=sweep_dir)
    with (out / "sweep.csv").open() as handle:
        reader = csv.reader(handle)
        header, rows = next(reader), list(reader)
    assert header == [
        "cell", "configuration", "dataset", "activation", "bn", "dropout", LR, "seed",
        "choose_by", "score", "rate_score", "diverged", "chosen",
    ]  # fmt: skip
    expected = []
    for configuration, bn in ((OFF, "off"), (POST, "post")):
        for rate, text in zip(RATES, ("0.0001", "0.001", "0.01", "0.1"), strict=True):
            for seed in (0, 1):
                diverged = (configuration, rate, seed) in DIVERGED
                score = "" if diverged else f"{SCORES[(configuration, rate)][seed]:g}"
                pair = SCORES[(configuration, rate)]
                rate_score = "" if (configuration, rate, 1 - seed) in DIVERGED or diverged else f"{sum(pair) / 2:g}"
                expected.append([
                    f"{configuration}-learning_rate_{text}-{seed}", configuration, "cifar10", "relu", bn, "0",
                    text, str(seed), "best_val_accuracy", score, rate_score, str(diverged),
                    str(rate == chosen[configuration]["learning_rate"]),
                ])  # fmt: skip
    assert rows == expected
    # spelled out where it matters: off at 0.1 diverged on seed 1; both its runs score worst (empty), none chosen
    off_01 = [r for r in rows if r[0].startswith(f"{OFF}-learning_rate_0.1-")]
    assert [(r[9], r[10], r[11], r[12]) for r in off_01] == [("0.4", "", "False", "False"), ("", "", "True", "False")]
    assert sum(r[12] == "True" for r in rows) == 4  # two sweep seeds at each configuration's one chosen rate
    # index.html, results.csv and the rest are still written
    assert (out / "index.html").is_file() and (out / "results.csv").is_file()


def test_the_sweep_figure_decodes_and_a_diverged_rate_is_no_value(tmp_path):
    params, cells, sweep_dir, tuned_dir, chosen_path = _study(tmp_path)
    chosen = json.loads(chosen_path.read_text())
    width, height = _is_png(figures.plot_sweep("cifar10", chosen, list(params.matrix)))
    assert width > 300 and height > 200
    assert figures.plot_sweep("fashion_mnist", chosen, list(params.matrix)) is None  # not swept there

    fig = figures.sweep_figure("cifar10", chosen, list(params.matrix))
    (ax,) = fig.axes  # one condition: relu, dropout 0
    lines = {line.get_gid(): line for line in ax.get_lines()}
    off = lines[f"score:{OFF}"]
    xs, ys = np.asarray(off.get_xdata(), dtype=float), np.asarray(off.get_ydata(), dtype=float)
    assert xs.tolist() == RATES
    assert ys[:3].tolist() == pytest.approx([0.3, 0.6, 0.5]) and math.isnan(ys[3])  # 0.1: no value
    # nowhere in data coordinates is the diverged rate's value (0.95, or its mean 0.675) drawn for off
    for line in ax.get_lines():
        if line.get_transform() == ax.transData and not line.get_gid().endswith(f":{POST}"):
            points = zip(
                np.asarray(line.get_xdata(), dtype=float), np.asarray(line.get_ydata(), dtype=float), strict=True
            )
            assert not [(x, y) for x, y in points if x == 0.1 and np.isfinite(y)], line.get_gid()
    # it is marked as diverged instead, in the band at the bottom (axes fraction, not a score)
    marked = lines[f"diverged:{OFF}"]
    assert list(marked.get_xdata()) == [0.1] and marked.get_transform() != ax.transData
    assert f"diverged:{POST}" not in lines
    # the chosen rates are those of chosen.json, each ringed at its score
    assert (list(lines[f"chosen:{OFF}"].get_xdata()), list(lines[f"chosen:{OFF}"].get_ydata())) == ([0.001], [0.6])
    assert (list(lines[f"chosen:{POST}"].get_xdata()), list(lines[f"chosen:{POST}"].get_ydata())) == ([0.1], [0.8])
    assert ax.get_xscale() == "log" and "learning rate" in ax.get_xlabel()
    assert ax.get_ylabel().startswith("best validation accuracy")


def test_the_page_shows_the_sweep_figure_with_its_budget_and_rule(tmp_path):
    params, cells, sweep_dir, tuned_dir, chosen_path = _study(tmp_path)
    assert params.train.epochs != SWEEP["epochs"]  # the caption's budget is the sweep's own
    html = build_report(
        params, cells, links=RunLinks(), tuned_dir=tuned_dir, chosen_path=chosen_path, sweep_dir=sweep_dir
    ).html
    start = html.index('<figure id="cifar10-sweep">')
    figure = html[start : html.index("</figure>", start)]
    assert '<img src="data:image/png;base64,' in figure
    caption = " ".join(figure.split())
    assert "after a budget of 3 epoch(s) per sweep run" in caption and "best_val_accuracy" in caption
    assert "Rule: score = mean of best_val_accuracy over the sweep seeds [0, 1] (3 epoch(s) each)" in caption
    assert "Every sweep run (16)" in caption
    assert "the runs share one learning rate" not in html  # the sweep shows the sensitivity


def test_sweep_runs_that_disagree_with_chosen_json_are_refused(tmp_path):
    params, cells, sweep_dir, tuned_dir, chosen_path = _study(tmp_path)
    metrics = sweep_dir / f"{POST}-learning_rate_0.01-1" / "metrics.json"
    summary = json.loads(metrics.read_text())
    metrics.write_text(json.dumps({**summary, "best_val_accuracy": 0.9}))  # a rerun chosen.json never saw
    with pytest.raises(UserError, match=r"chosen.json is out of date with the sweep: .*0.01 scores 0.7 there, 0.8"):
        build_report(params, cells, links=RunLinks(), tuned_dir=tuned_dir, chosen_path=chosen_path, sweep_dir=sweep_dir)
    metrics.write_text(json.dumps({**summary, "settings": {"train": {**summary["settings"]["train"], "epochs": 10}}}))
    with pytest.raises(UserError, match=r"trained with other settings than the study's: train.epochs 10"):
        write_report(params, cells, tmp_path / "r", tuned_dir=tuned_dir, chosen_path=chosen_path, sweep_dir=sweep_dir)


def test_a_rate_chosen_at_the_grids_edge_is_flagged_and_the_sweep_seeds_are_never_reported(tmp_path):
    # BN after the activation chose 0.1, the largest rate of the grid: its best rate may lie beyond it.
    params, cells, sweep_dir, tuned_dir, chosen_path = _study(tmp_path)
    page = build_report(params, cells, links=RunLinks(), tuned_dir=tuned_dir, chosen_path=chosen_path).html
    page = " ".join(page.split())
    assert "1 configuration(s) chose a rate at an end of the grid</strong>" in page
    row = page[page.index(f'<td class="key">{POST}</td>') :].split("</tr>", 1)[0]
    assert "(the grid's highest)" in row.replace("&#39;", "'")
    assert f'<td class="key">{OFF}</td><td><strong>0.001</strong></td>' in page  # inside the grid: no flag
    assert "chosen on the sweep seeds 0, 1, never among the seeds reported here (2, 3)" in page
