"""Which cell a train stage trains, and with which settings: fixed, sweep or tuned.

- fixed: a cell of the study's matrix, with the study's settings (stage train@<cell>);
- sweep: a sweep cell, at one rate of the sweep's grid, for the sweep's budget (stage sweep@<cell>);
- tuned: a cell of the matrix at the rate the choose stage picked for its configuration (stage tuned@<cell>).
"""

from __future__ import annotations

from pathlib import Path

from pipeline.errors import UserError
from pipeline.study.cells import Cell, cell_settings, find_cell, find_sweep_cell, sweep_settings, tuned_settings
from pipeline.study.chosen import chosen_rate, read_chosen
from pipeline.study.schema import CellSettings, Params


def resolve_cell(
    params: Params, source: str, cell: str | None, sweep_cell: str | None, chosen: Path | None
) -> tuple[Cell, CellSettings, str]:
    """(the cell, its settings, its learning-rate policy) for a stage's arguments; `source` names the params files."""
    if sweep_cell is not None:
        if chosen is not None:
            raise UserError("--learning-rate-from applies to --cell (a tuned cell), not to --sweep-cell")
        found = find_sweep_cell(params, sweep_cell, source)
        return found, sweep_settings(params, found), "sweep"
    found = find_cell(params, cell, source)
    if chosen is not None:
        rate = chosen_rate(read_chosen(chosen), found.configuration, chosen)
        return found, tuned_settings(params, found, rate), "tuned"
    return found, cell_settings(params, found), "fixed"
