"""The repository a command works in: the one rule that finds its root.

While DVC runs a stage, the root is DVC's own (DVC_ROOT, which DVC sets for every stage and the
runner's workers set as DVC would). Otherwise it is the nearest folder, at or above the working
directory, that holds both `.dvc/` and `params.yaml`: DVC runs a study's stages in its folder
(studies/<name>/, below the root), and a Ray node in its copy of the tree, which has both.
"""

from __future__ import annotations

import os
from pathlib import Path

from pipeline.errors import UserError

DVC_ROOT_ENV = "DVC_ROOT"


def repo_root(start: Path | None = None) -> Path:
    if os.environ.get(DVC_ROOT_ENV):
        return Path(os.environ[DVC_ROOT_ENV]).resolve()
    here = (start or Path.cwd()).resolve()
    for folder in (here, *here.parents):
        if (folder / ".dvc").is_dir() and (folder / "params.yaml").is_file():
            return folder
    raise UserError(f"{here}: not inside a bnbench repository (no folder above holds .dvc/ and params.yaml)")
