"""`dvc repro` of a shrunk quick study in a copy of the repository, data served from 127.0.0.1."""

from __future__ import annotations

import csv
import json
import re

import pytest
from mlflow.tracking import MlflowClient

from tests.helpers import dvc, open_offline

pytestmark = pytest.mark.e2e


CELLS = [f"{d}-sigmoid-{bn}-0.0-{s}" for d in ("cifar10", "fashion_mnist") for bn in ("off", "post") for s in (0, 1)]


def test_report_and_results_cover_every_cell(study):
    repo, _, _ = study
    html = (repo / "studies" / "quick" / "reports" / "index.html").read_text()
    assert "bnbench: bnbench-quick" in html and "Not the published datasets" in html
    # 5 figures per dataset (curves, survival, gradient norms, BN statistics, ...) and 2 across them, inlined,
    # and on each dataset a speed-up curve over every target for each speed question (in steps, in seconds)
    speedup_curves = {
        d: html.count(f'alt="{d}: speed-up against every target level') for d in ("cifar10", "fashion_mnist")
    }
    assert speedup_curves == {"cifar10": 2, "fashion_mnist": 2}
    assert html.count('src="data:image/png;base64,') == 2 * 5 + 2 + sum(speedup_curves.values())
    assert all(cell in html for cell in CELLS)
    with (repo / "studies" / "quick" / "reports" / "results.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    # each row's name is its axis values, in the matrix's order
    names = [f"{r['dataset']}-{r['activation']}-{r['bn']}-{float(r['dropout'])}-{r['seed']}" for r in rows]
    assert names == [r["cell"] for r in rows] and sorted(names) == sorted(CELLS)
    for row in rows:  # the table carries each cell's own numbers, as its stage wrote them
        name = row["cell"]
        written = json.loads((repo / "studies" / "quick" / "results" / "cells" / name / "metrics.json").read_text())
        assert row["outcome"] == written["outcome"] and row["seed"] == str(written["axes"]["seed"])
        assert float(row["test_accuracy"]) == pytest.approx(written["test_accuracy"], rel=1e-5)
        assert float(row["best_val_accuracy"]) == pytest.approx(written["best_val_accuracy"], rel=1e-5)


def test_one_mlflow_run_per_cell_under_the_study(study):
    repo, _, _ = study
    client = MlflowClient(f"sqlite:///{repo / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("bnbench-quick")
    runs = client.search_runs([experiment.experiment_id], "tags.`bnbench.role` = 'cell'")
    assert sorted(r.data.tags["bnbench.cell"] for r in runs) == sorted(CELLS)
    parents = {r.data.tags["mlflow.parentRunId"] for r in runs}
    assert len(parents) == 1 and client.get_run(parents.pop()).data.tags["bnbench.role"] == "study"
    for run in runs:
        assert run.info.status == "FINISHED"
        name = run.data.tags["bnbench.cell"]
        assert f"{run.data.params['dataset']}-{run.data.params['activation']}-{run.data.params['bn']}" in name
        assert run.data.params["seed"] == name[-1] and run.data.params["train.epochs"] == "1"
        assert run.data.tags["bnbench.dvc_stage"] == f"studies/quick/dvc.yaml:train@{name}"
        assert run.data.tags["bnbench.dvc_exp"] == "(workspace)"  # dvc repro, not dvc exp run
        datasets = {i.tags[0].value: i.dataset.name for i in run.inputs.dataset_inputs}
        assert datasets == {
            "training": f"{run.data.params['dataset']}/train",
            "validation": f"{run.data.params['dataset']}/val",
        }
        assert run.data.tags["bnbench.published_data"] == "false"
        written = json.loads((repo / "studies" / "quick" / "results" / "cells" / name / "metrics.json").read_text())
        assert run.data.metrics["summary/test_accuracy"] == pytest.approx(written["test_accuracy"])
        curve = client.get_metric_history(run.info.run_id, "curves/val_accuracy")
        steps_per_epoch = written["steps_per_epoch"]  # one epoch, two passes: step 0, the middle, the end
        middle = -(-steps_per_epoch // 2)
        # and, before the middle, the early passes: 1, 2, 4, ... while twice the step stays within it
        early = [2**k for k in range(10) if 2 ** (k + 1) <= middle]
        assert [m.step for m in curve] == [0, *early, middle, steps_per_epoch]
        artifacts = {a.path for a in client.list_artifacts(run.info.run_id)}
        assert {"history.csv", "metrics.json", "curves.png"} <= artifacts


def test_second_repro_trains_nothing_and_status_is_clean(study):
    repo, env, _ = study
    again = dvc(repo, env, "repro", "studies/quick/dvc.yaml")
    assert "Running stage" not in again.stdout
    assert "up to date" in dvc(repo, env, "status", "studies/quick/dvc.yaml").stdout


WARNINGS = re.compile(r"failed to load|warning|error", re.I)
EXP_VIEW = ["exp", "show", "--drop", ".*", "--keep", r"Experiment|bn-post-steps\..*\.verdict"]  # as the README gives it


def test_dvc_metrics_show_the_answers_and_only_studies_that_ran(study):
    repo, env, _ = study
    shown = dvc(repo, env, "metrics", "show")
    assert not WARNINGS.search(shown.stdout + shown.stderr), shown.stdout + shown.stderr
    print(f"\n$ dvc metrics show\n{shown.stdout}")
    [(_, by_file)] = json.loads(dvc(repo, env, "metrics", "show", "--json").stdout).items()
    # a row for each study whose report has run (the quick study; another test of this repository may add
    # one), none for the main study and the claim studies, which have not
    ran = {f"metrics/{path.name}" for path in (repo / "metrics").glob("*.json")}
    assert "metrics/quick.json" in ran and "metrics/main.json" not in ran and set(by_file["data"]) == ran
    answers = by_file["data"]["metrics/quick.json"]["data"]
    # as the page says (tests/e2e/test_report_page.py): BN post against off, in steps, on both datasets, n = 2,
    # inconclusive (2 seeds are below the rule's minimum)
    for dataset in ("cifar10", "fashion_mnist"):
        answer = answers["bn-post-steps"][dataset]
        assert answer["n"] == 2 and answer["verdict"] == "inconclusive"
        # no run reached a target: no estimate, and DVC leaves the null numbers out of its view
        low, high = answer.get("ci_low"), answer.get("ci_high")
        assert (low is None and high is None and answer.get("effect") is None) or low <= answer["effect"] <= high


def test_dvc_plots_show_overlays_the_configurations_offline(study):
    repo, env, _ = study
    out = repo.parent / "dvc-plots"
    said = dvc(repo, env, "plots", "show", "--out", str(out))
    assert not WARNINGS.search(said.stdout + said.stderr), said.stdout + said.stderr
    html = (out / "index.html").read_text()
    assert not re.search(r"<(script|link|img)[^>]+(src|href)\s*=\s*[\"']?https?:", html)
    body, errors, requests = open_offline(out / "index.html", "svg.marks")
    assert errors == [] and requests == []
    # one chart per dataset of each study that ran, each a line per configuration (the seeds combined), never
    # per cell: the quick study's two, and one per curves file another test of this repository may have added
    charts = sorted(re.findall(r'<div id="(curves_[a-z0-9_]+_csv)"', body))
    assert charts == sorted(f"curves_{path.stem}_csv" for path in (repo / "curves").glob("*.csv"))
    assert {"curves_quick_cifar10_csv", "curves_quick_fashion_mnist_csv"} <= set(charts)
    assert body.count('class="marks"') == len(charts)
    assert "bn=off" in body and "bn=post" in body and "-0.0-0" not in body  # legends and lines name no cell


def test_dvc_exp_show_as_documented_fits_120_columns(study):
    repo, env, _ = study
    everything = dvc(repo, env, "exp", "show", "--csv").stdout.splitlines()[0].split(",")
    view = dvc(repo, env, *EXP_VIEW).stdout
    print(f"\n$ dvc exp show: {len(everything)} columns in all\n$ dvc {' '.join(EXP_VIEW)}\n{view}")
    assert max(len(line.rstrip()) for line in view.splitlines()) <= 120, view
    assert "bn-post-steps.cifar10.verdict" in view and "inconclusive" in view and "…" not in view
