"""Copy the repository as a fresh clone would have it: tracked and new files, no local run's leftovers.

Used by the tests and the benchmarks to run a study in a scratch copy, so that the
working tree is never touched.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def copy_repo(dest: Path, source: Path = REPO) -> None:
    """Copy `source`'s git-visible files into `dest` and commit them there (DVC wants a git repository)."""
    files = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z"],
        cwd=source, capture_output=True, text=True, check=True,
    ).stdout.split("\0")  # fmt: skip
    # A fresh clone: lock files from a local run would not be there.
    for name in (f for f in files if f and Path(f).name != "dvc.lock"):
        if (source / name).is_file():
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source / name, dest / name)
    for command in (
        ["git", "init", "-q"],
        ["git", "add", "-A"],
        ["git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "copy"],
    ):
        subprocess.run(command, cwd=dest, check=True)
