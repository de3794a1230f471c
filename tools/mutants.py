"""Plant deliberate faults in the pipeline, one at a time, and see whether the tests catch each.

The faults live in tools/mutants.yaml: each names a behaviour that matters, the exact
text to replace in one source file, and the tests that should notice. For each one
this copies the repository (as `git ls-files` sees it) into a temporary folder,
plants the fault there, and runs those tests; a fault the tests miss is then run
against the whole fast suite. Nothing in the working tree is modified.

First the tests that will judge the faults must pass with none planted: the whole fast suite for a
full run; with --only, the chosen faults' own tests (the suite's turn comes only if a fault survives
them). Where they fail, it prints what pytest said and stops.

Run:    uv run python -m tools.mutants [--only ID ...] [--json out.json] [--jobs N]
Prints: one line per fault (caught by its tests, caught by the suite, or survived) and the score.

With --jobs N, N copies each plant one fault at a time, side by side. A fault's own tests then run in
one process each (`-n0`): most are one module, whose tests share a setup on one worker anyway, so N
faults at once keep the cores busy where one at a time left all but one idle.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import queue
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from ruamel.yaml import YAML

from tools.repo_copy import copy_repo

REPO = Path(__file__).resolve().parents[1]
MUTANTS = REPO / "tools" / "mutants.yaml"
TIMEOUT_S = 900  # per pytest run; a fault that makes training hang counts as caught
# The whole fast suite, less the tests that would fail on any edit at all (the fault list's own
# check and the formatter), which would count every fault as caught.
SUITE = ["tests", "--ignore=tests/unit/test_mutants.py", "--ignore=tests/unit/test_lint.py"]
CONTAINER_TESTS = "tests/container"


@dataclass(frozen=True)
class Mutant:
    id: str
    behaviour: str
    file: str
    find: str
    replace: str
    tests: list[str]

    def plant(self, source: str) -> str:
        """The source with the fault in it; the text to replace must occur exactly once."""
        count = source.count(self.find)
        if count != 1:
            raise ValueError(f"{self.id}: {self.file} holds the text to replace {count} times, not once")
        return source.replace(self.find, self.replace)


def load_mutants(path: Path = MUTANTS) -> list[Mutant]:
    return [Mutant(**entry) for entry in YAML(typ="safe", pure=True).load(path.read_text(encoding="utf-8"))]


def copy_repository(dest: Path) -> None:
    """A fresh clone's files (a git repository, as tests that copy it again need), with ../shared beside them."""
    copy_repo(dest)
    (dest.parent / "shared").symlink_to(REPO.parent / "shared")


def run_tests(copy: Path, tests: list[str], fast_only: bool = True, parallel: bool = True) -> bool:
    """Whether the tests pass in the copy (its own package first on the path); `fast_only` leaves e2e tests out.

    A fault's own tests run whatever their kind, e2e ones too (the cluster's, say); the suite run after
    them is the fast one. `parallel` False runs them in this process's one child, without xdist's workers.
    """
    return failures(copy, tests, fast_only, parallel) is None


def failures(copy: Path, tests: list[str], fast_only: bool = True, parallel: bool = True) -> str | None:
    """None where the tests pass in the copy, else the end of what pytest printed."""
    env = {**os.environ, "PYTHONPATH": str(copy), "PYTHONDONTWRITEBYTECODE": "1"}
    command = [sys.executable, "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider", *([] if parallel else ["-n0"])]
    command += ["-m", "not e2e", *tests] if fast_only else tests
    try:
        done = subprocess.run(command, cwd=copy, env=env, capture_output=True, text=True, timeout=TIMEOUT_S)
    except subprocess.TimeoutExpired:
        return f"pytest ran past {TIMEOUT_S} s"
    if done.returncode == 5:  # pytest ran no test at all: that catches nothing
        raise SystemExit(f"no test collected from {' '.join(tests)}:\n{done.stdout[-2000:]}")
    return None if done.returncode == 0 else (done.stdout + done.stderr)[-3000:]


class SuiteBaseline:
    """Whether the whole fast suite passes with no fault planted, run once and only when a fault needs it.

    "Caught by the suite" means something only where the suite passes unplanted. A full run checks that
    first; with --only, the chosen faults' own tests are the baseline, and the suite's is taken lazily,
    the first time a fault survives its own tests.
    """

    def __init__(self, copy: Path, known_to_pass: bool = False, make_copy=None) -> None:
        """`copy`: a folder of its own, made on first use by `make_copy`, where no fault is ever planted."""
        self._copy, self._make_copy = copy, make_copy or copy_repository
        self._lock, self._failures, self._known = threading.Lock(), None, known_to_pass

    def failures(self) -> str | None:
        with self._lock:
            if not self._known:
                self._make_copy(self._copy)
                self._failures, self._known = failures(self._copy, SUITE), True
            return self._failures


def check(mutant: Mutant, copy: Path, suite: SuiteBaseline, parallel: bool = True) -> str:
    """ "caught" by its own tests, "caught by the suite", or "survived"."""
    path = copy / mutant.file
    original = path.read_text(encoding="utf-8")
    mutated = mutant.plant(original)
    if mutant.file.endswith(".py"):
        compile(mutated, mutant.file, "exec")  # a fault must be valid code, or it proves nothing
    path.write_text(mutated, encoding="utf-8")
    try:
        if not run_tests(copy, mutant.tests, fast_only=False, parallel=parallel):
            return "caught"
        if suite.failures() is not None:
            return "survived (the suite fails unplanted)"
        return "survived" if run_tests(copy, SUITE) else "caught by the suite"
    finally:
        path.write_text(original, encoding="utf-8")


def check_all(mutants: list[Mutant], copies: list[Path], suite: SuiteBaseline) -> dict[str, str]:
    """Each fault planted in one of the copies, one fault per copy at a time; prints each outcome as it comes."""
    todo: queue.Queue[Mutant] = queue.Queue()
    for mutant in mutants:
        todo.put(mutant)
    outcomes: dict[str, str] = {}
    lock = threading.Lock()
    # The container tests use one Docker engine and one compose project name: one such fault at a time.
    engine = threading.Lock()

    def work(copy: Path) -> None:
        while True:
            try:
                mutant = todo.get_nowait()
            except queue.Empty:
                return
            began = time.monotonic()
            needs_engine = any(test.startswith(CONTAINER_TESTS) for test in mutant.tests)
            with engine if needs_engine else contextlib.nullcontext():
                outcome = check(mutant, copy, suite, parallel=len(copies) == 1)
            with lock:
                outcomes[mutant.id] = outcome
                print(
                    f"{outcome:>19}  {mutant.id:<28} {time.monotonic() - began:5.0f} s  {mutant.behaviour}", flush=True
                )

    threads = [threading.Thread(target=work, args=(copy,)) for copy in copies]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return {m.id: outcomes[m.id] for m in mutants}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", nargs="*", help="ids of the faults to plant (default: all)")
    parser.add_argument("--json", type=Path, help="also write the outcomes here")
    parser.add_argument("--jobs", type=int, default=1, help="faults planted side by side, each in a copy of its own")
    args = parser.parse_args(argv)
    if args.jobs < 1:
        parser.error("--jobs takes 1 or more")
    mutants = [m for m in load_mutants() if not args.only or m.id in args.only]
    with tempfile.TemporaryDirectory() as tmp:
        copies = [Path(tmp) / f"copy-{i}" / "repo" for i in range(args.jobs)]
        for copy in copies:
            copy_repository(copy)
        # The baseline: the tests that will judge the faults pass with none planted. A full run takes the
        # whole suite's; --only takes the chosen faults' own tests, and the suite's only if a fault needs it.
        baseline = sorted({test for m in mutants for test in m.tests}) if args.only else SUITE
        broken = failures(copies[0], baseline, fast_only=not args.only)
        if broken is not None:
            print(f"the tests fail without any fault planted; fix that first:\n{broken}", file=sys.stderr)
            return 1
        suite = SuiteBaseline(Path(tmp) / "suite" / "repo", known_to_pass=not args.only)
        outcomes = check_all(mutants, copies, suite)
    caught = sum(outcome.startswith("caught") for outcome in outcomes.values())
    print(f"mutation score: {caught}/{len(outcomes)} planted faults caught")
    if args.json:
        args.json.write_text(json.dumps({"caught": caught, "planted": len(outcomes), "outcomes": outcomes}, indent=2))
    return 0 if caught == len(outcomes) else 2


if __name__ == "__main__":
    sys.exit(main())
