"""A repository's DVC stages as the runner sees them: which are cells, in which rounds, which are out of date.

Read with DVC's own parser (foreach expanded, `wdir` applied) and its stage graph. A cell stage is
one whose command is `python -m pipeline.train ...` (train@, sweep@, tuned@ and their `<study>-`
prefixed forms). DVC itself is called from the runner's process only, one call at a time (it takes
a repository lock).
"""

from __future__ import annotations

import json
import shlex
import subprocess
import sys
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from pipeline.errors import UserError

CELL_COMMAND = ("python", "-m", "pipeline.train")


@dataclass(frozen=True)
class Stage:
    addressing: str  # DVC's name for it: `train@x` in the root dvc.yaml, `studies/quick/dvc.yaml:train@x` elsewhere
    dvcfile: str  # its dvc.yaml, relative to the repository root
    cmd: str
    wdir: Path
    outs: tuple[Path, ...]
    upstream: frozenset[str]  # every stage it depends on, transitively
    deps: tuple[Path, ...] = ()  # its dependencies' paths (code, data, other stages' outputs)

    @property
    def argv(self) -> tuple[str, ...] | None:
        return cell_argv(self.cmd)

    @property
    def is_cell(self) -> bool:
        return self.argv is not None


def cell_argv(cmd: str) -> tuple[str, ...] | None:
    """The arguments of a cell stage's command (`python -m pipeline.train <these>`); None for another stage."""
    words = shlex.split(cmd)
    return tuple(words[len(CELL_COMMAND) :]) if tuple(words[: len(CELL_COMMAND)]) == CELL_COMMAND else None


def load_stages(root: Path) -> dict[str, Stage]:
    """Every stage of the repository as DVC itself reads it (foreach expanded, wdir applied), by addressing."""
    import networkx as nx
    from dvc.repo import Repo

    with Repo(str(root)) as repo:
        graph = repo.index.graph  # an edge goes from a stage to a stage it depends on
        return {
            stage.addressing: Stage(
                addressing=stage.addressing,
                dvcfile=Path(stage.path_in_repo).as_posix(),
                cmd=stage.cmd if isinstance(stage.cmd, str) else " && ".join(stage.cmd or []),
                wdir=Path(stage.wdir),
                outs=tuple(Path(out.fs_path) for out in stage.outs),
                deps=tuple(Path(dep.fs_path) for dep in stage.deps),
                upstream=frozenset(dep.addressing for dep in nx.descendants(graph, stage)),
            )
            for stage in repo.index.stages
        }


def select(stages: dict[str, Stage], dvcfiles: Iterable[str] | None) -> dict[str, Stage]:
    """The stages defined in `dvcfiles` (None: all of them)."""
    wanted = None if dvcfiles is None else {Path(f).as_posix() for f in dvcfiles}
    return {a: s for a, s in stages.items() if wanted is None or s.dvcfile in wanted}


def cell_rounds(stages: dict[str, Stage], selected: Iterable[str]) -> list[list[str]]:
    """The selected cell stages grouped by the number of cell stages on their longest upstream chain.

    Round 0 needs no cell upstream (train, sweep); round 1 needs round 0 (tuned, after choose).
    """
    depth: dict[str, int] = {}

    def of(address: str) -> int:
        if address not in depth:
            cells_up = [u for u in stages[address].upstream if stages[u].is_cell]
            depth[address] = 1 + max(map(of, cells_up)) if cells_up else 0
        return depth[address]

    cells = sorted(a for a in selected if stages[a].is_cell)
    rounds: list[list[str]] = [[] for _ in range(1 + max(map(of, cells), default=-1))]
    for address in cells:
        rounds[of(address)].append(address)
    return rounds


def upstream_of(stages: dict[str, Stage], cells: Iterable[str]) -> list[str]:
    """The stages, not cells, that the cells depend on: what `dvc repro` must bring up to date first."""
    return sorted({u for c in cells for u in stages[c].upstream if not stages[u].is_cell})


def stale(status: dict, candidates: Iterable[str]) -> list[str]:
    """The candidates `dvc status --json` lists with a change (it lists nothing for an up-to-date stage)."""
    return [c for c in candidates if status.get(c)]


def dvc(root: Path, *args: str, capture: bool = False) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "dvc", *args]
    done = subprocess.run(command, cwd=root, text=True, capture_output=capture)
    if done.returncode:
        detail = f":\n{done.stdout}{done.stderr}" if capture else ""
        raise UserError(f"`dvc {' '.join(args)}` failed (exit code {done.returncode}){detail}")
    return done


def dvc_status(root: Path, dvcfiles: Iterable[str]) -> dict:
    return json.loads(dvc(root, "status", "--json", *sorted(set(dvcfiles)), capture=True).stdout or "{}")
