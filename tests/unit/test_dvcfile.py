"""Each study's dvc.yaml is generated from its params, and its stages depend on what they run."""

from __future__ import annotations

import modulefinder
from pathlib import Path

import pytest
from ruamel.yaml import YAML

from pipeline import dvcfile
from pipeline.errors import UserError
from pipeline.stage_code import stage_digests
from pipeline.study import generate
from pipeline.study.code import STAGE_ENTRIES, cell_code, code_deps
from tests.helpers import REPO
from tools.repo_copy import copy_repo


def _stages(study: Path) -> dict:
    return YAML(typ="safe", pure=True).load((study / "dvc.yaml").read_text())["stages"]


def _definitions(stage: dict) -> dict:
    return stage["do"] if "do" in stage else stage


# Studies with a dvc.yaml of their own (one marked `study.runs_with_main` is in the root's).
STUDIES = [study for study in generate.study_dirs(REPO) if generate.has_own_pipeline(REPO, study)]


def test_there_is_a_main_study_and_an_overlay():
    assert STUDIES[0] == REPO and REPO / "studies" / "quick" in STUDIES


@pytest.mark.parametrize("study", STUDIES, ids=lambda p: p.name)
def test_committed_pipelines_are_what_the_params_generate(study):
    assert (study / "dvc.yaml").read_text() == generate.render(REPO, study), (
        f"{study / 'dvc.yaml'} has drifted: run `uv run python -m pipeline.dvcfile`"
    )


class _ProjectModules(modulefinder.ModuleFinder):
    """The stdlib's module finder, following only the project's own imports (function-level ones too)."""

    def import_hook(self, name, caller=None, fromlist=None, level=-1):
        if level <= 0 and name.split(".")[0] != "pipeline":
            return None
        return super().import_hook(name, caller, fromlist, level)


def _imported_files(entry: str) -> set[Path]:
    finder = _ProjectModules(path=[str(REPO)])
    module_path = REPO.joinpath(*entry.split("."))
    finder.run_script(str(module_path.with_suffix(".py")))
    files = {Path(m.__file__) for m in finder.modules.values() if m.__file__ and "pipeline" in m.__name__}
    return files | {module_path.with_suffix(".py")}


CELL_MODULES = sorted(REPO.joinpath("pipeline", "cell").glob("*.py"))


def _cell_code_files() -> set[Path]:
    """What the cells' modules import, by the stdlib's finder: independent of pipeline/study/code.py."""
    return {file for module in CELL_MODULES for file in _imported_files(f"pipeline.cell.{module.stem}")}


# The stages that depend on the folder pipeline/ whole: the check, and the digests every other stage depends on.
DIGEST_ENTRIES = {"pipeline.preflight", "pipeline.train_code", "pipeline.stage_code"}


@pytest.mark.parametrize("study", STUDIES, ids=lambda p: p.name)
def test_each_stage_depends_on_every_project_module_its_entry_point_imports(study):
    digests = {f"{generate.STAGE_CODE}/{kind}.json": files["files"] for kind, files in stage_digests(REPO).items()}
    digests[generate.TRAIN_CODE] = set(cell_code(REPO))
    for name, definition in ((n, _definitions(s)) for n, s in _stages(study).items()):
        entry = definition["cmd"].split()[2]  # python -m <entry> ...
        entry = "pipeline.report.__main__" if entry == "pipeline.report" else entry
        deps = [(study / definition.get("wdir", ".") / d).resolve() for d in definition["deps"]]
        assert not any(d.suffix == ".py" for d in deps), f"{name}: a module listed in dvc.yaml"
        if entry in DIGEST_ENTRIES:
            assert REPO / "pipeline" in deps, name
            continue
        # Any other stage's code reaches it through one digest: its kind's, or the cells' (in its study's folder).
        digest = [d for d in deps if d.parent.name == "code" and d.parent.parent.name == "results"]
        assert len(digest) == 1, f"{name}: {digest}"
        key = digest[0].parent.parent.name + "/code/" + digest[0].name
        assert key == generate.TRAIN_CODE or STAGE_ENTRIES[digest[0].stem] == entry, name
        # A cell's code is what decides its outputs (pipeline/cell/ and its imports), not its stage command's.
        imported = _cell_code_files() if key == generate.TRAIN_CODE else _imported_files(entry)
        for file in imported:
            assert file.relative_to(REPO).as_posix() in digests[key], f"{name}: {file.relative_to(REPO)} not digested"


def test_the_finder_sees_an_import_inside_a_function():
    # The report imports tracking (and with it MLflow) only to link runs on a server: still a dependency.
    assert REPO / "pipeline" / "tracking" / "runs.py" in _imported_files("pipeline.report.__main__")


def test_the_cells_code_is_what_decides_their_outputs_and_not_what_records_them():
    files = {REPO / f for f in cell_code(REPO)}
    assert files == _cell_code_files()
    assert {REPO / "pipeline" / "cell" / "models.py", REPO / "pipeline" / "study" / "schema.py"} <= files
    assert REPO / "pipeline" / "data" / "prepared.py" in files
    for package in ("tracking", "runner", "report"):
        assert not any((REPO / "pipeline" / package) in f.parents for f in files), package


@pytest.mark.parametrize("study", STUDIES, ids=lambda p: p.name)
def test_the_report_declares_every_params_section_of_the_files_it_loads(study):
    report = _stages(study)["report"]
    declared: dict[str, set[str]] = {}
    for entry in report["params"]:
        if isinstance(entry, str):
            declared.setdefault("params.yaml", set()).add(entry)
        else:
            ((file, keys),) = entry.items()
            declared.setdefault(file, set()).update(keys)
    files = [part.split()[0] for part in report["cmd"].split("--params ")[1:]]
    contents = {file: YAML(typ="safe", pure=True).load((study / file).read_text()) for file in files}
    overlay_leaves = _leaves(contents[files[-1]]) if len(files) > 1 else []
    for file in files:
        # every value of the file the study's settings take from it is declared: its section whole, or the
        # value's dotted key (or a key above it); the overlay's own values hide those of the file below
        declared_here = declared.get(file, set())
        for leaf in _leaves(contents[file]):
            if file != files[-1] and any(_within(leaf, o) or _within(o, leaf) for o in overlay_leaves):
                continue
            assert any(_within(leaf, key) for key in declared_here), f"report reads {file} {leaf}, undeclared"


def _leaves(tree: dict, prefix: str = "") -> list[str]:
    return [
        leaf
        for key, value in tree.items()
        for leaf in (_leaves(value, f"{prefix}{key}.") if isinstance(value, dict) and value else [f"{prefix}{key}"])
    ]


def _within(key: str, above: str) -> bool:
    return key == above or key.startswith(above + ".")


def test_train_stages_are_the_cells_and_take_the_cell_as_their_one_argument():
    train = _stages(REPO / "studies" / "quick")["train"]
    assert len(train["foreach"]) == 16 and "cifar10-relu-post-0.0-1" in train["foreach"]
    assert "--cell ${key}" in train["do"]["cmd"] and "--activation" not in train["do"]["cmd"]


@pytest.fixture
def repo_copy(tmp_path):
    copy_repo(tmp_path / "repo")
    return tmp_path / "repo"


def test_a_stage_refuses_to_run_from_an_out_of_date_pipeline(repo_copy, monkeypatch):
    study = repo_copy / "studies" / "quick"
    params = study / "params.yaml"
    params.write_text(params.read_text().replace("seed: [0, 1]", "seed: [0, 1, 2]"))
    monkeypatch.setenv("DVC_STAGE", "report")
    with pytest.raises(UserError, match=r"dvc.yaml is out of date .* run `uv run python -m pipeline.dvcfile`"):
        generate.ensure_current(study)
    monkeypatch.chdir(repo_copy)
    with pytest.raises(UserError, match="out of date: studies/quick/dvc.yaml"):
        dvcfile.main(["--check"])
    assert dvcfile.main([]) == 0
    generate.ensure_current(study)  # regenerated: runs
    assert len(_stages(study)["train"]["foreach"]) == 24


def test_a_new_study_is_a_folder_with_an_overlay(repo_copy, monkeypatch):
    study = repo_copy / "studies" / "lr"
    study.mkdir()
    (study / "params.yaml").write_text(
        "study:\n  name: lr\nmatrix:\n  dataset: [fashion_mnist]\n  train.optimizer.learning_rate: [0.1, 0.01]\nsweep: null\n"
    )
    monkeypatch.chdir(repo_copy)
    assert dvcfile.main([]) == 0
    stages = _stages(study)
    assert "fetch" not in stages and stages["prepare"]["foreach"] == ["fashion_mnist"]
    assert "fashion_mnist-relu-post-0.5-4-learning_rate_0.01" in stages["train"]["foreach"]
    assert len(stages["train"]["foreach"]) == 2 * 3 * 2 * 10 * 2
    # the root's sections, less the keys the overlay sets: its name, its dataset axis, its sweep (replaced whole)
    root_keys = stages["report"]["params"][0]["../../params.yaml"]
    assert {"prepare", "train", "targets", "report", "matrix.activation", "matrix.bn", "matrix.seed"} <= set(root_keys)
    assert not any(key.startswith(("study", "sweep", "matrix.dataset")) for key in root_keys)
    assert stages["train"]["do"]["params"] == [{"../../params.yaml": ["train"]}]  # the overlay sets no train key


def test_prepare_depends_on_the_fetched_raw_data_in_the_generated_pipeline(repo_copy, monkeypatch):
    """As DVC reads the pipelines the generator writes (not the committed ones): fetch@<dataset> is upstream of
    every study's prepare@<dataset>, so new raw data prepares again, and a cell never runs before its fetch."""
    import networkx as nx
    from dvc.repo import Repo

    monkeypatch.chdir(repo_copy)
    assert dvcfile.main([]) == 0
    with Repo(str(repo_copy)) as repo:
        graph = repo.index.graph  # an edge goes from a stage to a stage it depends on
        prepares = [stage for stage in repo.index.stages if stage.name.split("@")[0].endswith("prepare")]
        assert {Path(stage.path_in_repo).parent for stage in prepares} >= {Path("."), Path("studies/quick")}
        for stage in prepares:
            dataset = stage.name.split("@")[1]
            upstream = {other.addressing for other in nx.descendants(graph, stage)}
            assert f"fetch@{dataset}" in upstream, stage.addressing


def test_a_module_change_is_seen_by_the_stages_that_import_it(repo_copy):
    # A new import in the model builder makes it (and only it) reach a new module.
    helper = repo_copy / "pipeline" / "layer_names.py"
    helper.write_text("PREFIX = 'bn'\n")
    models = repo_copy / "pipeline" / "cell" / "models.py"
    models.write_text(
        models.read_text().replace(
            "import keras\n", "import keras\n\nfrom pipeline import layer_names  # noqa: F401\n", 1
        )
    )
    deps = {
        name: set(code_deps(repo_copy, entry))
        for name, entry in [
            ("fetch", "pipeline.fetch"),
            ("prepare", "pipeline.prepare"),
            ("report", "pipeline.report.__main__"),
        ]
    }
    deps["train"] = set(cell_code(repo_copy))
    assert "pipeline/layer_names.py" in deps["train"]
    assert all("pipeline/layer_names.py" not in deps[name] for name in ("fetch", "prepare", "report"))


def test_the_reports_digest_covers_its_page_template():
    # Read at run time, not imported: no import shows it, so the code rule must name it, and the digest read it.
    files = stage_digests(REPO)["report"]["files"]
    templates = REPO / "pipeline" / "report" / "templates"
    assert {p.relative_to(REPO).as_posix() for p in templates.rglob("*") if p.is_file()} <= set(files)


def test_a_kinds_digest_changes_with_its_own_code_only(repo_copy):
    before = stage_digests(repo_copy)
    figures = repo_copy / "pipeline" / "report" / "figures.py"
    figures.write_text(figures.read_text() + "\n# a change only the report imports\n")
    after = stage_digests(repo_copy)
    assert {kind for kind in before if after[kind] != before[kind]} == {"report"}


@pytest.mark.parametrize("study", STUDIES, ids=lambda p: p.name)
def test_cells_depend_on_one_digest_of_their_code_and_it_on_every_module(study):
    stages = _stages(study)
    up = "" if study == REPO else "../../"
    # the code as one folder (the digest picks the cells' files from it), and after the check
    assert stages["train-code"]["deps"] == [up + generate.CODE, up + generate.PREFLIGHT]
    assert stages["train-code"]["outs"] == [generate.TRAIN_CODE]
    for name in ("train", "sweep", "tuned"):
        if name in stages:
            deps = stages[name]["do"]["deps"]
            assert generate.TRAIN_CODE in deps and not any(d.endswith(".py") for d in deps)


def test_the_digest_changes_with_the_cells_code_only(repo_copy):
    from pipeline.train_code import code_digest

    before = code_digest(repo_copy)
    assert "pipeline/cell/training.py" in before["files"] and "pipeline/report/figures.py" not in before["files"]
    for module in ("report/figures.py", "tracking/spool.py", "runner/record.py", "train.py"):
        path = repo_copy / "pipeline" / module
        path.write_text(path.read_text() + "\n# a change that decides no cell's output\n")
    assert code_digest(repo_copy) == before
    training = repo_copy / "pipeline" / "cell" / "training.py"
    training.write_text(training.read_text() + "\n# a change the cells import\n")
    after = code_digest(repo_copy)
    assert {f for f in after["files"] if after["files"][f] != before["files"][f]} == {"pipeline/cell/training.py"}


def test_the_preflight_stage_comes_first_and_reads_every_study():
    root = _stages(REPO)
    assert next(iter(root)) == "preflight"
    preflight = root["preflight"]
    assert preflight["outs"] == [generate.PREFLIGHT]
    assert {
        f"{s.relative_to(REPO).as_posix()}/params.yaml".removeprefix("./") for s in generate.study_dirs(REPO)
    } <= set(preflight["deps"])
    assert generate.CODE in preflight["deps"]
    # Everything else lies downstream of it: the data through fetch, the code digests in every study.
    assert generate.PREFLIGHT in root["fetch"]["do"]["deps"]
    assert generate.PREFLIGHT in root["stage-code"]["deps"]
    for study in STUDIES:
        for name, stage in _stages(study).items():
            if name.endswith("train-code"):
                up = "" if name == "train-code" and study == REPO else "../../"  # a study's stages run in its folder
                assert f"{up}{generate.PREFLIGHT}" in stage["deps"], (study, name)


def test_the_preflight_output_is_the_same_after_a_new_study_so_nothing_downstream_reruns(repo_copy, monkeypatch):
    from pipeline import preflight

    monkeypatch.chdir(repo_copy)
    out = repo_copy / generate.PREFLIGHT
    assert preflight.main(["--out", str(out)]) == 0
    before = out.read_bytes()
    study = repo_copy / "studies" / "another"
    study.mkdir()
    (study / "params.yaml").write_text("matrix:\n  seed: [3]\n")  # an overlay, named after its folder
    assert dvcfile.main([]) == 0
    assert preflight.main(["--out", str(out)]) == 0  # the check reads the new study too, and passes
    assert out.read_bytes() == before  # so fetch and every study's train-code stay up to date
