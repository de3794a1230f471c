"""MLflow's UI as a person sees it, in headless Chromium: shared by the e2e and the container tests.

What MLflow 3.17's UI logs as errors on its own, data or not: it asks for the current user, and a
server without auth has none (a 404); and its metric chart grid, laying itself out again, makes
Chromium report a ResizeObserver loop, which the UI logs.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

from tests.helpers import require_chromium

ARGS = ["--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
        "--disable-component-update", "--disable-sync"]  # fmt: skip
NAME_CELL = '[role=gridcell][col-id="attributes.`Run Name`"]'
SECTION_HEADER = "[data-testid=experiment-view-compare-runs-section-header]"
KNOWN_ERROR_URL = "/ajax-api/2.0/mlflow/users/current"
KNOWN_ERROR_TEXT = "null ResizeObserver loop completed with undelivered notifications."
TIMEOUT_MS = 90_000  # the first page load compiles a large bundle on 2 cores


@contextlib.contextmanager
def browser_tab() -> Iterator[tuple[object, list[str]]]:
    """A Chromium tab at 1600 x 1000, and the console errors it logs."""
    chromium = require_chromium()
    from playwright.sync_api import sync_playwright

    errors: list[str] = []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium, args=ARGS)
        tab = browser.new_page(viewport={"width": 1600, "height": 1000})
        tab.set_default_timeout(TIMEOUT_MS)
        tab.on("console", lambda m: errors.append(f"{m.text} ({m.location['url']})") if m.type == "error" else None)
        tab.on("pageerror", lambda e: errors.append(str(e)))
        try:
            yield tab, errors
        finally:
            browser.close()


def unknown_errors(errors: list[str]) -> list[str]:
    return [e for e in errors if KNOWN_ERROR_URL not in e and not e.startswith(KNOWN_ERROR_TEXT)]


def screenshot(tab, folder: Path, name: str) -> Path:
    path = folder / name
    tab.screenshot(path=str(path))
    return path


def open_runs_table(tab, url: str, experiment_id: str, study_name: str):
    """The experiment's runs table, the assistant's side panel closed; returns the study's name cell, expanded."""
    tab.goto(f"{url}/#/experiments/{experiment_id}/runs")
    tab.get_by_role("button", name="Close").click()  # the assistant's side panel, open by default
    parent = tab.locator(NAME_CELL).filter(has=tab.get_by_role("link", name=study_name, exact=True))
    parent.wait_for()
    return parent


def expand(parent) -> None:
    parent.get_by_role("button").click()  # the expander beside the study's name


def row_index(link) -> int:
    return int(link.evaluate("e => e.closest('[role=row]').getAttribute('row-index')"))


def metric_sections(tab, url: str, experiment_id: str, run_id: str) -> list[str]:
    """The run's chart sections, top to bottom, as its Model metrics tab shows them."""
    tab.goto(f"{url}/#/experiments/{experiment_id}/runs/{run_id}/model-metrics")
    headers = tab.locator(SECTION_HEADER)
    headers.first.wait_for()
    return [header.inner_text().split("\n")[0].strip() for header in headers.all()]
