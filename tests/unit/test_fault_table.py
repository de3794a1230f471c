from tests.faults.table import RESULTS, FaultRow, merge, parse, render, update_table


def test_a_table_reads_back_as_written_pipes_included():
    rows = [FaultRow("network", "a | pipe", "nothing kept", "passed"), FaultRow("archives", "..", "refused", "FAILED")]
    assert sorted(parse(render(rows))) == sorted(rows)


def test_a_case_that_did_not_run_keeps_its_last_outcome_and_a_new_one_replaces_it():
    old = [FaultRow("a", "x", "h", "passed"), FaultRow("a", "y", "h", "passed")]
    new = [FaultRow("a", "y", "h", "FAILED")]
    assert sorted(merge(old, new)) == [FaultRow("a", "x", "h", "passed"), FaultRow("a", "y", "h", "FAILED")]


def test_the_table_lives_in_the_fault_suites_results_file():
    assert RESULTS.relative_to(RESULTS.parents[2]).as_posix() == "tests/faults/RESULTS.md"


def test_a_first_run_writes_the_results_file_and_nothing_else(tmp_path):
    results = tmp_path / "RESULTS.md"
    update_table([FaultRow("kill", "during prepare", "resumes", "passed")], results)
    assert [p.name for p in tmp_path.iterdir()] == ["RESULTS.md"]
    text = results.read_text(encoding="utf-8")
    assert text.startswith("# Fault suite: the cases tried and their outcome\n")
    assert parse(text) == [FaultRow("kill", "during prepare", "resumes", "passed")]


def test_a_later_run_merges_its_outcomes_into_the_results_file_in_order(tmp_path):
    results = tmp_path / "RESULTS.md"
    update_table(
        [FaultRow("network", "a 404", "asked once", "passed"), FaultRow("kill", "in prepare", "r", "passed")], results
    )
    update_table(
        [FaultRow("kill", "in prepare", "r", "FAILED"), FaultRow("archives", "a FIFO", "refused", "passed")], results
    )
    assert [p.name for p in tmp_path.iterdir()] == ["RESULTS.md"]
    assert parse(results.read_text(encoding="utf-8")) == [  # sorted by area and case, one row per case
        FaultRow("archives", "a FIFO", "refused", "passed"),
        FaultRow("kill", "in prepare", "r", "FAILED"),
        FaultRow("network", "a 404", "asked once", "passed"),
    ]
