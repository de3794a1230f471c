"""The report is built from the cells' files alone: fabricated outputs in, numbers out."""

from __future__ import annotations

import json
import re

import numpy as np
import pandas as pd
import pytest

from pipeline.errors import UserError
from pipeline.report.build import build_report
from pipeline.study.cells import Cell
from pipeline.study.params import load_params
from tests.helpers import REPO

SHIPPED_TRAIN = load_params(REPO / "params.yaml").train.model_dump()


def _write_cell(cells_dir, dataset, activation, bn, seed, accuracies, name=None):
    folder = cells_dir / (name or f"{dataset}-{activation}-{bn}-0.0-{seed}")
    folder.mkdir(parents=True)
    n = len(accuracies)
    history = pd.DataFrame(
        {
            "step": [10 * i for i in range(n)],
            "epoch": [i / 2 for i in range(n)],
            "seconds": [2.0 * i for i in range(n)],
            "train_loss": 1.0,
            "train_accuracy": 0.5,
            "val_loss": 1.0,
            "val_accuracy": accuracies,
        }
    )
    history.to_csv(folder / "history.csv", index=False)
    steps = np.arange(1, 10 * (n - 1) + 1)
    pd.DataFrame({"step": steps, "train_loss": 2.0 - 0.025 * steps}).to_csv(folder / "steps.csv", index=False)
    axes = {"dataset": dataset, "activation": activation, "bn": bn, "dropout": 0.0, "seed": seed}
    summary = {
        "cell": Cell(tuple(axes.items())).name, "axes": axes, "settings": {"train": SHIPPED_TRAIN},
        "outcome": "completed", "steps_per_epoch": 20, "budget_steps": 10 * (n - 1), "steps_trained": 10 * (n - 1), "train_seconds": 9.0,
        "throughput_images_per_s": 100.0, "throughput_warmup_steps": 10, "best_val_accuracy": max(accuracies), "final_val_accuracy": accuracies[-1],
        "val_auc": 0.5, "test_accuracy": accuracies[-1] - 0.01, "data_digest": f"digest-{dataset}",
        "published_data": True, "device": "cpu", "git_commit": "abc",
    }  # fmt: skip
    (folder / "metrics.json").write_text(json.dumps(summary))


@pytest.fixture
def params(tmp_path):
    text = (REPO / "params.yaml").read_text()
    text = text.replace("dataset: [cifar10, fashion_mnist]", "dataset: [cifar10]")
    text = text.replace("activation: [sigmoid, relu]", "activation: [relu]")
    text = text.replace('bn: ["off", pre, post]', 'bn: ["off", post]')
    text = text.replace("dropout: [0.0, 0.5]", "dropout: [0.0]")
    text = re.sub(r"seed: \[[0-9, ]+\]", "seed: [0, 1]", text)
    path = tmp_path / "params.yaml"
    path.write_text(text)
    return load_params(path)


def test_numbers_come_from_the_histories(params, tmp_path):
    cells = tmp_path / "cells"
    for seed in (0, 1):
        _write_cell(cells, "cifar10", "relu", "off", seed, [0.1, 0.3, 0.52, 0.61, 0.65])
        _write_cell(cells, "cifar10", "relu", "post", seed, [0.1, 0.55, 0.66, 0.72, 0.74])
    html, results, _metrics, _answers, curves = build_report(params, cells)
    by_bn = results.set_index(["bn", "seed"])
    # interpolated crossings: 0.3 at step 10, 0.52 at 20 -> 0.5 at 10 + 10 * 0.2 / 0.22; 0.1 -> 0.55 over steps 0-10
    assert by_bn.loc[("off", 0), "steps_to_acc50"] == pytest.approx(10 + 100 / 11)
    assert by_bn.loc[("post", 0), "steps_to_acc50"] == pytest.approx(10 * 0.4 / 0.45)
    assert bool(by_bn.loc[("off", 0), "reached_acc70"]) is False and pd.isna(by_bn.loc[("off", 0), "steps_to_acc70"])
    assert by_bn.loc[("post", 1), "seconds_to_acc70"] == pytest.approx(4.0 + 2.0 * 0.04 / 0.06)
    # loss 2 - 0.025 s per step: its 20-step trailing mean is 2 - 0.025 (s - 9.5), at most 1.6 from step 26
    assert by_bn.loc[("off", 0), "steps_to_loss1p6"] == 26 and by_bn.loc[
        ("off", 0), "seconds_to_loss1p6"
    ] == pytest.approx(5.2)
    assert by_bn.loc[("post", 1), "steps_to_loss1p3"] == 38
    assert bool(by_bn.loc[("off", 0), "reached_loss1"]) is False  # would take step 50: past the 40-step budget
    assert "loss 1.3" in html
    # DVC's plot gets every evaluation of every run, labelled by what varies: BN
    post = curves["cifar10"].query("configuration == 'bn=post' and seed == 1")
    assert list(post["val_accuracy"]) == pytest.approx([0.1, 0.55, 0.66, 0.72, 0.74]) and set(curves) == {"cifar10"}
    assert set(curves["cifar10"]["configuration"]) == {"bn=off", "bn=post"}
    assert "cifar10-relu-post-0.0-1" in html and "digest-cifar10" in html
    assert "Not the published datasets" not in html


def test_stale_cells_are_ignored_and_missing_cells_named(params, tmp_path):
    cells = tmp_path / "cells"
    for seed in (0, 1):
        _write_cell(cells, "cifar10", "relu", "off", seed, [0.1, 0.5])
    _write_cell(cells, "cifar10", "relu", "post", 0, [0.1, 0.5])
    _write_cell(cells, "cifar10", "sigmoid", "off", 0, [0.1, 0.5])  # no longer in the matrix
    with pytest.raises(UserError, match=r"no results for 1 cell\(s\), e.g. train@cifar10-relu-post-0.0-1"):
        build_report(params, cells)
    _write_cell(cells, "cifar10", "relu", "post", 1, [0.1, 0.5])
    _, results, _, _report_answers, _curves = build_report(params, cells)
    assert len(results) == 4 and set(results["activation"]) == {"relu"}


def test_two_folders_holding_one_cell_are_refused(params, tmp_path):
    cells = tmp_path / "cells"
    for bn in ("off", "post"):
        for seed in (0, 1):
            _write_cell(cells, "cifar10", "relu", bn, seed, [0.1, 0.5])
    _write_cell(cells, "cifar10", "relu", "post", 1, [0.1, 0.6], name="old-copy")
    with pytest.raises(UserError, match=r"cells/cifar10-relu-post-0\.0-1 and .*cells/old-copy both hold"):
        build_report(params, cells)


def test_a_diverged_cell_is_counted_and_adds_no_accuracy(params, tmp_path):
    cells = tmp_path / "cells"
    for seed in (0, 1):
        _write_cell(cells, "cifar10", "relu", "off", seed, [0.1, 0.5, 0.6])
    _write_cell(cells, "cifar10", "relu", "post", 0, [0.1, 0.7, 0.8])
    _write_cell(cells, "cifar10", "relu", "post", 1, [0.1, 0.55, 0.55])
    diverged = cells / "cifar10-relu-post-0.0-1"
    summary = json.loads((diverged / "metrics.json").read_text())
    summary.update(outcome="diverged", final_val_accuracy=None, test_accuracy=None, diverged_at_step=20)
    (diverged / "metrics.json").write_text(json.dumps(summary))
    history = pd.read_csv(diverged / "history.csv")
    history.loc[2, ["val_accuracy", "val_loss"]] = None  # no accuracy after the divergence
    history.to_csv(diverged / "history.csv", index=False)
    html, results, _metrics, _answers, curves = build_report(params, cells)
    # DVC's curve of the diverged run stops where it diverged: no NaN, no made-up accuracy after it
    diverged_curve = curves["cifar10"].query("configuration == 'bn=post' and seed == 1")
    assert list(diverged_curve["val_accuracy"]) == pytest.approx([0.1, 0.55])
    assert results.set_index(["bn", "seed"]).loc[("post", 1), "outcome"] == "diverged"
    assert '<td class="diverged">1</td>' in html


def test_a_cell_trained_with_other_settings_is_refused(params, tmp_path):
    cells = tmp_path / "cells"
    for seed in (0, 1):
        for bn in ("off", "post"):
            _write_cell(cells, "cifar10", "relu", bn, seed, [0.1, 0.3, 0.52, 0.61, 0.65])
    stale = cells / "cifar10-relu-post-0.0-1" / "metrics.json"
    summary = json.loads(stale.read_text())
    summary["settings"]["train"]["epochs"] = 2  # e.g. a stage run by hand with another params file
    stale.write_text(json.dumps(summary))
    with pytest.raises(
        UserError, match=r"cifar10-relu-post-0.0-1 was trained with other settings.*train.epochs 2 \(study: 10\)"
    ):
        build_report(params, cells)
