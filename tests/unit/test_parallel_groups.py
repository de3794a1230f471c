"""The suite's parallel run keeps a group's tests on one worker (tests/conftest.py), so a shared setup is built once."""

from __future__ import annotations

import re
import subprocess
import sys

from tests.helpers import REPO


def test_the_tests_of_a_module_with_a_shared_setup_run_on_one_worker():
    # Two tests of one fault-suite module, two workers: without the group they would go one to each.
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-n", "2", "-v", "-p", "no:cacheprovider", "-p", "no:tests.faults.outcomes",
         "tests/faults/test_archives.py", "-k", "pickle_scan or no_module_under_pipeline"],
        cwd=REPO, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    ran = re.findall(r"\[(gw\d+)\] \[ *\d+%\] PASSED (\S+)", done.stdout)
    assert len(ran) == 2 and len({worker for worker, _ in ran}) == 1, done.stdout[-3000:]
    assert all(test.endswith("@faults/test_archives.py") for _, test in ran)
