"""The quick study's runs in MLflow's UI, as a person opens them after `dvc repro`: headless Chromium
against `mlflow server` on 127.0.0.1 over the repository's own mlflow.db (what
`uv run mlflow ui --backend-store-uri sqlite:///mlflow.db` serves).

Checks what a person would see: the runs table names each cell by what differs, under the study's
run; a cell's page lists its datasets and opens its charts on the training curves; the study's run
carries the report and lasts as long as the study; the report's links open each run. Screenshots are
kept in the test's tmp folder (printed on failure).
"""

from __future__ import annotations

import re

import pytest
from mlflow.tracking import MlflowClient

from tests.helpers import MlflowServer
from tests.mlflow_ui import (
    browser_tab,
    expand,
    metric_sections,
    open_runs_table,
    row_index,
    screenshot,
    unknown_errors,
)

pytestmark = pytest.mark.e2e

STUDY = "bnbench-quick"
# The shrunk quick study varies bn, the seed and the dataset (one activation, one dropout rate)
RUN_NAMES = {f"{bn}·s{seed} · {d}" for d in ("cifar10", "fashion_mnist") for bn in ("off", "post") for seed in (0, 1)}


@pytest.fixture(scope="module")
def ui(study, tmp_path_factory):
    repo, _, _ = study
    folder = tmp_path_factory.mktemp("mlflow-ui")
    server = MlflowServer(f"sqlite:///{repo / 'mlflow.db'}", folder / "server").start()
    try:
        client = MlflowClient(server.uri)
        experiment = client.get_experiment_by_name(STUDY)
        runs = client.search_runs([experiment.experiment_id])
        (study_run,) = [r for r in runs if r.data.tags.get("bnbench.role") == "study"]
        cells = [r for r in runs if r.data.tags.get("bnbench.role") == "cell"]
        with browser_tab() as (tab, errors):
            yield tab, server.uri, experiment.experiment_id, study_run, cells, client, errors, folder, repo
    finally:
        server.kill()


def test_the_runs_table_names_each_cell_by_what_differs_under_the_study(ui):
    tab, url, experiment_id, study_run, cells, _, _, folder, _ = ui
    assert {r.info.run_name for r in cells} == RUN_NAMES
    parent = open_runs_table(tab, url, experiment_id, study_run.info.run_name)
    some_cell = sorted(RUN_NAMES)[0]
    assert tab.get_by_role("link", name=some_cell, exact=True).count() == 0  # collapsed under the study
    expand(parent)
    links = [tab.get_by_role("link", name=name, exact=True) for name in sorted(RUN_NAMES)]
    for link in links:
        link.wait_for()
    parent_x = parent.get_by_role("link").bounding_box()["x"]
    assert all(link.bounding_box()["x"] > parent_x for link in links)  # indented: children of the study
    rows = sorted(row_index(link) for link in links)
    assert rows == list(range(row_index(parent) + 1, row_index(parent) + 1 + len(RUN_NAMES)))
    # the Dataset column names each cell's training split
    assert tab.get_by_text(re.compile(r"^(cifar10|fashion_mnist)/train \(")).count() == len(RUN_NAMES)
    assert screenshot(tab, folder, "runs.png").stat().st_size > 30_000


def test_a_cell_lists_its_datasets_and_opens_on_its_curves(ui):
    tab, url, experiment_id, study_run, cells, client, _, folder, _ = ui
    (cell,) = [r for r in cells if r.info.run_name == "post·s1 · fashion_mnist"]
    tab.goto(f"{url}/#/experiments/{experiment_id}/runs/{cell.info.run_id}")
    tab.get_by_text("fashion_mnist/train (", exact=False).first.wait_for()
    # (each part of the page fills in as its request answers: wait for it)
    tab.get_by_text(study_run.info.run_name, exact=True).first.wait_for()  # its parent run
    tab.get_by_text("training", exact=True).first.wait_for()  # the split's context (shown capitalised)
    tab.get_by_text("studies/quick/dvc.yaml:train@fashion_mnist-sigmoid-post-0.0-1").first.wait_for()
    screenshot(tab, folder, "cell-overview.png")
    sections = metric_sections(tab, url, experiment_id, cell.info.run_id)
    assert sections[:4] == ["curves", "gradients", "progress", "summary"], sections
    first = tab.locator("[data-testid=experiment-view-compare-runs-card]").first
    first.get_by_text("curves/", exact=False).first.wait_for()  # the legend: a curve's full key
    tab.get_by_text("val_accuracy", exact=True).first.wait_for()
    assert tab.locator(".js-plotly-plot path.js-line").first.get_attribute("d").startswith("M")  # a drawn curve
    assert screenshot(tab, folder, "cell-metrics.png").stat().st_size > 30_000
    # the curves as logged, with the one-point numbers apart
    logged = client.get_run(cell.info.run_id).data.metrics
    assert {"curves/val_accuracy", "curves/train_loss_step", "summary/test_accuracy"} <= set(logged)
    assert not [key for key in logged if "/" not in key]


def test_the_study_run_carries_the_report_and_lasts_as_long_as_the_study(ui):
    tab, url, experiment_id, study_run, cells, client, _, folder, _ = ui
    info = study_run.info
    assert info.status == "FINISHED"
    assert info.start_time <= min(c.info.start_time for c in cells)
    assert info.end_time >= max(c.info.end_time for c in cells)  # from the first cell to the report
    assert any(key.startswith("findings/bn-post-steps/") for key in study_run.data.metrics)
    tab.goto(f"{url}/#/experiments/{experiment_id}/runs/{info.run_id}/artifacts")
    tab.get_by_text("report", exact=True).first.click()
    for name in ("index.html", "findings.json", "quick.json", "results.csv"):
        tab.get_by_text(name, exact=True).first.wait_for()
    tab.get_by_text("index.html", exact=True).first.click()
    assert screenshot(tab, folder, "study-report.png").stat().st_size > 30_000
    artifacts = {a.path for a in client.list_artifacts(info.run_id, "report")}
    assert {"report/index.html", "report/findings.json"} <= artifacts


def test_the_reports_links_open_each_run(ui):
    tab, url, experiment_id, _, cells, _, _, folder, repo = ui
    html = (repo / "studies" / "quick" / "reports" / "index.html").read_text()
    # with the default SQLite store the page links into the UI `mlflow ui` serves, and says how to start it
    assert "uv run mlflow ui --backend-store-uri sqlite:///mlflow.db" in html
    for cell in cells:
        assert f'href="http://127.0.0.1:5000/#/experiments/{experiment_id}/runs/{cell.info.run_id}"' in html
    # the same address on this test's port opens the run's page
    cell = cells[0]
    tab.goto(f"{url}/#/experiments/{experiment_id}/runs/{cell.info.run_id}")
    tab.get_by_role("heading", name=cell.info.run_name).first.wait_for()


def test_no_console_errors_but_the_known_ones(ui):
    *_, errors, _, _ = ui
    assert unknown_errors(errors) == []
