"""The MLflow UI served from the container, as a person uses it: headless Chromium on 127.0.0.1.

Opens the study's runs table, expands the study's run to show its cells, then one cell's metric
chart. Screenshots of both are kept; their paths are printed at the end of the test session.
"""

from __future__ import annotations

import re

import pytest
from mlflow.tracking import MlflowClient

from tests.container.conftest import CELLS, SCREENSHOTS
from tests.mlflow_ui import browser_tab, expand, open_runs_table, row_index, screenshot, unknown_errors

pytestmark = [pytest.mark.e2e, pytest.mark.container]  # e2e too: `-m "not e2e"` is the fast suite

CHART_METRIC = "curves/val_accuracy"
CHART_TITLE = "val_accuracy"  # a chart is titled by its key without its section (curves/)


@pytest.fixture(scope="module")
def ui(stack, tmp_path_factory):
    client = MlflowClient(stack.mlflow_url)
    experiment = client.get_experiment_by_name("bnbench-quick")
    runs = client.search_runs([experiment.experiment_id])
    with browser_tab() as (tab, errors):
        yield (
            tab,
            stack.mlflow_url,
            experiment.experiment_id,
            runs,
            client,
            errors,
            tmp_path_factory.mktemp("mlflow-ui"),
        )


def _screenshot(tab, folder, name):
    path = screenshot(tab, folder, name)
    SCREENSHOTS.append(path)
    return path


def test_runs_table_lists_the_study_with_its_cells_under_it(ui):
    tab, url, experiment_id, runs, _, _, folder = ui
    (study,) = [r for r in runs if r.data.tags.get("bnbench.role") == "study"]
    # each cell's run is named by what differs (pipeline/tracking/names.py): bn, seed, then the dataset
    names = sorted(r.info.run_name for r in runs if r.data.tags.get("bnbench.role") == "cell")
    assert names == sorted(f"{bn}·s{seed} · {d}" for d in ("cifar10", "fashion_mnist") for bn in ("off", "post") for seed in (0, 1))  # fmt: skip
    parent = open_runs_table(tab, url, experiment_id, study.info.run_name)
    assert tab.get_by_role("link", name=names[0], exact=True).count() == 0  # collapsed under the study
    expand(parent)
    links = [tab.get_by_role("link", name=name, exact=True) for name in names]
    for link in links:
        link.wait_for()
    parent_x = parent.get_by_role("link").bounding_box()["x"]
    assert all(link.bounding_box()["x"] > parent_x for link in links)  # indented: children of the study
    rows = sorted(row_index(link) for link in links)
    assert rows == list(range(row_index(parent) + 1, row_index(parent) + 1 + len(CELLS)))
    assert tab.get_by_text(f"{len(CELLS) + 1} matching runs").is_visible()
    assert _screenshot(tab, folder, "runs.png").stat().st_size > 30_000


def test_a_cells_metric_chart_renders_what_was_logged(ui):
    tab, url, experiment_id, runs, client, _, folder = ui
    cells = [r for r in runs if r.data.tags.get("bnbench.role") == "cell"]
    curves = {r.info.run_id: client.get_metric_history(r.info.run_id, CHART_METRIC) for r in cells}
    # The cell whose curve moves most makes the clearest picture; any cell would do for the checks.
    run_id, logged = max(curves.items(), key=lambda item: max(m.value for m in item[1]) - min(m.value for m in item[1]))
    tab.goto(f"{url}/#/experiments/{experiment_id}/runs/{run_id}/model-metrics")
    tab.get_by_placeholder("Search metric charts").fill(CHART_TITLE)
    card = tab.locator("[data-testid=experiment-view-compare-runs-card]").filter(
        has=tab.get_by_text(CHART_TITLE, exact=True)
    )
    points = card.locator(".js-plotly-plot path.point")
    points.nth(len(logged) - 1).wait_for()
    # one marker per logged evaluation: step 0, the early passes after steps 1 and 2, two regular passes
    assert points.count() == len(logged) == 5
    xy = [tuple(map(float, re.findall(r"[-\d.]+", p.get_attribute("transform")))) for p in points.all()]
    logged = sorted(logged, key=lambda m: m.step)
    xy = sorted(xy)
    # Drawn where the logged values are: left to right by step, higher up for a higher accuracy.
    for (x1, y1), (x2, y2), a, b in zip(xy, xy[1:], logged, logged[1:], strict=False):
        assert x1 < x2 and (y1 > y2) == (a.value < b.value)
    assert card.locator(".js-plotly-plot path.js-line").first.get_attribute("d").startswith("M")
    box = card.locator(".js-plotly-plot").bounding_box()
    assert box["width"] > 200 and box["height"] > 150
    name = client.get_run(run_id).info.run_name
    assert card.get_by_text(name).first.is_visible()  # the legend names the cell's run
    assert _screenshot(tab, folder, "metric-chart.png").stat().st_size > 30_000


def test_no_console_errors_but_the_known_ones(ui):
    *_, errors, _ = ui
    assert unknown_errors(errors) == []
