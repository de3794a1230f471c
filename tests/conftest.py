from __future__ import annotations

import contextlib
from pathlib import Path

import pytest

from tests.helpers import serve_directory

pytest_plugins = ("tests.faults.outcomes",)  # the fault suite's table, written once per run

TESTS = Path(__file__).parent
# The suite runs in parallel (pytest-xdist, `--dist loadgroup`): tests of one group run on one worker, in
# order. Each e2e group shares one `dvc repro` of the quick study (tests/e2e/conftest.py), built once per
# worker that runs it; the container tests share one engine and image. Every other module that is not a
# unit test is a group of its own, so its module-scoped setup is built once; unit tests go anywhere.
GROUPS = {
    "e2e/test_quick_study.py": "e2e-study",
    "e2e/test_report_page.py": "e2e-study",
    "e2e/test_cell_code.py": "e2e-study",
    "e2e/test_sweep.py": "e2e-study",
    "e2e/test_new_axis.py": "e2e-study",
    "e2e/test_mlflow_ui.py": "e2e-study",
    "e2e/test_runner.py": "e2e-runners",
    "e2e/test_ray.py": "e2e-runners",
    "e2e/test_jax_backend.py": "e2e-runners",
    "container/test_compose_study.py": "container",
    "container/test_mlflow_ui.py": "container",
}


@pytest.hookimpl(tryfirst=True)  # before xdist's own hook, which reads the groups into the test ids
def pytest_collection_modifyitems(config, items):
    for item in items:
        module = item.path.relative_to(TESTS).as_posix()
        if module.startswith("unit/") or item.get_closest_marker("xdist_group"):
            continue
        item.add_marker(pytest.mark.xdist_group(GROUPS.get(module, module)))


@pytest.fixture
def http_server():
    """For one test: a function that serves a directory and returns its base URL."""
    with contextlib.ExitStack() as stack:
        yield lambda directory: stack.enter_context(serve_directory(directory))
