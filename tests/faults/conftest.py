"""The fault suite's record: every test here declares the case it tries, and the run writes a table.

Mark a test (or one parameter of it) with
    @pytest.mark.fault(area="network", case="a truncated body", holds="retried, then refused; nothing kept")
`holds` is what the test asserts stays true. At the end of a run, each case's outcome (passed or
FAILED) goes into tests/faults/RESULTS.md, the table's only home.
Rows of cases that did not run keep their last outcome (delete RESULTS.md and run the whole suite to
start the table afresh).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings

from tests.faults.table import FaultRow, update_table

# Property-based cases (hypothesis): by default few examples, the same ones every run (derandomized:
# no outcome depends on luck) and no example database; HYPOTHESIS_PROFILE=thorough searches widely.
settings.register_profile(
    "ci", max_examples=4, deadline=None, derandomize=True, database=None, suppress_health_check=[HealthCheck.too_slow]
)
settings.register_profile("thorough", max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))
_outcomes: dict[str, FaultRow] = {}


def _row(item: pytest.Item, outcome: str) -> FaultRow | None:
    marker = item.get_closest_marker("fault")
    if marker is None:
        return None
    return FaultRow(
        area=marker.kwargs["area"], case=marker.kwargs["case"], holds=marker.kwargs["holds"], outcome=outcome
    )


def pytest_collection_modifyitems(session, config, items):
    for item in items:
        if item.path.is_relative_to(Path(__file__).parent):
            if _row(item, "not run") is None:
                raise pytest.UsageError(f"{item.nodeid}: a fault test needs @pytest.mark.fault(area=, case=, holds=)")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    report = (yield).get_result()
    row = _row(item, "")
    if row is None:
        return
    failed = report.failed
    if report.when == "call" or failed or (report.when == "setup" and report.skipped):
        outcome = "FAILED" if failed else ("skipped" if report.skipped else "passed")
        previous = _outcomes.get(row.key)
        if previous is None or previous.outcome == "passed":  # a failure in teardown still fails the case
            _outcomes[row.key] = row._replace(outcome=outcome)


def pytest_sessionfinish(session, exitstatus):
    if _outcomes:
        update_table(list(_outcomes.values()))
