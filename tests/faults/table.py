"""The fault suite's table: one row per case, kept in tests/faults/RESULTS.md and in the README."""

from __future__ import annotations

import re
from pathlib import Path
from typing import NamedTuple

START, END = "<!-- fault-table:start -->", "<!-- fault-table:end -->"
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


def update_tables(rows: list[FaultRow], readme: Path, results: Path) -> None:
    old = parse(results.read_text(encoding="utf-8")) if results.is_file() else []
    table = render(merge(old, rows))
    results.write_text(
        "# Fault suite: the cases tried and their outcome\n\nWritten by `uv run pytest tests/faults`.\n\n"
        + table
        + "\n",
        encoding="utf-8",
    )
    text = readme.read_text(encoding="utf-8")
    if START in text and END in text:
        before, rest = text.split(START, 1)
        after = rest.split(END, 1)[1]
        readme.write_text(f"{before}{START}\n{table}\n{END}{after}", encoding="utf-8")
