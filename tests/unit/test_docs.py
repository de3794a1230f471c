"""The pages under docs/: every link between them, and to the repository's files, leads somewhere."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.helpers import REPO

PAGES = sorted((REPO / "docs").glob("*.md"))
LINK = re.compile(r"\]\(([^)\s]+)\)")


def _anchor(heading: str) -> str:
    """The anchor GitHub gives a heading: lower case, punctuation dropped, spaces as hyphens."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def _anchors(page: Path) -> set[str]:
    text = re.sub(r"```.*?```", "", page.read_text(encoding="utf-8"), flags=re.S)  # no headings in code
    return {_anchor(line.lstrip("#")) for line in text.splitlines() if line.startswith("#")}


def _links(page: Path) -> list[str]:
    text = re.sub(r"```.*?```", "", page.read_text(encoding="utf-8"), flags=re.S)
    return [target for target in LINK.findall(text) if not target.startswith(("http://", "https://", "mailto:"))]


def test_a_heading_gets_githubs_anchor():
    assert (
        _anchor(" A learning rate chosen per configuration (`sweep:`)")
        == "a-learning-rate-chosen-per-configuration-sweep"
    )
    assert _anchor("Data, mirrors and checksums") == "data-mirrors-and-checksums"


@pytest.mark.parametrize("page", PAGES, ids=lambda page: page.name)
def test_every_link_of_a_page_leads_to_a_file_and_heading_that_exist(page):
    for target in _links(page):
        path, _, anchor = target.partition("#")
        linked = (page.parent / path).resolve() if path else page
        assert linked.is_file(), f"{page.name}: {target}: no such file"
        if anchor:
            assert anchor in _anchors(linked), f"{page.name}: {target}: no such heading"


def test_the_fault_table_is_linked_from_the_docs_and_kept_by_the_suite():
    targets = {(page.parent / link.partition("#")[0]).resolve() for page in PAGES for link in _links(page)}
    assert REPO / "tests" / "faults" / "RESULTS.md" in targets
