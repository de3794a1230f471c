"""The seed articles' claims: declared once, answered on their studies' runs, shown on the main page.

Effects are planted exactly in fabricated cells (tests/fabricated_cells.py) and the
bootstrap is seeded, so every verdict here holds by construction.
"""

from __future__ import annotations

import json
import re

import pandas as pd
import pytest

from pipeline.errors import UserError
from pipeline.report.build import build_report, design_of, write_report
from pipeline.report.collect import collect_results
from pipeline.report.findings import answer_questions
from pipeline.report.mlflow_links import RunLinks
from pipeline.report.questions import ARTICLE_QUESTIONS, Level, Spread, TimeToTarget, questions_for
from pipeline.study import generate
from pipeline.study.cells import expand_matrix
from pipeline.study.params import load_params
from pipeline.study.schema import DatasetTargets
from tests.fabricated_cells import study_params, write_cell
from tests.helpers import REPO

SEEDS = [0, 1, 2, 3, 4]


def _findings(params, cells, key: str) -> dict:
    results, _ = collect_results(params, cells)
    answered = answer_questions(results, design_of(params), questions_for([key]))
    return {f.claim.key: f for _, findings in answered for f in findings}


def _patch(folder, **summary) -> None:
    path = folder / "metrics.json"
    path.write_text(json.dumps({**json.loads(path.read_text()), **summary}))


# --- a range an article states (001b: "only 65 to 70% accuracy can be achieved"), on each model's test accuracy ---

LEVELS = {
    "supported": [0.67, 0.675, 0.68, 0.672, 0.678],  # every interval inside [0.65, 0.70]
    "refuted": [0.50, 0.52, 0.51, 0.49, 0.505],  # every interval below it
    "inconclusive": [0.60, 0.74, 0.66, 0.71, 0.62],  # the interval straddles both ends
}


@pytest.mark.parametrize("expected", list(LEVELS))
def test_a_stated_range_is_supported_refuted_or_inconclusive_by_its_intervals(tmp_path, expected):
    params = study_params(tmp_path, bn=["off", "post"], seed=SEEDS)
    cells = tmp_path / "cells"
    for bn in ("off", "post"):
        for seed, accuracy in zip(SEEDS, LEVELS[expected], strict=True):
            write_cell(cells, bn=bn, seed=seed, crossings={0.5: 10, 0.6: 20, 0.7: None}, test_accuracy=accuracy)
    finding = _findings(params, cells, "article001")["001b"]
    assert isinstance(finding.claim.quantity, Level)
    answer = finding.answers[0]
    # one verdict per configuration, each judged by the same rule, never one on their average
    assert [side.label for side in answer.sides] == ["bn off", "bn post"]
    for side in answer.sides:
        assert side.effect.verdict == expected and side.effect.seeds == 5
        assert side.effect.estimate == pytest.approx(sum(LEVELS[expected]) / 5)


# --- a spread across an axis (004: BN makes training less sensitive to the initialisation) ---

INITIALIZERS = ["glorot_uniform", "he_normal", "random_normal"]
WIDE = [0.20, 0.50, 0.80]  # test accuracy per initializer: a spread of 0.6
NARROW = [0.60, 0.61, 0.62]  # a spread of 0.02


def _init_study(tmp_path, pre, off, diverged: tuple | None = None):
    params = study_params(
        tmp_path, bn=["off", "pre"], seed=SEEDS, extra_axes={"train.kernel_initializer": INITIALIZERS}
    )
    cells = tmp_path / "cells"
    for bn, accuracies in (("off", off), ("pre", pre)):
        for seed in SEEDS:
            for init, accuracy in zip(INITIALIZERS, accuracies, strict=True):
                broken = diverged == (bn, seed, init)
                write_cell(
                    cells, bn=bn, seed=seed, crossings={0.5: 10, 0.6: 20, 0.7: 30},
                    test_accuracy=accuracy + 0.01 * seed, diverged_at=5 if broken else None,
                    extra_axes={"train.kernel_initializer": init},
                )  # fmt: skip
    return params, cells


@pytest.mark.parametrize(("pre", "off", "expected"), [(NARROW, WIDE, "supported"), (WIDE, NARROW, "refuted")])
def test_a_spread_across_initialisations_is_compared_seed_by_seed(tmp_path, pre, off, expected):
    params, cells = _init_study(tmp_path, pre, off)
    finding = _findings(params, cells, "article004_init")["004-init"]
    assert isinstance(finding.claim.quantity, Spread)
    effect = finding.answers[0].effect
    # pre's spread minus off's, the same for every seed: exactly +-0.58
    assert effect.estimate == pytest.approx(0.02 - 0.6 if expected == "supported" else 0.6 - 0.02)
    assert effect.seeds == 5 and effect.verdict == expected


def test_a_diverged_run_enters_its_seeds_spread_at_chance_accuracy(tmp_path):
    params, cells = _init_study(tmp_path, NARROW, WIDE, diverged=("off", 2, "random_normal"))
    answer = _findings(params, cells, "article004_init")["004-init"].answers[0]
    # seed 2's off runs: 0.22, 0.52 and the diverged one at chance, 0.1: a spread of 0.42, the seed kept
    assert answer.effect.seeds == 5 and answer.left_out == 0 and answer.diverged == 1
    assert answer.effect.estimate == pytest.approx((4 * (0.02 - 0.6) + (0.02 - 0.42)) / 5)


# --- a speed-up on training-loss targets only (001a: the no-BN model's loss in ~5x fewer steps) ---


def _loss_steps(folder, drop_at: int) -> None:
    """Per-step training loss 2.0 until `drop_at`, then 0.1: its trailing mean crosses each target at a known step."""
    steps = pd.read_csv(folder / "steps.csv")
    steps["train_loss"] = [2.0 if s <= drop_at else 0.1 for s in steps["step"]]
    steps.to_csv(folder / "steps.csv", index=False)


def test_a_training_loss_claim_uses_the_loss_targets_only(tmp_path):
    params = study_params(tmp_path, bn=["off", "post"], seed=SEEDS)
    params = params.model_copy(
        update={"targets": {"cifar10": DatasetTargets(val_accuracy=[0.5, 0.6, 0.7], train_loss=[1.0, 0.5])}}
    )
    cells = tmp_path / "cells"
    for seed in SEEDS:
        # validation accuracy: the same for both, so only the loss targets can show a speed-up
        off = write_cell(cells, bn="off", seed=seed, crossings={0.5: 30, 0.6: 40, 0.7: 50})
        post = write_cell(cells, bn="post", seed=seed, crossings={0.5: 30, 0.6: 40, 0.7: 50})
        _loss_steps(off, 50 + seed)
        _loss_steps(post, 10 + seed)
    finding = _findings(params, cells, "article001")["001a"]
    assert finding.claim.quantity == TimeToTarget("steps", on="train_loss")
    answer = finding.answers[0]
    assert [dict(c.labels)["target"] for c in answer.conditions] == ["loss 1", "loss 0.5"]
    assert answer.effect.verdict == "supported" and answer.effect.estimate > 2


@pytest.mark.parametrize("column", ["absent", "empty"])
def test_a_claim_on_a_metric_the_runs_do_not_record_says_so(tmp_path, column):
    params = study_params(tmp_path, activation=["sigmoid", "relu"], seed=SEEDS)
    cells = tmp_path / "cells"
    for activation in ("sigmoid", "relu"):
        for seed in SEEDS:
            folder = write_cell(cells, activation=activation, seed=seed, crossings={0.5: 10, 0.6: 20, 0.7: 30})
            if column == "empty":  # e.g. runs from before the measure existed: a column of nulls
                _patch(folder, grad_norm_first_over_last=None)
    finding = _findings(params, cells, "article000")["000b-gradient"]
    assert finding.missing == "the runs do not record grad_norm_first_over_last"


# --- the main page shows each claim study's answers ---


def _claim_study(tmp_path):
    study = tmp_path / "studies" / "article001"
    params = study_params(tmp_path, bn=["off", "post"], seed=SEEDS)
    params = params.model_copy(update={"report": params.report.model_copy(update={"questions": ["article001"]})})
    cells = study / "results" / "cells"
    for bn in ("off", "post"):
        for seed, accuracy in zip(SEEDS, LEVELS["supported"], strict=True):
            write_cell(cells, bn=bn, seed=seed, crossings={0.5: 10, 0.6: 20, 0.7: None}, test_accuracy=accuracy)
    write_report(params, cells, study / "reports")
    return study / "reports" / "findings.json"


def test_the_main_page_shows_the_articles_claims_with_links_to_their_pages(tmp_path):
    findings = _claim_study(tmp_path)
    answers = json.loads(findings.read_text())
    assert answers["study"] == "bnbench" and [q["key"] for q in answers["questions"]] == ["article001"]
    params = study_params(tmp_path, bn=["off", "post"], seed=SEEDS)
    cells = tmp_path / "results" / "cells"
    for bn in ("off", "post"):
        for seed in SEEDS:
            write_cell(cells, bn=bn, seed=seed, crossings={0.5: 10, 0.6: 20, 0.7: 30})
    html = build_report(params, cells, links=RunLinks(), claims_files=[findings], out_dir=tmp_path / "reports").html
    section = html[html.index('id="articles"') : html.index('id="by-condition"')]
    row = re.search(r'href="../studies/article001/reports/index.html#001b">(.*?)</tr>', section, re.S).group(0)
    assert "tops out at 65-70% test accuracy" in row and "the article: 65 to 70%" in row
    assert "0.675" in row and "supported" in row and "n = 5" in row
    # the SPEC's questions stay the first table, answered on this study's own runs
    assert html.index('id="q-speed"') < html.index('id="articles"')


def test_a_claim_study_without_answers_yet_is_named(tmp_path):
    params = study_params(tmp_path, seed=SEEDS)
    cells = tmp_path / "cells"
    for seed in SEEDS:
        write_cell(cells, seed=seed, crossings={0.5: 10, 0.6: 20, 0.7: 30})
    missing = tmp_path / "studies" / "article001" / "reports" / "findings.json"
    with pytest.raises(UserError, match=r"article001/reports/findings.json: no answers of that study"):
        build_report(params, cells, links=RunLinks(), claims_files=[missing])


# --- the declarations agree with the claim studies and the generated pipeline ---

CLAIM_STUDIES = [s for s in generate.study_dirs(REPO)[1:] if s.name.startswith("article")]


@pytest.mark.parametrize("study", CLAIM_STUDIES, ids=lambda s: s.name)
def test_every_claim_of_a_study_can_be_answered_by_its_matrix(study):
    params = load_params(REPO / "params.yaml", study / "params.yaml")
    questions = questions_for(params.report.questions)
    assert questions and {q.key for q in questions} <= {q.key for q in ARTICLE_QUESTIONS}
    cells = expand_matrix(params)
    for claim in (c for q in questions for c in q.claims):
        values = {axis: {cell.as_dict()[axis] for cell in cells} for axis in params.matrix}
        for axis, wanted in claim.where.items():
            assert set(wanted) <= values[axis], (claim.key, axis)
        if not isinstance(claim.quantity, Level):
            treatments = {claim.treatment} if claim.treatment is not None else values[claim.axis] - {claim.reference}
            assert {claim.reference, *treatments} <= values[claim.axis] and treatments, claim.key
        if isinstance(claim.quantity, Spread):
            assert len(values[claim.quantity.across]) >= 3, claim.key
        if isinstance(claim.quantity, TimeToTarget) and claim.quantity.on is not None:
            for dataset in values["dataset"]:
                assert any(t.quantity == claim.quantity.on for t in params.targets_for(dataset)), claim.key


def test_every_article_has_its_questions_on_the_main_page():
    assert {q.key[:10] for q in ARTICLE_QUESTIONS} == {f"article00{i}" for i in range(5)}
    report = generate.root_definition(REPO)["stages"]["report"]
    for study in CLAIM_STUDIES:
        answers = f"studies/{study.name}/reports/findings.json"
        assert f"--claims {answers}" in report["cmd"] and answers in report["deps"]
        assert "reports/findings.json" in generate.root_definition(REPO)["stages"][f"{study.name}-report"]["outs"]


def test_an_unknown_question_is_refused_when_the_pipeline_is_generated(tmp_path, monkeypatch):
    from pipeline import dvcfile
    from tools.repo_copy import copy_repo

    copy_repo(tmp_path / "repo")
    overlay = tmp_path / "repo" / "studies" / "article002" / "params.yaml"
    overlay.write_text(overlay.read_text().replace("questions: [article002]", "questions: [article02]"))
    before = (tmp_path / "repo" / "dvc.yaml").read_text()
    monkeypatch.chdir(tmp_path / "repo")
    with pytest.raises(UserError, match=r"report.questions: no question article02; the declared questions are"):
        dvcfile.main([])
    assert (tmp_path / "repo" / "dvc.yaml").read_text() == before  # nothing written
