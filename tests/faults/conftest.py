"""The fault suite's record: every test here declares the case it tries, and the run writes a table.

Mark a test (or one parameter of it) with
    @pytest.mark.fault(area="network", case="a truncated body", holds="retried, then refused; nothing kept")
`holds` is what the test asserts stays true. At the end of a run, each case's outcome (passed or
FAILED) goes into tests/faults/RESULTS.md, the table's only home.
Rows of cases that did not run keep their last outcome (delete RESULTS.md and run the whole suite to
start the table afresh). In a parallel run each case's outcome travels with its report from the worker
(`user_properties`), and the table is written once, by the process that collects the reports
(tests/faults/outcomes.py, a plugin of the whole suite: the process that collects the reports of a
parallel run never reads this folder's conftest).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings

from tests.faults.outcomes import fault_row

# Property-based cases (hypothesis): by default few examples, the same ones every run (derandomized:
# no outcome depends on luck) and no example database; HYPOTHESIS_PROFILE=thorough searches widely.
settings.register_profile(
    "ci", max_examples=4, deadline=None, derandomize=True, database=None, suppress_health_check=[HealthCheck.too_slow]
)
settings.register_profile("thorough", max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))


def pytest_collection_modifyitems(session, config, items):
    for item in items:
        if item.path.is_relative_to(Path(__file__).parent):
            if fault_row(item) is None:
                raise pytest.UsageError(f"{item.nodeid}: a fault test needs @pytest.mark.fault(area=, case=, holds=)")
