"""The report as a person sees it: opened from disk in headless Chromium, offline."""

from __future__ import annotations

import csv
import os
import shutil

import pytest

pytestmark = pytest.mark.e2e

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
ARGS = ["--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
        "--disable-component-update", "--disable-sync"]  # fmt: skip


@pytest.fixture(scope="module")
def page(study, tmp_path_factory):
    if not CHROMIUM:
        if os.environ.get("CI"):
            pytest.fail("CI must test the page: install Debian's chromium (.ci/run does)")
        pytest.skip("Debian's chromium is not installed")
    from playwright.sync_api import sync_playwright

    repo, _, _ = study
    errors: list[str] = []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        context = browser.new_context(viewport={"width": 1280, "height": 900}, offline=True)
        tab = context.new_page()
        tab.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
        tab.on("pageerror", lambda e: errors.append(str(e)))
        tab.on("requestfailed", lambda r: errors.append(f"failed request {r.url}"))
        tab.goto((repo / "quick" / "reports" / "index.html").as_uri())
        tab.wait_for_load_state("load")
        shot = tmp_path_factory.mktemp("screenshots") / "report.png"
        tab.screenshot(path=str(shot), full_page=True)
        yield tab, errors, shot
        browser.close()


def test_page_shows_the_study_and_every_dataset(page):
    tab, _, _ = page
    assert tab.title() == "bnbench report: bnbench-quick"
    headings = tab.locator("h2").all_inner_texts()
    assert headings[:2] == ["cifar10", "fashion_mnist"] and "Environment and provenance" in headings
    assert tab.get_by_text("Not the published datasets.").is_visible()


def test_figures_load_and_tables_are_filled(page, study):
    tab, _, _ = page
    sizes = tab.eval_on_selector_all("img", "imgs => imgs.map(i => [i.complete, i.naturalWidth, i.naturalHeight])")
    assert len(sizes) == 2 and all(done and w > 300 and h > 200 for done, w, h in sizes)
    repo, _, _ = study
    with (repo / "quick" / "reports" / "results.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == 8
    for row in rows:  # each run has one row, showing its own test accuracy
        name = f"{row['dataset']}-{row['activation']}-{row['bn']}-{float(row['dropout'])}-{row['seed']}"
        shown = tab.locator("tr", has=tab.locator("td", has_text=name))
        assert shown.count() == 1, name
        cells = shown.locator("td").all_inner_texts()
        assert cells[0] == name and f"{float(row['test_accuracy']):.3f}" in cells


def test_no_console_errors_and_a_screenshot(page):
    _, errors, shot = page
    assert errors == []
    assert shot.stat().st_size > 20_000
