"""The MLflow UI served from the container, as a person uses it: headless Chromium on 127.0.0.1.

Opens the study's runs table, expands the study's run to show its cells, then one cell's metric
chart. Screenshots of both are kept; their paths are printed at the end of the test session.
"""

from __future__ import annotations

import re

import pytest
from mlflow.tracking import MlflowClient

from tests.container.conftest import CELLS, SCREENSHOTS
from tests.helpers import require_chromium

pytestmark = [pytest.mark.e2e, pytest.mark.container]  # e2e too: `-m "not e2e"` is the fast suite

ARGS = ["--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
        "--disable-component-update", "--disable-sync"]  # fmt: skip
NAME_CELL = '[role=gridcell][col-id="attributes.`Run Name`"]'
# What MLflow 3.17's UI logs as errors on its own, data or not: it asks for the current user, and a
# server without auth has none (a 404); and its metric chart grid, laying itself out again, makes
# Chromium report a ResizeObserver loop, which the UI logs (the charts are checked above all the same).
KNOWN_ERROR_URL = "/ajax-api/2.0/mlflow/users/current"
KNOWN_ERROR_TEXT = "null ResizeObserver loop completed with undelivered notifications."
CHART_METRIC = "curves/val_accuracy"
TIMEOUT_MS = 90_000  # the first page load compiles a large bundle on 2 cores


@pytest.fixture(scope="module")
def ui(stack, tmp_path_factory):
    chromium = require_chromium()
    from playwright.sync_api import sync_playwright

    client = MlflowClient(stack.mlflow_url)
    experiment = client.get_experiment_by_name("bnbench-quick")
    runs = client.search_runs([experiment.experiment_id])
    errors: list[str] = []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium, args=ARGS)
        tab = browser.new_page(viewport={"width": 1600, "height": 1000})
        tab.set_default_timeout(TIMEOUT_MS)
        tab.on("console", lambda m: errors.append(f"{m.text} ({m.location['url']})") if m.type == "error" else None)
        tab.on("pageerror", lambda e: errors.append(str(e)))
        yield (
            tab,
            stack.mlflow_url,
            experiment.experiment_id,
            runs,
            client,
            errors,
            tmp_path_factory.mktemp("mlflow-ui"),
        )
        browser.close()


def _screenshot(tab, folder, name):
    path = folder / name
    tab.screenshot(path=str(path))
    SCREENSHOTS.append(path)
    return path


def test_runs_table_lists_the_study_with_its_cells_under_it(ui):
    tab, url, experiment_id, runs, _, _, folder = ui
    (study,) = [r for r in runs if r.data.tags.get("bnbench.role") == "study"]
    tab.goto(f"{url}/#/experiments/{experiment_id}/runs")
    tab.get_by_role("button", name="Close").click()  # the assistant's side panel, open by default
    parent = tab.locator(NAME_CELL).filter(has=tab.get_by_role("link", name=study.info.run_name, exact=True))
    parent.wait_for()
    assert tab.get_by_role("link", name=CELLS[0], exact=True).count() == 0  # collapsed under the study
    parent.get_by_role("button").click()  # the expander beside the study's name
    links = [tab.get_by_role("link", name=cell, exact=True) for cell in CELLS]
    for link in links:
        link.wait_for()
    parent_x = parent.get_by_role("link").bounding_box()["x"]
    assert all(link.bounding_box()["x"] > parent_x for link in links)  # indented: children of the study
    parent_row = int(parent.evaluate("e => e.closest('[role=row]').getAttribute('row-index')"))
    rows = [int(link.evaluate("e => e.closest('[role=row]').getAttribute('row-index')")) for link in links]
    assert sorted(rows) == list(range(parent_row + 1, parent_row + 1 + len(CELLS)))
    assert tab.get_by_text(f"{len(CELLS) + 1} matching runs").is_visible()
    assert _screenshot(tab, folder, "runs.png").stat().st_size > 30_000


def test_a_cells_metric_chart_renders_what_was_logged(ui):
    tab, url, experiment_id, runs, client, _, folder = ui
    cells = [r for r in runs if r.data.tags.get("bnbench.role") == "cell"]
    curves = {r.info.run_id: client.get_metric_history(r.info.run_id, CHART_METRIC) for r in cells}
    # The cell whose curve moves most makes the clearest picture; any cell would do for the checks.
    run_id, logged = max(curves.items(), key=lambda item: max(m.value for m in item[1]) - min(m.value for m in item[1]))
    tab.goto(f"{url}/#/experiments/{experiment_id}/runs/{run_id}/model-metrics")
    tab.get_by_placeholder("Search metric charts").fill(CHART_METRIC)
    card = tab.locator("[data-testid=experiment-view-compare-runs-card]").filter(
        has=tab.get_by_text(CHART_METRIC, exact=True)
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
    name = client.get_run(run_id).data.tags["bnbench.cell"]
    assert card.get_by_text(name).first.is_visible()  # the legend names the cell
    assert _screenshot(tab, folder, "metric-chart.png").stat().st_size > 30_000


def test_no_console_errors_but_the_known_ones(ui):
    *_, errors, _ = ui
    assert [e for e in errors if KNOWN_ERROR_URL not in e and not e.startswith(KNOWN_ERROR_TEXT)] == []
