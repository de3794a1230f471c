"""The fault suite's outcomes, collected as the reports come in and written into tests/faults/RESULTS.md once.

A plugin of the whole suite (tests/conftest.py names it): in a parallel run, the tests run in worker
processes and their reports come back to the process that started them, which never collects
tests/faults/ and so never reads its conftest. A case's row travels with its report (`user_properties`).
"""

from __future__ import annotations

import pytest

from tests.faults.table import FaultRow, update_table

_outcomes: dict[str, FaultRow] = {}


def fault_row(item: pytest.Item, outcome: str = "") -> FaultRow | None:
    """The case a test declares with @pytest.mark.fault(area=, case=, holds=); None when it declares none."""
    marker = item.get_closest_marker("fault")
    if marker is None:
        return None
    return FaultRow(
        area=marker.kwargs["area"], case=marker.kwargs["case"], holds=marker.kwargs["holds"], outcome=outcome
    )


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    report = (yield).get_result()
    row = fault_row(item)
    if row is not None:
        report.user_properties.append(("fault", tuple(row)))


def pytest_runtest_logreport(report):
    fault = dict(report.user_properties).get("fault")
    if fault is None:
        return
    row, failed = FaultRow(*fault), report.failed
    if report.when == "call" or failed or (report.when == "setup" and report.skipped):
        outcome = "FAILED" if failed else ("skipped" if report.skipped else "passed")
        previous = _outcomes.get(row.key)
        if previous is None or previous.outcome == "passed":  # a failure in teardown still fails the case
            _outcomes[row.key] = row._replace(outcome=outcome)


def pytest_sessionfinish(session, exitstatus):
    if _outcomes and not hasattr(session.config, "workerinput"):  # a parallel run's workers leave it to the controller
        update_table(list(_outcomes.values()))
