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


def test_faults_planted_side_by_side_each_get_their_own_outcome(tmp_path):
    from tools.mutants import Mutant, check_all

    copies = []
    for i in range(2):  # two copies of a tiny project: a function and a test of it
        copy = tmp_path / f"copy-{i}" / "repo"
        (copy / "tests").mkdir(parents=True)
        (copy / "calc.py").write_text("def double(x):\n    return 2 * x\n")
        (copy / "tests" / "test_calc.py").write_text(
            "from calc import double\n\n\ndef test_double():\n    assert double(2) == 4\n"
        )
        copies.append(copy)
    faults = [
        Mutant("breaks", "doubles", "calc.py", "2 * x", "3 * x", ["tests/test_calc.py"]),
        Mutant("harmless", "doubles", "calc.py", "2 * x", "x * 2", ["tests/test_calc.py"]),
        Mutant("breaks-too", "doubles", "calc.py", "return 2 * x", "return 0", ["tests/test_calc.py"]),
    ]
    assert check_all(faults, copies) == {"breaks": "caught", "harmless": "survived", "breaks-too": "caught"}
    assert all((copy / "calc.py").read_text() == "def double(x):\n    return 2 * x\n" for copy in copies)
