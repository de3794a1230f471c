from tests.faults.table import END, START, FaultRow, merge, parse, render, update_tables


def test_a_table_reads_back_as_written_pipes_included():
    rows = [FaultRow("network", "a | pipe", "nothing kept", "passed"), FaultRow("archives", "..", "refused", "FAILED")]
    assert sorted(parse(render(rows))) == sorted(rows)


def test_a_case_that_did_not_run_keeps_its_last_outcome_and_a_new_one_replaces_it():
    old = [FaultRow("a", "x", "h", "passed"), FaultRow("a", "y", "h", "passed")]
    new = [FaultRow("a", "y", "h", "FAILED")]
    assert sorted(merge(old, new)) == [FaultRow("a", "x", "h", "passed"), FaultRow("a", "y", "h", "FAILED")]


def test_the_readme_table_is_replaced_between_its_markers_only(tmp_path):
    readme = tmp_path / "README.md"
    readme.write_text(f"intro\n{START}\nold table\n{END}\noutro\n", encoding="utf-8")
    update_tables([FaultRow("kill", "during prepare", "resumes", "passed")], readme, tmp_path / "RESULTS.md")
    text = readme.read_text(encoding="utf-8")
    assert text.startswith("intro\n") and text.endswith(f"{END}\noutro\n") and "old table" not in text
    assert parse(text) == [FaultRow("kill", "during prepare", "resumes", "passed")]
    assert parse((tmp_path / "RESULTS.md").read_text(encoding="utf-8")) == parse(text)
