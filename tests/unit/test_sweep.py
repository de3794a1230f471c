"""The learning-rate sweep: its params, its cells and stages, and the rule that chooses a rate."""

from __future__ import annotations

import json

import pytest
from ruamel.yaml import YAML

from pipeline import choose, dvcfile
from pipeline.errors import UserError
from pipeline.study import choice, generate
from pipeline.study.cells import expand_matrix, expand_sweep, find_sweep_cell, sweep_settings, tuned_settings
from pipeline.study.params import ParamsError, load_params, parse_params
from tests.helpers import REPO

SWEEP = {"learning_rates": [0.0001, 0.001, 0.01, 0.1], "seeds": [0, 1], "epochs": 2, "choose_by": "best_val_accuracy"}
MATRIX = {
    "dataset": ["fashion_mnist"],
    "activation": ["relu"],
    "bn": ["off", "post"],
    "dropout": [0.0],
    "seed": [2, 3, 4],  # never the sweep's seeds: a rate is not reported on the runs it was chosen on
}


def _raw(**changes) -> dict:
    raw = YAML(typ="safe", pure=True).load((REPO / "params.yaml").read_text())
    raw["matrix"] = dict(MATRIX)
    raw["sweep"] = dict(SWEEP)
    for key, value in changes.items():
        section, _, leaf = key.partition("__")
        if leaf:
            raw[section][leaf] = value
        else:
            raw[section] = value
    return raw


def _params(**changes):
    return parse_params(_raw(**changes), "params.yaml")


# -- params -------------------------------------------------------------------------------------


def test_a_study_without_sweep_has_none():
    # The main study sweeps; an overlay turns it off with `sweep: null`, as the quick study does.
    assert load_params(REPO / "params.yaml").sweep is not None
    params = load_params(REPO / "params.yaml", REPO / "studies" / "quick" / "params.yaml")
    assert params.sweep is None and expand_sweep(params) == []
    assert params.study.runs_with_main is False


@pytest.mark.parametrize(
    ("key", "value", "needle"),
    [
        ("sweep__learning_rates", [0.001, 0.01, 0.1], r"spans 2.00 decades .* needs at least 3"),
        ("sweep__learning_rates", [0.0, 0.001, 10.0], r"learning rates must be positive, got \[0.0\]"),
        ("sweep__learning_rates", [-0.1, 0.001, 10.0], r"learning rates must be positive"),
        ("sweep__choose_by", "test_accuracy", r"'test_accuracy' is not a validation quantity"),
        ("sweep__choose_by", "train_loss", r"not a validation quantity .* never to choose"),
        ("sweep__seeds", [0, 0], r"duplicate values"),
        # a rate chosen on a seed would be reported on that seed's rerun: refused, naming the seeds
        (
            "sweep__seeds",
            [4, 7],
            r"sweep.seeds: \[4\] are also in matrix.seed; .* must differ \(e.g. sweep seeds from 5 on\)",
        ),
        ("sweep__epochs", 0, r"sweep.epochs"),
    ],
)
def test_a_bad_sweep_is_refused_with_its_key(key, value, needle):
    with pytest.raises(ParamsError, match=needle):
        _params(**{key: value})


def test_a_sweep_and_a_learning_rate_axis_are_refused_together():
    matrix = {**MATRIX, "train.optimizer.learning_rate": [0.1, 0.01]}
    with pytest.raises(ParamsError, match=r"sweep: the study also has train.optimizer.learning_rate as a matrix axis"):
        _params(matrix=matrix)


# -- cells --------------------------------------------------------------------------------------


def test_sweep_cells_are_configuration_by_rate_by_sweep_seed():
    params = _params()
    cells = expand_sweep(params)
    assert len(cells) == 2 * 4 * 2
    assert cells[0].name == "fashion_mnist-relu-off-0.0-learning_rate_0.0001-0"
    assert {c.configuration for c in cells} == {c.configuration for c in expand_matrix(params)}
    settings = sweep_settings(params, cells[-1])
    assert settings.train.optimizer.learning_rate == 0.1 and settings.train.epochs == 2 and settings.seed == 1
    cell = expand_matrix(params)[0]
    assert tuned_settings(params, cell, 0.03).train.optimizer.learning_rate == 0.03
    assert tuned_settings(params, cell, 0.03).train.epochs == params.train.epochs


# -- the rule -----------------------------------------------------------------------------------


def _write_sweep(folder, params, scores: dict[tuple[str, float, int], float | None], diverged=()) -> None:
    """Sweep cell outputs by hand: the score of each (configuration, rate, seed); None: no value."""
    for cell in expand_sweep(params):
        key = (cell.configuration, cell["train.optimizer.learning_rate"], cell.seed)
        value = scores[key]
        out = folder / cell.name
        out.mkdir(parents=True)
        metrics = {
            "cell": cell.name,
            "outcome": "diverged" if key in diverged else "completed",
            "best_val_accuracy": value,
            "final_val_loss": None if value is None else 1 - value,
            "test_accuracy": 0.99 if key[1] == 0.0001 else 0.0,  # never read: test plays no part
        }
        (out / "metrics.json").write_text(json.dumps(metrics))


def test_the_best_mean_wins_a_diverged_rate_scores_worst_and_a_tie_goes_to_the_smaller_rate(tmp_path):
    params = _params()
    off, post = "fashion_mnist-relu-off-0.0", "fashion_mnist-relu-post-0.0"
    scores = {}
    # means 0.1, 0.15, 0.15 (in floats 0.15000000000000002: equal once rounded), 0.985 (0.1 diverged)
    for rate, (a, b) in {0.0001: (0.1, 0.1), 0.001: (0.25, 0.05), 0.01: (0.1, 0.2), 0.1: (0.99, 0.98)}.items():
        scores[(off, rate, 0)], scores[(off, rate, 1)] = a, b
    for rate, (a, b) in {0.0001: (0.2, 0.2), 0.001: (0.4, 0.5), 0.01: (0.9, 0.8), 0.1: (None, 0.95)}.items():
        scores[(post, rate, 0)], scores[(post, rate, 1)] = a, b
    # off at 0.1: best before it diverged on seed 1, still worst; post at 0.1: one seed without a value
    _write_sweep(tmp_path, params, scores, diverged={(off, 0.1, 1)})
    chosen = choice.choose(params, tmp_path)
    off_entry, post_entry = chosen["configurations"][off], chosen["configurations"][post]
    assert (0.1 + 0.2) / 2 != (0.25 + 0.05) / 2  # the tie is one only once rounded
    assert off_entry["learning_rate"] == 0.001  # 0.001 and 0.01 tie at 0.15: the smaller rate
    assert off_entry["scores"]["0.1"] is None and off_entry["diverged"] == ["0.1"]
    assert off_entry["scores"]["0.001"] == off_entry["scores"]["0.01"] == 0.15 and off_entry["scores"]["0.0001"] == 0.1
    assert post_entry["learning_rate"] == 0.01 and post_entry["scores"]["0.1"] is None
    assert chosen["rule"].startswith("score = mean of best_val_accuracy over the sweep seeds [0, 1]")
    assert off_entry["axes"] == {"dataset": "fashion_mnist", "activation": "relu", "bn": "off", "dropout": 0.0}


def test_a_loss_is_chosen_lowest_and_all_diverged_keeps_the_smallest_rate(tmp_path):
    params = _params(sweep={**SWEEP, "choose_by": "final_val_loss"})
    off, post = "fashion_mnist-relu-off-0.0", "fashion_mnist-relu-post-0.0"
    scores = {(c, r, s): 0.1 + r for c in (off, post) for r in SWEEP["learning_rates"] for s in (0, 1)}
    scores[(off, 0.0001, 0)] = 0.9  # final_val_loss 0.1 + ... : highest accuracy means lowest loss
    everything = {(post, r, s) for r in SWEEP["learning_rates"] for s in (0, 1)}
    _write_sweep(tmp_path, params, scores, diverged=everything)
    chosen = choice.choose(params, tmp_path)["configurations"]
    assert chosen[off]["learning_rate"] == 0.0001  # loss 0.1: the lowest
    assert chosen[post]["learning_rate"] == 0.0001 and len(chosen[post]["diverged"]) == 4


@pytest.mark.parametrize("choose_by", ["best_val_accuracy", "final_val_loss"])
def test_a_diverged_rate_is_never_chosen_over_one_that_scored_also_by_a_loss(tmp_path, choose_by):
    params = _params(sweep={**SWEEP, "choose_by": choose_by})
    off, post = "fashion_mnist-relu-off-0.0", "fashion_mnist-relu-post-0.0"
    # final_val_loss is 1 - best_val_accuracy (_write_sweep): the same rate is best whichever is chosen by.
    # off: 0.0001 diverged after the best value of all (loss 0.01), 0.1 has no value on one seed; 0.01 scored best.
    # post: every rate but 0.1 diverged, and 0.1 scored the worst value of all (loss 0.95): it is still chosen.
    values = {
        off: {0.0001: (0.99, 0.99), 0.001: (0.2, 0.2), 0.01: (0.5, 0.5), 0.1: (None, 0.6)},
        post: {0.0001: (0.99, 0.99), 0.001: (0.98, 0.98), 0.01: (0.97, 0.97), 0.1: (0.05, 0.05)},
    }
    scores = {(c, r, s): values[c][r][s] for c in (off, post) for r in SWEEP["learning_rates"] for s in (0, 1)}
    diverged = {(off, 0.0001, 1), *((post, r, s) for r in (0.0001, 0.001, 0.01) for s in (0, 1))}
    _write_sweep(tmp_path, params, scores, diverged=diverged)
    chosen = choice.choose(params, tmp_path)["configurations"]
    assert chosen[off]["learning_rate"] == 0.01
    assert chosen[off]["scores"]["0.0001"] is None and chosen[off]["scores"]["0.1"] is None
    assert chosen[post]["learning_rate"] == 0.1 and chosen[post]["diverged"] == ["0.0001", "0.001", "0.01"]


def test_the_chosen_file_is_the_same_bytes_each_time(tmp_path):
    params = _params()
    scores = {(c.configuration, c["train.optimizer.learning_rate"], c.seed): 0.5 for c in expand_sweep(params)}
    _write_sweep(tmp_path / "sweep", params, scores)
    overlay = tmp_path / "params.yaml"
    YAML().dump(_raw(), overlay.open("w"))
    outs = []
    for name in ("a.json", "b.json"):
        assert (
            choose.main(["--params", str(overlay), "--sweep", str(tmp_path / "sweep"), "--out", str(tmp_path / name)])
            == 0
        )
        outs.append((tmp_path / name).read_bytes())
    assert outs[0] == outs[1] and json.loads(outs[0])["configurations"]


def test_a_missing_sweep_result_names_its_stage(tmp_path):
    from pipeline.errors import UserError

    with pytest.raises(UserError, match=r"stage sweep@fashion_mnist-relu-off-0.0-learning_rate_0.0001-0"):
        choice.choose(_params(), tmp_path)


# -- the generated stages ------------------------------------------------------------------------


def _study_with_sweep(repo, name="sweepy", marked=False):
    folder = repo / "studies" / name
    folder.mkdir()
    (folder / "params.yaml").write_text(
        f"study:\n  name: {name}\n  runs_with_main: {'true' if marked else 'false'}\n"
        "matrix:\n  dataset: [fashion_mnist]\n  activation: [relu]\n  bn: ['off', post]\n  dropout: [0.0]\n  seed: [1, 2]\n"
        "sweep:\n  learning_rates: [0.0001, 0.01, 0.1]\n  seeds: [0]\n  epochs: 1\n  choose_by: best_val_accuracy\n"
    )
    return folder


def _stages(path) -> dict:
    return YAML(typ="safe", pure=True).load(path.read_text())["stages"]


@pytest.fixture
def repo_copy(tmp_path, monkeypatch):
    from tools.repo_copy import copy_repo

    copy_repo(tmp_path / "repo")
    monkeypatch.chdir(tmp_path / "repo")
    return tmp_path / "repo"


def test_a_sweep_study_gets_sweep_choose_and_tuned_stages(repo_copy):
    folder = _study_with_sweep(repo_copy)
    assert dvcfile.main([]) == 0
    stages = _stages(folder / "dvc.yaml")
    sweep, chosen, tuned, report = stages["sweep"], stages["choose"], stages["tuned"], stages["report"]
    assert sorted(sweep["foreach"]) == sorted(
        f"fashion_mnist-relu-{bn}-0.0-learning_rate_{r}-0" for bn in ("off", "post") for r in ("0.0001", "0.01", "0.1")
    )
    assert "--sweep-cell ${key}" in sweep["do"]["cmd"] and sweep["do"]["outs"] == ["results/sweep/cells/${key}"]
    # the sections it reads: the main study's train, and this study's sweep, which sets every sweep key
    # (so no sweep key of the main study's decides it)
    assert {"../../params.yaml": ["train"]} in sweep["do"]["params"] and "sweep" in sweep["do"]["params"]
    assert chosen["outs"] == ["results/sweep/chosen.json"] and "results/sweep/cells" in chosen["deps"]
    assert "../../results/code/choose.json" in chosen["deps"]  # its code: the digest of pipeline.choose's modules
    assert sorted(tuned["foreach"]) == sorted(
        f"fashion_mnist-relu-{bn}-0.0-{s}" for bn in ("off", "post") for s in (1, 2)
    )
    # the tuned cells read the chosen file: it is their dependency, and their argument
    assert "results/sweep/chosen.json" in tuned["do"]["deps"]
    assert "--learning-rate-from results/sweep/chosen.json" in tuned["do"]["cmd"]
    assert tuned["do"]["outs"] == ["results/tuned/${key}"]
    assert "sweep" not in tuned["do"]["params"] and "sweep" not in stages["train"]["do"]["params"]
    assert sorted(stages["train"]["foreach"]) == sorted(tuned["foreach"])  # the fixed-rate cells stay
    assert {"results/tuned", "results/sweep/chosen.json"} <= set(report["deps"])
    assert "--tuned results/tuned --chosen results/sweep/chosen.json" in report["cmd"]
    # the report reads the sweep runs too (sweep.csv, the check against chosen.json): their folder is a dependency
    assert "--sweep results/sweep/cells " in report["cmd"] and "results/sweep/cells" in report["deps"]
    assert "reports/sweep.csv" in report["outs"]
    assert "reports/sweep.csv" not in _stages(repo_copy / "studies" / "quick" / "dvc.yaml")["report"]["outs"]
    # no sweep in a study without one
    assert "sweep" not in _stages(repo_copy / "studies" / "quick" / "dvc.yaml")


def test_a_changed_sweep_makes_the_pipeline_stale(repo_copy, monkeypatch):
    from pipeline.errors import UserError

    folder = _study_with_sweep(repo_copy)
    assert dvcfile.main([]) == 0
    overlay = folder / "params.yaml"
    overlay.write_text(overlay.read_text().replace("[0.0001, 0.01, 0.1]", "[0.0001, 0.001, 0.01, 0.1]"))
    with pytest.raises(UserError, match="out of date: studies/sweepy/dvc.yaml"):
        dvcfile.main(["--check"])
    monkeypatch.setenv("DVC_STAGE", "sweepy-report")
    with pytest.raises(UserError, match="is out of date with the study's params"):
        generate.ensure_current(folder)


def test_a_study_marked_runs_with_main_is_in_the_root_pipeline_and_plain_repro_runs_it(repo_copy):
    import subprocess
    import sys

    folder = _study_with_sweep(repo_copy, "claim_x", marked=True)
    (folder / "dvc.yaml").write_text("stages: {}\n")  # a copy from before it was marked: removed
    assert dvcfile.main([]) == 0
    assert not (folder / "dvc.yaml").exists()
    root = _stages(repo_copy / "dvc.yaml")
    ours = {name: stage for name, stage in root.items() if name.startswith("claim_x-")}
    assert set(ours) == {
        f"claim_x-{s}" for s in ("prepare", "train-code", "train", "sweep", "choose", "tuned", "report")
    }
    assert ours["claim_x-choose"]["wdir"] == "studies/claim_x"
    assert ours["claim_x-train"]["do"]["wdir"] == "studies/claim_x"
    assert ours["claim_x-train"]["do"]["outs"] == ["results/cells/${key}"]  # inside its folder, by wdir
    assert "--lock ../../dvc.lock" in ours["claim_x-report"]["cmd"]  # the lock its runs are recorded in
    assert "train" in root and "report" in root  # the main study's own stages are still there
    generate.ensure_current(folder)  # outside a stage: nothing to check
    with pytest.raises(Exception, match="runs with the main study"):
        generate.render(repo_copy, folder)

    def dvc(*args):
        done = subprocess.run([sys.executable, "-m", "dvc", *args], cwd=repo_copy, capture_output=True, text=True)
        assert done.returncode == 0, done.stderr
        return done.stdout

    status = dvc("status")  # plain: what a plain `dvc repro` would run
    assert "claim_x-train@fashion_mnist-relu-post-0.0-2:" in status and "claim_x-choose:" in status
    dag = dvc("dag", "--md", "claim_x-report")  # the study's page and all it needs, as `dvc repro claim_x-report` runs
    assert "claim_x-tuned@fashion_mnist-relu-off-0.0-1" in dag and "claim_x-choose" in dag
    assert "fetch@fashion_mnist" in dag and "train@cifar10" not in dag


def test_a_sweep_cell_not_in_the_sweep_names_the_fix(tmp_path):
    params = load_params(REPO / "params.yaml")
    with pytest.raises(UserError, match=r"sweep cell nope is not in the sweep of params.yaml; .* pipeline.dvcfile"):
        find_sweep_cell(params, "nope", "params.yaml")
    assert find_sweep_cell(params, expand_sweep(params)[3].name, "params.yaml") == expand_sweep(params)[3]
