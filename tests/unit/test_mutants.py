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
