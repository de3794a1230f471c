"""Style is checked like behaviour: ruff's lint rules and formatter, as configured in pyproject.toml."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.helpers import REPO

RUFF = Path(sys.executable).parent / "ruff"


def test_ruff_lint_passes():
    done = subprocess.run(
        [str(RUFF), "check", "pipeline", "tests", "benchmarks", "tools"], cwd=REPO, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stdout


def test_code_is_formatted():
    done = subprocess.run(
        [str(RUFF), "format", "--check", "pipeline", "tests", "benchmarks", "tools"],
        cwd=REPO,
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stdout
