"""A learning-rate sweep, by params alone: an overlay with `sweep:`, the generator, `dvc repro`.

In the e2e copy of the repository (data already fetched there), a study under studies/
sweeps two rates per configuration, chooses one on validation and reruns it over the
study's seeds. Every check holds by construction: the choice is recomputed here from the
sweep runs' own metrics by the rule chosen.json states, whatever scores came out.
"""

from __future__ import annotations

import base64
import csv
import io
import json
import re

import matplotlib.image
import pytest
from mlflow.tracking import MlflowClient

from tests.helpers import dvc, regenerate_pipeline

pytestmark = pytest.mark.e2e
OVERLAY = """\
study:
  name: bnbench-sweep
prepare:
  max_train_examples: 400
  max_test_examples: 200
matrix:
  dataset: [fashion_mnist]
  activation: [relu]
  bn: ["off", post]
  dropout: [0.0]
  seed: [0, 1]
train:
  epochs: 1
  evals_per_epoch: 2
sweep:
  learning_rates: [0.0001, 0.1]
  seeds: [2]
  epochs: 1
  choose_by: best_val_accuracy
"""
CONFIGURATIONS = {f"fashion_mnist-relu-{bn}-0.0": bn for bn in ("off", "post")}
CELLS = {f"{config}-{seed}": config for config in CONFIGURATIONS for seed in (0, 1)}
SWEEP_CELLS = {
    f"{config}-learning_rate_{rate}-2": (config, rate) for config in CONFIGURATIONS for rate in (0.0001, 0.1)
}


@pytest.fixture(scope="module")
def sweep_study(study):
    repo, env, _ = study
    folder = repo / "studies" / "sweep"
    folder.mkdir()
    (folder / "params.yaml").write_text(OVERLAY)
    regenerate_pipeline(repo)
    done = dvc(repo, env, "repro", "studies/sweep/dvc.yaml")
    return repo, env, folder, done


def _metrics(folder, kind: str, name: str) -> dict:
    return json.loads((folder / "results" / kind / name / "metrics.json").read_text())


def _expected_choice(folder, config: str) -> float:
    """The stated rule, computed independently: best mean best_val_accuracy; diverged worst; ties to the smaller rate."""
    scores = {}
    for name, (of, rate) in SWEEP_CELLS.items():
        if of == config:
            m = _metrics(folder, "sweep/cells", name)
            ok = m["outcome"] != "diverged" and m["best_val_accuracy"] is not None
            scores[rate] = m["best_val_accuracy"] if ok else None
    finite = {r: s for r, s in scores.items() if s is not None}
    if not finite:
        return min(scores)
    best = max(finite.values())
    return min(r for r, s in finite.items() if s == best)


def test_every_stage_ran_with_its_outputs_where_the_pipeline_says(sweep_study):
    _, _, folder, done = sweep_study
    for name in SWEEP_CELLS:
        assert f"studies/sweep/dvc.yaml:sweep@{name}'" in done.stdout
    for name in CELLS:
        assert f"studies/sweep/dvc.yaml:train@{name}'" in done.stdout
        assert f"studies/sweep/dvc.yaml:tuned@{name}'" in done.stdout
    assert sorted(p.name for p in (folder / "results" / "sweep" / "cells").iterdir()) == sorted(SWEEP_CELLS)
    assert sorted(p.name for p in (folder / "results" / "tuned").iterdir()) == sorted(CELLS)
    for name, (_, rate) in SWEEP_CELLS.items():
        trained = _metrics(folder, "sweep/cells", name)
        assert trained["settings"]["train"]["optimizer"]["learning_rate"] == rate
        assert trained["settings"]["train"]["epochs"] == 1 and trained["lr_policy"] == "sweep"


def test_the_choice_follows_the_stated_rule_and_tuned_cells_train_at_it(sweep_study):
    _, _, folder, _ = sweep_study
    chosen = json.loads((folder / "results" / "sweep" / "chosen.json").read_text())
    assert chosen["choose_by"] == "best_val_accuracy" and "smaller rate" in chosen["rule"]
    assert set(chosen["configurations"]) == set(CONFIGURATIONS)
    for config in CONFIGURATIONS:
        assert chosen["configurations"][config]["learning_rate"] == _expected_choice(folder, config)
    for name, config in CELLS.items():
        tuned = _metrics(folder, "tuned", name)
        assert tuned["lr_policy"] == "tuned"
        assert (
            tuned["settings"]["train"]["optimizer"]["learning_rate"]
            == chosen["configurations"][config]["learning_rate"]
        )
        fixed = _metrics(folder, "cells", name)
        assert fixed["lr_policy"] == "fixed" and fixed["settings"]["train"]["optimizer"]["learning_rate"] == 0.001


def test_results_hold_fixed_and_tuned_rows_and_the_page_shows_both(sweep_study):
    _, _, folder, _ = sweep_study
    chosen = json.loads((folder / "results" / "sweep" / "chosen.json").read_text())["configurations"]
    with (folder / "reports" / "results.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    assert sorted((r["cell"], r["lr_policy"]) for r in rows) == sorted(
        (name, policy) for name in CELLS for policy in ("fixed", "tuned")
    )
    for row in rows:
        rate = float(row["train.optimizer.learning_rate"])
        assert rate == (0.001 if row["lr_policy"] == "fixed" else chosen[CELLS[row["cell"]]]["learning_rate"])
    html = (folder / "reports" / "index.html").read_text()
    assert 'id="tuned"' in html and "Answers at the tuned rates" in html
    assert "Per configuration, tuned: fashion_mnist" in html
    # DVC's metrics answer each claim at both rates, under the same keys
    metrics = json.loads((folder.parents[1] / "metrics" / "sweep.json").read_text())
    tuned = metrics.pop("tuned")
    assert set(tuned) == set(metrics) and metrics


def test_the_page_shows_the_sweep_and_sweep_csv_has_one_row_per_sweep_cell(sweep_study):
    _, _, folder, _ = sweep_study
    chosen = json.loads((folder / "results" / "sweep" / "chosen.json").read_text())["configurations"]
    html = (folder / "reports" / "index.html").read_text()
    figure = re.search(r'<figure id="fashion_mnist-sweep">(.*?)</figure>', html, re.S)
    assert figure, "no sweep figure on the page"
    (data,) = re.findall(r'<img src="data:image/png;base64,([^"]+)"', figure.group(1))
    image = matplotlib.image.imread(io.BytesIO(base64.b64decode(data)), format="png")
    assert image.shape[1] > 300 and image.shape[0] > 200
    caption = " ".join(figure.group(1).split())
    assert "a budget of 1 epoch(s) per sweep run" in caption and "best_val_accuracy" in caption
    with (folder / "reports" / "sweep.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    assert sorted(r["cell"] for r in rows) == sorted(SWEEP_CELLS)
    for row in rows:
        config, rate = SWEEP_CELLS[row["cell"]]
        trained = _metrics(folder, "sweep/cells", row["cell"])
        assert row["configuration"] == config and float(row["train.optimizer.learning_rate"]) == rate
        assert row["seed"] == "2" and row["choose_by"] == "best_val_accuracy"
        assert row["diverged"] == str(trained["outcome"] == "diverged")
        assert row["chosen"] == str(rate == chosen[config]["learning_rate"])
        if trained["outcome"] == "diverged" or trained["best_val_accuracy"] is None:
            assert row["score"] == ""
        else:
            assert float(row["score"]) == pytest.approx(trained["best_val_accuracy"], rel=1e-5)


def test_sweep_and_tuned_runs_are_tracked_apart_from_the_cells(sweep_study):
    repo, _, _, _ = sweep_study
    client = MlflowClient(f"sqlite:///{repo / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("bnbench-sweep")
    by_policy: dict[str, list[str]] = {}
    for run in client.search_runs([experiment.experiment_id], "tags.`bnbench.role` != 'study'"):
        assert run.info.status == "FINISHED"
        by_policy.setdefault(run.data.tags["bnbench.lr_policy"], []).append(run.data.tags["bnbench.cell"])
    assert sorted(by_policy["fixed"]) == sorted(by_policy["tuned"]) == sorted(CELLS)
    assert sorted(by_policy["sweep"]) == sorted(SWEEP_CELLS)


def test_afterwards_nothing_is_stale_and_a_second_repro_trains_nothing(sweep_study):
    repo, env, _, _ = sweep_study
    assert "up to date" in dvc(repo, env, "status", "studies/sweep/dvc.yaml").stdout
    again = dvc(repo, env, "repro", "studies/sweep/dvc.yaml")
    assert "Running stage" not in again.stdout
