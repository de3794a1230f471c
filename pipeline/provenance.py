"""Where a result came from: the code's commit and the library versions."""

from __future__ import annotations

import os
import subprocess
from importlib import metadata

LIBRARIES = ("keras", "tensorflow", "jax", "torch", "numpy", "mlflow", "dvc", "pandas")
# The commit of the code a cell runs where there is no checkout: the Ray runner ships the driver's
# working tree to the cluster's nodes without its .git and passes the driver's git_commit() here.
COMMIT_ENV = "BNBENCH_GIT_COMMIT"


def git_commit() -> str:
    """HEAD's sha, suffixed "-dirty" when tracked files have uncommitted changes; "unknown" outside git."""
    if os.environ.get(COMMIT_ENV):
        return os.environ[COMMIT_ENV]
    try:
        sha = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, check=True).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"], capture_output=True, text=True, check=True
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return f"{sha}-dirty" if dirty else sha


def library_versions() -> dict[str, str]:
    versions = {}
    for name in LIBRARIES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return versions
