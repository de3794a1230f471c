"""The planted-fault list stays in step with the code: each fault still applies, once, as valid code."""

from __future__ import annotations

import pytest

from tests.helpers import REPO
from tools.mutants import load_mutants

MUTANTS = load_mutants()


def test_fault_ids_are_unique():
    ids = [m.id for m in MUTANTS]
    assert len(ids) == len(set(ids))


@pytest.mark.parametrize("mutant", MUTANTS, ids=lambda m: m.id)
def test_each_fault_applies_once_and_is_valid_code(mutant):
    source = (REPO / mutant.file).read_text(encoding="utf-8")
    mutated = mutant.plant(source)
    assert mutated != source
    if mutant.file.endswith(".py"):  # a Dockerfile's faults are checked by their tests only
        compile(mutated, mutant.file, "exec")
    assert all((REPO / test).exists() for test in mutant.tests), mutant.tests


def write_tiny_project(copy, test_body="assert double(2) == 4"):
    """A function and a test of it."""
    (copy / "tests").mkdir(parents=True)
    (copy / "calc.py").write_text("def double(x):\n    return 2 * x\n")
    (copy / "tests" / "test_calc.py").write_text(f"from calc import double\n\n\ndef test_double():\n    {test_body}\n")


FAULTS = [
    ("breaks", "2 * x", "3 * x"),
    ("harmless", "2 * x", "x * 2"),
    ("breaks-too", "return 2 * x", "return 0"),
]


def test_faults_planted_side_by_side_each_get_their_own_outcome(tmp_path):
    from tools.mutants import Mutant, SuiteBaseline, check_all

    copies = [tmp_path / f"copy-{i}" / "repo" for i in range(2)]
    for copy in copies:
        write_tiny_project(copy)
    faults = [Mutant(id, "doubles", "calc.py", find, replace, ["tests/test_calc.py"]) for id, find, replace in FAULTS]
    suite = SuiteBaseline(tmp_path / "suite", make_copy=write_tiny_project)
    assert check_all(faults, copies, suite) == {"breaks": "caught", "harmless": "survived", "breaks-too": "caught"}
    assert all((copy / "calc.py").read_text() == "def double(x):\n    return 2 * x\n" for copy in copies)


def test_a_fault_that_survives_its_tests_is_not_caught_by_a_suite_that_fails_unplanted(tmp_path):
    """With --only the suite's baseline comes late; a suite failing with no fault planted catches nothing."""
    from tools.mutants import Mutant, SuiteBaseline, check_all

    copy = tmp_path / "copy" / "repo"
    write_tiny_project(copy)
    own_tests_miss_it = Mutant("harmless", "doubles", "calc.py", "2 * x", "x * 2", ["tests/test_calc.py"])
    suite = SuiteBaseline(tmp_path / "suite", make_copy=lambda dest: write_tiny_project(dest, "assert False"))
    assert check_all([own_tests_miss_it], [copy], suite) == {"harmless": "survived (the suite fails unplanted)"}
