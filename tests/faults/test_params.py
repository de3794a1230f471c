"""Bad params, key by key: each gets one line that names the key as the user wrote it and what it allows.

The keys come from the schema itself (tests/faults/params_schema.py walks `Params.model_fields`), so a
key added later is attacked here without a change to this file. Each case starts from a real study
(params.yaml, or params.yaml with one of the studies' overlays), breaks one thing, writes it as YAML the
way a user would (in params.yaml itself, or in an overlay laid over it) and loads it with `load_params`,
as every stage does. Values are drawn by hypothesis: few and the same each run by default (the `ci`
profile, tests/faults/conftest.py); `HYPOTHESIS_PROFILE=thorough` tries many more.
"""

from __future__ import annotations

import copy
import math
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from ruamel.yaml import YAML

from pipeline.study.axes import read_dotted
from pipeline.study.params import ParamsError, load_params, merge
from pipeline.study.schema import Params
from tests.faults.params_schema import (
    ATTACKS,
    AXES,
    BY_PATH,
    CELL_AXES,
    SECTIONS,
    SETTINGS,
    TIED,
    TYPE_WORDS,
    required_paths,
    valid,
)
from tests.helpers import REPO
from tools.fake_data import write_mirror
from tools.repo_copy import copy_repo

ROOT = REPO / "params.yaml"
YAML_ = YAML(typ="safe", pure=True)  # as params.py reads it: YAML 1.2
YAML_.sort_base_mapping_type_on_output = False  # keys in the order given: the matrix's order names the cells


def _read(path: Path) -> dict:
    return YAML_.load(path.read_text(encoding="utf-8"))


ROOT_RAW = _read(ROOT)
OVERLAYS = sorted(REPO.glob("studies/*/params.yaml"))
STUDIES = [None, *OVERLAYS]  # None: the main study, params.yaml alone
LR = "train.optimizer.learning_rate"


class Study:
    """A real study: its overlay's raw settings, the merged ones, and the validated ones."""

    def __init__(self, overlay: Path | None):
        self.overlay = overlay
        self.overlay_raw = _read(overlay) if overlay else {}
        self.merged = merge(ROOT_RAW, self.overlay_raw)
        self.params: Params = load_params(ROOT, *([overlay] if overlay else []))

    def __repr__(self) -> str:
        return f"Study({self.overlay.parent.name if self.overlay else 'main'})"


LOADED = {overlay: Study(overlay) for overlay in STUDIES}
studies = st.sampled_from(STUDIES).map(LOADED.get)


def _parent(tree: dict, parts: tuple[str, ...]) -> dict:
    """The mapping that holds parts[-1], made where it is missing (an overlay holds only what it changes).

    A section that is `null` (sweep: null) gets the main study's, so that the key under it is the one at fault.
    """
    root_section: object = ROOT_RAW
    for part in parts[:-1]:
        root_section = root_section.get(part) if isinstance(root_section, dict) else None
        if tree.get(part) is None:
            tree[part] = copy.deepcopy(root_section) if part in tree and isinstance(root_section, dict) else {}
        tree = tree[part]
    return tree


def put(tree: dict, parts: tuple[str, ...], value: object) -> None:
    _parent(tree, parts)[parts[-1]] = value


def attempt(study: Study, change, *, in_overlay: bool) -> tuple[Params | ParamsError, str]:
    """Write the study with `change` applied (to a tree) as YAML, load it as a stage does; (outcome, source).

    In an overlay: params.yaml as shipped, then a new overlay (the study's own, changed). Else one params.yaml.
    """
    tree = copy.deepcopy(study.overlay_raw if in_overlay else study.merged)
    change(tree)
    with tempfile.TemporaryDirectory() as folder:
        written = Path(folder) / "params.yaml"
        with written.open("w", encoding="utf-8") as handle:
            YAML_.dump(tree, handle)
        assert repr(_read(written)) == repr(tree), "the YAML written must read back as the values meant"
        files = [ROOT, written] if in_overlay else [written]
        source = " + ".join(str(f) for f in files)
        try:
            return load_params(*files), source
        except ParamsError as error:
            return error, source


def assert_refused(outcome: object, source: str, path: str, words: tuple[str, ...]) -> None:
    """One ParamsError, one line, naming `path` as written and holding `words` (what is allowed)."""
    assert isinstance(outcome, ParamsError), f"{path}: accepted, the schema should refuse it"
    message = str(outcome)
    assert "\n" not in message, f"one bad key, one line; got:\n{message}"
    prefix = f"{source}: {path}"
    assert message.startswith(prefix) and message[len(prefix)] in ":.", f"the key {path} is not named: {message}"
    missing = [w for w in words if w not in message]
    assert not missing, f"{message}\n  does not say what is allowed: {missing}"


def _sweep_free(tree: dict, axis: str) -> None:
    """A learning-rate axis and a sweep are refused together: drop the sweep when the rate is the axis."""
    if axis == LR:
        tree["sweep"] = None


def _fault(case: str, holds: str):
    return pytest.mark.fault(area="params", case=case, holds=holds)


# --- one key at a time: every setting of the schema, every way to break it ----------------------------


def _cases(attack: str) -> list:
    return [pytest.param(s.path, id=s.path) for s in SETTINGS if ATTACKS[attack](s) is not None]


def _attack_one_setting(attack: str, path: str, study: Study, in_overlay: bool, data) -> None:
    setting = BY_PATH[path]
    value, words = data.draw(ATTACKS[attack](setting), label="bad value and the words of what is allowed")
    outcome, source = attempt(study, lambda tree: put(tree, setting.parts, value), in_overlay=in_overlay)
    assert_refused(outcome, source, path, words)


ONE_LINE = "one line naming the key path as written and what it allows; nothing loads"


@_fault("a value of another type for any key of the schema (or any list element)", ONE_LINE)
@pytest.mark.parametrize("path", _cases("wrong type"))
@given(study=studies, in_overlay=st.booleans(), data=st.data())
def test_a_value_of_another_type_is_named(path, study, in_overlay, data):
    _attack_one_setting("wrong type", path, study, in_overlay, data)


@_fault("a number beyond a bound of its key, for every bounded key", ONE_LINE + " (the bound)")
@pytest.mark.parametrize("path", _cases("out of range"))
@given(study=studies, in_overlay=st.booleans(), data=st.data())
def test_a_number_out_of_range_is_named(path, study, in_overlay, data):
    _attack_one_setting("out of range", path, study, in_overlay, data)


@_fault("NaN or infinity where a number is expected", ONE_LINE + " (a finite number)")
@pytest.mark.parametrize("path", _cases("not finite"))
@given(study=studies, in_overlay=st.booleans(), data=st.data())
def test_nan_or_infinity_is_named(path, study, in_overlay, data):
    _attack_one_setting("not finite", path, study, in_overlay, data)


@_fault("a choice its key does not offer, or a name against its pattern", ONE_LINE + " (every choice)")
@pytest.mark.parametrize("path", _cases("unknown choice"))
@given(study=studies, in_overlay=st.booleans(), data=st.data())
def test_an_unknown_choice_is_named(path, study, in_overlay, data):
    _attack_one_setting("unknown choice", path, study, in_overlay, data)


@_fault("a list against its own rule (targets, the sweep's grid)", ONE_LINE + " (the rule)")
@pytest.mark.parametrize("path", _cases("own rule broken"))
@given(study=studies, in_overlay=st.booleans(), data=st.data())
def test_a_list_against_its_rule_is_named(path, study, in_overlay, data):
    _attack_one_setting("own rule broken", path, study, in_overlay, data)


@_fault("an empty list where a value is needed", ONE_LINE + " (how many it needs)")
@pytest.mark.parametrize("path", _cases("empty list"))
@given(study=studies, in_overlay=st.booleans(), data=st.data())
def test_an_empty_list_is_named(path, study, in_overlay, data):
    _attack_one_setting("empty list", path, study, in_overlay, data)


@_fault("a value twice in any list", ONE_LINE + " (the duplicate)")
@pytest.mark.parametrize("path", _cases("duplicate"))
@given(study=studies, in_overlay=st.booleans(), data=st.data())
def test_a_duplicate_in_a_list_is_named(path, study, in_overlay, data):
    _attack_one_setting("duplicate", path, study, in_overlay, data)


@_fault("a required key left out, for every required key and section", ONE_LINE)
@pytest.mark.parametrize("path", required_paths())
@given(study=studies)
def test_a_missing_required_key_is_named(path, study):
    parts = tuple(path.split("."))
    outcome, source = attempt(study, lambda tree: _parent(tree, parts).pop(parts[-1], None), in_overlay=False)
    assert_refused(outcome, source, path, ("required key is missing",))


@_fault("an unknown key (a typo) in any section", ONE_LINE + " (the section's keys)")
@pytest.mark.parametrize("section", [pytest.param(s, id=s or "top") for s in SECTIONS])
@given(study=studies, in_overlay=st.booleans(), key=st.from_regex(r"[a-z][a-z_]{0,10}", fullmatch=True))
def test_an_unknown_key_is_named(section, study, in_overlay, key):
    allowed = SECTIONS[section]
    if key in allowed:
        key = key + "_x"
    path = f"{section}.{key}" if section else key
    words = tuple(repr(k) for k in allowed) if section == "targets" else allowed  # a dataset's name, as a choice
    value = {} if section == "targets" else 1  # a dataset's targets are a mapping: only the name is wrong
    outcome, source = attempt(study, lambda tree: put(tree, tuple(path.split(".")), value), in_overlay=in_overlay)
    assert_refused(outcome, source, path, words)


@_fault("a section given as a single value", ONE_LINE + " (the section's keys)")
@pytest.mark.parametrize("section", [pytest.param(s, id=s) for s in SECTIONS if s])
@given(
    study=studies,
    in_overlay=st.booleans(),
    value=st.one_of(st.integers(), st.text(max_size=5), st.lists(st.integers())),
)
def test_a_section_that_is_no_mapping_is_named(section, study, in_overlay, value):
    words = ("valid dictionary",) if section == "targets" else SECTIONS[section]
    parts = tuple(section.split("."))
    outcome, source = attempt(study, lambda tree: put(tree, parts, value), in_overlay=in_overlay)
    assert_refused(outcome, source, section, words)


# --- the matrix: its keys are dotted settings, its values lists ---------------------------------------


def _mangled(key: str) -> st.SearchStrategy:
    """Ways a dotted key goes wrong: stray dots, a key below a leaf, a case or a letter off."""
    return st.sampled_from(
        [f"{key}.", f".{key}", key.replace(".", "..", 1) if "." in key else f"{key}..x", f"{key}.value", key.upper(),
         key[:-1], key.replace("train.", "", 1)]
    )  # fmt: skip


NOT_AXES = [s for s in SECTIONS if s] + [s.path for s in SETTINGS if not s.path.startswith("train.")]
bad_axis_keys = st.one_of(st.sampled_from(sorted(AXES)).flatmap(_mangled), st.sampled_from(NOT_AXES)).filter(
    lambda k: k not in AXES
)


@_fault(
    "a matrix axis that is no setting: stray dots, a section, a key outside train",
    ONE_LINE + " (the axes it may have)",
)
@given(study=studies, in_overlay=st.booleans(), key=bad_axis_keys)
def test_a_bad_axis_key_is_named(study, in_overlay, key):
    outcome, source = attempt(study, lambda tree: put(tree, ("matrix", key), [1]), in_overlay=in_overlay)
    assert_refused(outcome, source, f"matrix.{key}", (*CELL_AXES, "leaf of train"))


def _axis_values(study: Study, axis: str) -> list:
    """The study's values on `axis`: its matrix's, or the one its settings have."""
    return list(study.params.matrix.get(axis) or [read_dotted(study.params, axis)])


@_fault("a bad value on any matrix axis (type, range, choice, NaN)", ONE_LINE + " (and its position)")
@pytest.mark.parametrize("axis", sorted(AXES))
@given(study=studies, in_overlay=st.booleans(), data=st.data())
def test_a_bad_axis_value_is_named(axis, study, in_overlay, data):
    setting = AXES[axis]
    attacks = [
        a for a in ("wrong type", "out of range", "not finite", "unknown choice") if ATTACKS[a](setting) is not None
    ]
    value, words = data.draw(st.sampled_from(attacks).flatmap(lambda a: ATTACKS[a](setting)))
    values = _axis_values(study, axis)
    index = data.draw(st.integers(0, len(values)), label="where the bad value goes")
    values.insert(index, value)

    def change(tree):
        put(tree, ("matrix", axis), values)
        _sweep_free(tree, axis)

    outcome, source = attempt(study, change, in_overlay=in_overlay)
    assert_refused(outcome, source, f"matrix.{axis}.{index}", words)


@_fault("a matrix axis with a value twice, no values, a single value or left out", ONE_LINE)
@pytest.mark.parametrize("axis", sorted(AXES))
@given(study=studies, in_overlay=st.booleans(), shape=st.sampled_from(["twice", "empty", "scalar", "missing"]))
def test_an_axis_that_is_no_list_of_distinct_values_is_named(axis, study, in_overlay, shape):
    values = _axis_values(study, axis)
    if shape == "missing" and axis not in CELL_AXES:
        shape = "twice"  # only the cell's own axes are required
    twin = values[-1]
    if isinstance(twin, float) and twin.is_integer() and shape == "twice":
        twin = int(twin)  # 0 and 0.0 are one setting, so one cell
    expected = {
        "twice": (values + [twin], f"matrix.{axis}.{len(values)}", "the same setting as value"),
        "empty": ([], f"matrix.{axis}", "non-empty list"),
        "scalar": (values[0], f"matrix.{axis}", TYPE_WORDS[list]),
        "missing": (None, f"matrix.{axis}", "required axis is missing"),
    }
    new, path, words = expected[shape]

    def change(tree):
        put(tree, ("matrix", axis), new)
        if shape == "missing":
            tree["matrix"].pop(axis)
        _sweep_free(tree, axis)

    outcome, source = attempt(study, change, in_overlay=in_overlay and shape != "missing")
    assert_refused(outcome, source, path, (words,))


# --- what is valid loads, as written -------------------------------------------------------------------

TIED_PATHS = {path for paths in TIED.values() for path in paths}


@st.composite
def optimizers(draw) -> dict:
    """A consistent optimizer (its model_validator): momentum for sgd and rmsprop only, Nesterov for sgd only,
    Keras 2's epsilon placement for rmsprop without momentum only."""
    name = draw(valid(BY_PATH["train.optimizer.name"]))
    momentum = 0.0 if name == "adam" else draw(valid(BY_PATH["train.optimizer.momentum"]))
    nesterov = draw(st.booleans()) if name == "sgd" else False
    plain_rmsprop = name == "rmsprop" and momentum == 0
    placement = draw(valid(BY_PATH["train.optimizer.epsilon_placement"])) if plain_rmsprop else "in_sqrt"
    return {"name": name, "momentum": momentum, "nesterov": nesterov, "epsilon_placement": placement}


def _axis_values_strategy(setting) -> st.SearchStrategy:
    return st.lists(valid(setting), min_size=1, max_size=3, unique_by=repr)


@st.composite
def valid_changes(draw, study: Study) -> dict[tuple[str, ...], object]:
    """Settings changed within what the schema allows: a few keys, maybe the optimizer, maybe the matrix."""
    has_sweep = study.params.sweep is not None
    free = [s for s in SETTINGS if s.path not in TIED_PATHS and (has_sweep or not s.path.startswith("sweep."))]
    changes = {s.parts: draw(valid(s)) for s in draw(st.lists(st.sampled_from(free), unique=True, max_size=6))}
    if draw(st.booleans()):
        changes |= {("train", "optimizer", key): value for key, value in draw(optimizers()).items()}
    for axis in draw(st.lists(st.sampled_from(sorted(CELL_AXES)), unique=True, max_size=3)):
        changes[("matrix", axis)] = draw(_axis_values_strategy(CELL_AXES[axis]))
    addable = [a for a in AXES if a not in CELL_AXES and a not in TIED_PATHS and not (has_sweep and a == LR)]
    for axis in draw(st.lists(st.sampled_from(sorted(addable)), unique=True, max_size=1)):
        changes[("matrix", axis)] = draw(_axis_values_strategy(AXES[axis]))
    if has_sweep:  # the sweep's seeds are never the study's (a rule across sections): move them past its seeds
        seeds = changes.get(("matrix", "seed"), study.params.matrix["seed"])
        sweep_seeds = changes.get(("sweep", "seeds"), study.params.sweep.seeds)
        if set(seeds) & set(sweep_seeds):
            changes[("sweep", "seeds")] = [s + max(seeds) + 1 for s in sweep_seeds]
    return changes


def _loaded(params: Params, parts: tuple[str, ...]) -> object:
    value: object = params
    for part in parts:
        value = value[part] if isinstance(value, dict) else getattr(value, part)  # targets: {dataset: ...}
    return value


def _same(read: object, written: object) -> bool:
    if isinstance(written, list):  # target and grid lists come back sorted
        return sorted(map(repr, read)) == sorted(map(repr, written))
    return repr(read) == repr(written) and type(read) is type(written)


@_fault(
    "valid settings: a real study with keys changed within their bounds, in params.yaml or an overlay",
    "they load, every value as written (no silent coercion)",
)
@settings(max_examples=10 * settings.default.max_examples)  # one test for all valid settings: more examples
@given(study=studies, in_overlay=st.booleans(), data=st.data())
def test_valid_settings_load_as_written(study, in_overlay, data):
    changes = data.draw(valid_changes(study), label="changes")

    def change(tree):
        for parts, value in changes.items():
            put(tree, parts, value)

    outcome, _ = attempt(study, change, in_overlay=in_overlay)
    assert isinstance(outcome, Params), f"refused valid settings {changes}: {outcome}"
    for parts, value in changes.items():
        read = outcome.matrix[parts[1]] if parts[0] == "matrix" else _loaded(outcome, parts)
        assert _same(read, value), f"{'.'.join(parts)}: wrote {value!r}, loaded {read!r}"


# --- the commands a user runs first ------------------------------------------------------------------

BAD_ROOT = {
    "train.epochs": ("ten", "Input should be a valid integer"),
    "train.optimizer.learning_rate": (math.inf, "finite number"),
    "report.confidence": (0.4, "greater than 0.5"),
}


def _one_line(stderr: str) -> str:
    lines = stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("bnbench: "), f"one line expected:\n{stderr}"
    return lines[0]


@pytest.fixture(scope="module")
def repo_copy(tmp_path_factory) -> Path:
    repo = tmp_path_factory.mktemp("params-cli") / "repo"
    copy_repo(repo)
    return repo


def _dvc_files(repo: Path) -> dict[str, bytes]:
    return {str(p.relative_to(repo)): p.read_bytes() for p in sorted(repo.glob("**/dvc.yaml"))}


@_fault(
    "bad params given to the pipeline generator, with another study's change pending",
    "exit 1, one line naming the file and key; no dvc.yaml written or removed",
)
@pytest.mark.parametrize(
    ("where", "key", "value", "words"),
    [
        ("params.yaml", "train.epochs", "ten", "Input should be a valid integer"),
        ("studies/quick/params.yaml", "train.optimizer.learning_rate", math.inf, "finite number"),
        ("studies/article003/params.yaml", "train.optimizer.nesterovv", True, "momentum, nesterov, decay"),
        ("studies/quick/params.yaml", "report.questions", ["no_such_question"], "the declared questions are"),
    ],
)
def test_the_generator_stops_before_writing_any_pipeline(repo_copy, where, key, value, words):
    originals = {p: (repo_copy / p).read_bytes() for p in ("params.yaml", where)}
    before = _dvc_files(repo_copy)
    try:
        # A valid change to the main study, so that its dvc.yaml is out of date and would be rewritten.
        root = _read(repo_copy / "params.yaml")
        root["matrix"]["seed"] = [*root["matrix"]["seed"], 99]
        tree = root if where == "params.yaml" else _read(repo_copy / where)
        put(tree, tuple(key.split(".")), value)
        for path, content in {"params.yaml": root, where: tree}.items():
            with (repo_copy / path).open("w", encoding="utf-8") as handle:
                YAML_.dump(content, handle)
        done = subprocess.run(
            [sys.executable, "-m", "pipeline.dvcfile"],
            cwd=repo_copy,
            env={**os.environ, "PYTHONPATH": str(repo_copy)},
            capture_output=True,
            text=True,
        )
        assert done.returncode == 1, done.stdout + done.stderr
        line = _one_line(done.stderr)
        assert where in line and key in line and words in line, line
        assert _dvc_files(repo_copy) == before  # not one pipeline rewritten, even the main study's
    finally:
        for path, content in originals.items():
            (repo_copy / path).write_bytes(content)


@pytest.fixture(scope="module")
def mirror(tmp_path_factory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("mirror")
    return root, write_mirror(root, cifar_per_batch=10, cifar_test=10, fmnist_train=100, fmnist_test=100)


@_fault(
    "bad params given to the first stage (fetch), its data one step away",
    "exit 1, one line naming the key; nothing downloaded, no data folder made",
)
@pytest.mark.parametrize(("key", "bad"), [pytest.param(k, v, id=k) for k, v in BAD_ROOT.items()])
def test_the_first_stage_stops_before_any_download(tmp_path, mirror, key, bad):
    value, words = bad
    folder, checksums = mirror
    env = {
        "PATH": "/usr/bin:/bin",
        "PYTHONPATH": str(REPO),
        "BNBENCH_DATA_MIRROR": str(folder),
        "BNBENCH_DATA_CHECKSUMS": str(checksums),
        "BNBENCH_CACHE_DIR": str(tmp_path / "cache"),
        "HOME": str(tmp_path),
    }

    def fetch(params: Path) -> subprocess.CompletedProcess:
        command = ["-m", "pipeline.fetch", "--params", str(params), "--dataset", "fashion_mnist"]
        out = ["--out", str(tmp_path / "data" / "raw" / "fashion_mnist")]
        return subprocess.run([sys.executable, *command, *out], env=env, capture_output=True, text=True, cwd=tmp_path)

    tree = copy.deepcopy(ROOT_RAW)
    put(tree, tuple(key.split(".")), value)
    bad_file = tmp_path / "bad.yaml"
    with bad_file.open("w", encoding="utf-8") as handle:
        YAML_.dump(tree, handle)
    done = fetch(bad_file)
    assert done.returncode == 1, done.stdout + done.stderr
    line = _one_line(done.stderr)
    assert line.startswith(f"bnbench: {bad_file}: {key}: ") and words in line, line
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.yaml"]  # no data/, no download cache
    # The same command with the shipped params does fetch: the stop above was the params, nothing else.
    assert fetch(ROOT).returncode == 0 and (tmp_path / "data" / "raw" / "fashion_mnist" / "files.json").is_file()
