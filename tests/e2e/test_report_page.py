"""The report as a person sees it: opened from disk in headless Chromium, offline, on a desktop and a phone.

Screenshots of both widths are kept in $BNBENCH_SCREENSHOTS, by default
<temp dir>/bnbench-report-screenshots (replaced by each run, not rotated away like
pytest's own temporary folders); the test prints where (run with -s to see it).
"""

from __future__ import annotations

import csv
import os
import tempfile
from pathlib import Path

import pytest

from pipeline.report.questions import QUESTIONS
from tests.helpers import CHROMIUM_ARGS, require_chromium

pytestmark = pytest.mark.e2e

WIDTHS = {"desktop": (1280, 900), "phone": (390, 844)}
FIRST_SCREEN_PX = 900


@pytest.fixture(scope="module", params=list(WIDTHS))
def page(request, study):
    chromium = require_chromium()
    from playwright.sync_api import sync_playwright

    repo, _, _ = study
    width, height = WIDTHS[request.param]
    errors: list[str] = []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
        context = browser.new_context(viewport={"width": width, "height": height}, offline=True)
        tab = context.new_page()
        tab.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
        tab.on("pageerror", lambda e: errors.append(str(e)))
        tab.on("requestfailed", lambda r: errors.append(f"failed request {r.url}"))
        tab.goto((repo / "studies" / "quick" / "reports" / "index.html").as_uri())
        tab.wait_for_load_state("load")
        shots = Path(
            os.environ.get("BNBENCH_SCREENSHOTS") or Path(tempfile.gettempdir()) / "bnbench-report-screenshots"
        )
        shots.mkdir(parents=True, exist_ok=True)
        first, full = shots / f"report-{width}-first-screen.png", shots / f"report-{width}-full.png"
        tab.screenshot(path=str(first))
        tab.screenshot(path=str(full), full_page=True)
        print(f"\nreport screenshots at {width} px: {first} and {full}")
        yield request.param, tab, errors, full
        browser.close()


def test_first_screen_answers_every_question(page, study):
    kind, tab, _, _ = page
    assert tab.title() == "bnbench report: bnbench-quick"
    table = tab.locator("table.answers")
    for question in QUESTIONS:
        heading = table.locator(f"#q-{question.key} tr.question")
        assert heading.inner_text().startswith(question.text)
        if kind == "desktop":
            box = heading.bounding_box()
            assert box["y"] + box["height"] <= FIRST_SCREEN_PX, f"{question.key} is below the first screen"
    # The shrunk quick study has BN off and post: the speed-up of post over off is answered on both datasets,
    # with an interval, n and a verdict; what the study cannot answer says why.
    answered = table.locator('tr:has(a[href="#bn-post-steps"]) td[data-label]')
    assert answered.count() == 2
    with (study[0] / "studies" / "quick" / "reports" / "results.csv").open() as handle:
        runs = list(csv.DictReader(handle))
    for dataset, cell in zip(("cifar10", "fashion_mnist"), answered.all(), strict=True):
        text = cell.inner_text()
        reached = any(r[k] == "True" for r in runs if r["dataset"] == dataset for k in r if k.startswith("reached_"))
        # a ratio with its interval where some run reached a target; where none did, no estimate, and why
        assert ("×" in text and "[" in text) if reached else "no run of either configuration reached" in text
        assert "n = 2" in text
        assert cell.locator(".verdict").inner_text() == "inconclusive"  # n = 2 is below the rule's minimum
    assert "no runs with BN before the activation" in table.inner_text()
    assert tab.get_by_text("Not the published datasets.").is_visible()


def test_every_image_is_decoded(page):
    _, tab, _, _ = page
    images = tab.eval_on_selector_all("img", "imgs => imgs.map(i => [i.complete, i.naturalWidth, i.naturalHeight])")
    # each answered speed claim (BN post's steps and seconds, on both datasets): its speed-up over every target
    curves = tab.locator('details img[alt*="speed-up against every target level"]').count()
    assert curves == 4
    # per dataset: curves, two survival figures, gradient norms, BN statistics; then heatmap, profiles
    assert len(images) == 2 * 5 + 2 + curves
    assert all(done and width > 300 and height > 150 for done, width, height in images)
    for dataset in ("cifar10", "fashion_mnist"):  # the runs record both: each dataset shows both figures
        for figure in ("gradient-norms", "bn-statistics"):
            assert tab.locator(f"#{dataset}-{figure} img").evaluate("i => i.complete && i.naturalWidth > 300")


def test_the_bn_statistics_are_explained_from_the_numbers(page, study):
    _, tab, _, _ = page
    with (study[0] / "studies" / "quick" / "reports" / "results.csv").open() as handle:
        runs = list(csv.DictReader(handle))
    post = [r for r in runs if r["bn"] == "post"]
    assert all(r["max_bn_statistics_gap"] and r["grad_norm_first_over_last"] for r in post)
    assert not any(r["max_bn_statistics_gap"] for r in runs if r["bn"] == "off")
    texts = tab.locator("p.bn-explanation").all_inner_texts()
    assert len(texts) == 2
    for text in texts:
        assert text.startswith(("The moving statistics lag", "Moving and recomputed statistics agree", "Recomputed"))
        assert "at step" in text


def test_no_horizontal_overflow(page):
    kind, tab, _, _ = page
    page_width, viewport = tab.evaluate("[document.documentElement.scrollWidth, window.innerWidth]")
    assert page_width <= viewport, f"{kind}: the page is {page_width} px wide in a {viewport} px window"


def test_every_run_is_in_a_collapsed_table(page):
    _, tab, _, _ = page
    runs = tab.locator("details#runs")
    assert runs.get_attribute("open") is None and runs.locator("tbody tr").count() == 8
    runs.locator("summary").click()
    assert runs.locator("tbody tr").first.is_visible()


def test_every_run_shows_its_own_numbers(page, study):
    _, tab, _, _ = page
    repo, _, _ = study
    with (repo / "studies" / "quick" / "reports" / "results.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == 8
    runs = tab.locator("details#runs")
    runs.evaluate("details => { details.open = true; }")  # after the collapsed-table test, whatever it left
    for row in rows:  # one row per run, showing its own test accuracy
        name = row["cell"]
        shown = runs.locator("tr", has=tab.locator("td", has_text=name))
        assert shown.count() == 1, name
        cells = shown.locator("td").all_inner_texts()
        assert cells[0] == name and f"{float(row['test_accuracy']):.3f}" in cells


def test_no_console_errors_and_screenshots_kept(page):
    _, _, errors, full = page
    assert errors == []
    assert full.stat().st_size > 20_000
