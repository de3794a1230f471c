"""The fault suite's table: one row per case, kept in tests/faults/RESULTS.md, its only home (the docs link to it)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import NamedTuple

RESULTS = Path(__file__).with_name("RESULTS.md")
TITLE = "# Fault suite: the cases tried and their outcome\n\nWritten by `uv run pytest tests/faults`.\n\n"
HEADER = "| area | case tried | what must hold | outcome |\n| --- | --- | --- | --- |"


class FaultRow(NamedTuple):
    area: str
    case: str
    holds: str
    outcome: str

    @property
    def key(self) -> str:
        return f"{self.area}\x00{self.case}"


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def render(rows: list[FaultRow]) -> str:
    lines = [HEADER] + [
        f"| {_cell(r.area)} | {_cell(r.case)} | {_cell(r.holds)} | {r.outcome} |"
        for r in sorted(rows, key=lambda r: (r.area, r.case))
    ]
    return "\n".join(lines)


def parse(text: str) -> list[FaultRow]:
    """The rows of a table that `render` wrote (inside or outside the markers)."""
    rows = []
    for line in text.splitlines():
        cells = [c.strip().replace("\\|", "|") for c in re.split(r"(?<!\\)\|", line.strip())[1:-1]]
        if len(cells) == 4 and cells[0] not in ("area", "---"):
            rows.append(FaultRow(*cells))
    return rows


def merge(old: list[FaultRow], new: list[FaultRow]) -> list[FaultRow]:
    """The new outcomes over the old table: a case that did not run this time keeps its last outcome."""
    merged = {row.key: row for row in old}
    merged.update({row.key: row for row in new})
    return list(merged.values())


def update_table(rows: list[FaultRow], results: Path = RESULTS) -> None:
    """Write the run's outcomes over the last table into `results`, and nothing else."""
    old = parse(results.read_text(encoding="utf-8")) if results.is_file() else []
    results.write_text(TITLE + render(merge(old, rows)) + "\n", encoding="utf-8")
