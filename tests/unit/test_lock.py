"""The lock file agrees with pyproject.toml, and CI refuses to install one that does not."""

from __future__ import annotations

import shutil
import subprocess

from tests.helpers import REPO


def _uv() -> str:
    uv = shutil.which("uv")
    assert uv, "uv runs the tests, so it is on PATH"
    return uv


def test_the_lock_matches_pyproject():
    # Offline: it compares the lock with pyproject.toml's requirements, without asking the package index.
    done = subprocess.run([_uv(), "lock", "--check", "--offline"], cwd=REPO, capture_output=True, text=True)
    assert done.returncode == 0, f"uv.lock is out of date with pyproject.toml: run `uv lock`\n{done.stderr}"


def test_a_lock_out_of_step_with_pyproject_is_caught(tmp_path):
    for name in ("pyproject.toml", "uv.lock", "README.md"):
        shutil.copy(REPO / name, tmp_path / name)
    pyproject = tmp_path / "pyproject.toml"
    pyproject.write_text(
        pyproject.read_text().replace('  "tenacity>=9.1",\n', '  "tenacity>=9.1",\n  "requests>=2.30",\n')
    )
    done = subprocess.run([_uv(), "lock", "--check", "--offline"], cwd=tmp_path, capture_output=True, text=True)
    assert done.returncode != 0


def test_ci_installs_only_a_current_lock():
    # --frozen installs whatever uv.lock says even when pyproject.toml has moved on; --locked refuses.
    ci = (REPO / ".ci" / "run").read_text()
    assert "\nuv sync --locked " in ci and "uv sync --frozen" not in ci
