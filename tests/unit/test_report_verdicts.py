"""Verdicts on fabricated studies with planted effects: the report must call each one right.

Every number is planted exactly and the bootstrap is seeded, so each verdict is
determined by construction, not by luck.
"""

from __future__ import annotations

import json
import math
import re

import pytest

from pipeline.report.build import build_report, write_report
from pipeline.report.collect import axes_of, collect_results
from pipeline.report.findings import Design, answer_questions
from pipeline.report.mlflow_links import RunLinks
from tests.fabricated_cells import study_params, write_cell

SEEDS = [0, 1, 2, 3, 4]
JITTER = [0, 8, -8, 4, -4]  # seeds differ in how fast they learn; planted effects hold seed by seed
SLOW = (60, 75, 90)  # steps to the targets 0.5, 0.6, 0.7
FAST = (20, 25, 30)  # three times sooner
TEST_ACCURACY = [0.30, 0.36, 0.24, 0.33, 0.27]


def _answers(params, cells):
    results, _ = collect_results(params, cells)
    design = Design(
        axes=axes_of(params),
        targets={"cifar10": ["acc50", "acc60", "acc70"]},
        target_labels={"acc50": "0.5", "acc60": "0.6", "acc70": "0.7"},
        confidence=params.report.confidence,
    )
    return {f.anchor: f for _, findings in answer_questions(results, design) for f in findings}


def _plant(cells, bn: str, seed: int, steps: tuple[int | None, ...], test_accuracy: float, **kwargs):
    crossings = dict(zip((0.5, 0.6, 0.7), steps, strict=True))
    write_cell(
        cells, activation="sigmoid", bn=bn, seed=seed, crossings=crossings, test_accuracy=test_accuracy, **kwargs
    )


def _shift(steps: tuple[int, ...], by: int) -> tuple[int, ...]:
    return tuple(s + by for s in steps)


# For each scenario, BN post against BN off, seed by seed: (post steps, post test accuracy) from off's.
SCENARIOS = {
    "large speed-up and gain": (lambda off, s: _shift(FAST, JITTER[s] // 4), lambda acc, s: acc + 0.30 + 0.01 * s),
    "null effect": (lambda off, s: _shift(off, [3, -3, 2, -2, 0][s]), lambda acc, s: acc + [0.002, -0.002, 0.001, -0.001, 0][s]),
    "reversed effect": (lambda off, s: _shift(off, 25 + s), lambda acc, s: acc - 0.20 - 0.01 * s),
    "too small to matter": (lambda off, s: _shift(off, [3, 5, 2, 4, 0][s]), lambda acc, s: acc + [0.002, 0.004, 0.001, 0.003, 0][s]),
}  # fmt: skip
EXPECTED = {
    "large speed-up and gain": "supported",
    "null effect": "no meaningful difference",  # both intervals inside the 1.1x and 1-point margins
    "reversed effect": "refuted",
    "too small to matter": "no meaningful difference",  # a consistent effect, but well inside the margins
}
VERDICT_CLASS = {"supported": "supported", "refuted": "refuted", "no meaningful difference": "no-difference"}


@pytest.fixture(params=list(SCENARIOS))
def planted(request, tmp_path):
    post_steps, post_accuracy = SCENARIOS[request.param]
    params = study_params(tmp_path, activation=["sigmoid"], bn=["off", "post"], seed=SEEDS)
    cells = tmp_path / "cells"
    for s in SEEDS:
        off = _shift(SLOW, JITTER[s])
        _plant(cells, "off", s, off, TEST_ACCURACY[s])
        _plant(cells, "post", s, post_steps(off, s), post_accuracy(TEST_ACCURACY[s], s))
    return request.param, params, cells


def test_planted_effects_get_the_right_verdict(planted):
    scenario, params, cells = planted
    findings = _answers(params, cells)
    for key in ("bn-post-steps", "bn-post-seconds", "bn-post-rescues-sigmoid"):
        answer = findings[key].answers[0]
        assert answer.column == "cifar10" and answer.effect.seeds == 5
        assert answer.effect.verdict == EXPECTED[scenario], (key, answer.effect)
        # each target on its own says the same
        assert {c.effect.verdict for c in answer.conditions} == {EXPECTED[scenario]}, key
    speedup = findings["bn-post-steps"].answers[0].effect
    if scenario == "large speed-up and gain":
        assert 2.5 < speedup.interval.low <= speedup.estimate <= speedup.interval.high < 3.5
    if scenario == "reversed effect":
        assert speedup.interval.high < 1


def test_the_page_shows_the_verdicts_on_its_first_table(planted):
    scenario, params, cells = planted
    html, _, _, _report_answers, _curves = build_report(params, cells, links=RunLinks())
    answers = html[html.index('<table class="answers">') : html.index("</table>")]
    row = re.search(r'href="#bn-post-steps".*?</tr>', answers, re.S).group(0)
    assert f'class="verdict {VERDICT_CLASS[EXPECTED[scenario]]}"' in row and "n = 5" in row


def test_too_few_seeds_is_inconclusive_whatever_the_effect(tmp_path):
    params = study_params(tmp_path, activation=["sigmoid"], bn=["off", "post"], seed=[0, 1])
    cells = tmp_path / "cells"
    for s in (0, 1):
        _plant(cells, "off", s, SLOW, 0.2)
        _plant(cells, "post", s, FAST, 0.8)
    effect = _answers(params, cells)["bn-post-steps"].answers[0].effect
    assert effect.estimate == pytest.approx(3.0, rel=0.01)
    assert effect.verdict == "inconclusive" and effect.reason.startswith("n < 3 paired seeds")


def test_a_configuration_that_rarely_reaches_the_target_does_not_look_faster(tmp_path):
    # BN post reaches 0.5 sooner in 2 seeds of 5 and never in the other 3; no BN reaches it in all 5.
    # Averaging only the seeds that reached it would call BN 3x faster.
    params = study_params(tmp_path, activation=["sigmoid"], bn=["off", "post"], seed=SEEDS)
    cells = tmp_path / "cells"
    for s in SEEDS:
        _plant(cells, "off", s, (60, 75, 90), 0.5)
        _plant(cells, "post", s, (20, 25, 30) if s < 2 else (None, None, None), 0.5)
    answer = _answers(params, cells)["bn-post-steps"].answers[0]
    first_target = answer.conditions[0]
    assert dict(first_target.labels)["target"] == "0.5"
    assert first_target.treatment_reached == "2/5" and first_target.reference_reached == "5/5"
    # restricted means up to the 100-step budget: (20 + 20 + 3 x 100) / 5 against 60
    assert first_target.treatment_value == pytest.approx(68.0)
    assert first_target.effect.estimate == pytest.approx(60 / 68)
    assert "supported" not in {c.effect.verdict for c in answer.conditions} | {answer.effect.verdict}


def test_seeds_pair_the_runs(tmp_path):
    # Seeds differ threefold in speed; within each seed BN post takes exactly half the steps.
    # Paired, the speed-up is 2 in every resample; unpaired, the spread between seeds would swamp it.
    params = study_params(tmp_path, activation=["sigmoid"], bn=["off", "post"], seed=SEEDS)
    cells = tmp_path / "cells"
    for s, base in zip(SEEDS, (10, 14, 30, 22, 26), strict=True):
        _plant(cells, "off", s, (2 * base, 3 * base, 3 * base + 2), 0.5)
        _plant(cells, "post", s, (base, 3 * base // 2, 3 * base // 2 + 1), 0.5)
    effect = _answers(params, cells)["bn-post-steps"].answers[0].conditions[0].effect
    assert effect.estimate == pytest.approx(2.0)
    assert (effect.interval.low, effect.interval.high) == pytest.approx((2.0, 2.0))
    assert effect.verdict == "supported"


def test_a_diverged_run_is_censored_at_its_budget_and_counts_at_chance_accuracy(tmp_path):
    params = study_params(tmp_path, activation=["sigmoid"], bn=["off", "post"], seed=SEEDS)
    cells = tmp_path / "cells"
    for s in SEEDS:
        _plant(cells, "off", s, SLOW, 0.3)
        if s == 0:
            _plant(cells, "post", s, (None, None, None), 0.9, diverged_at=30)
        else:
            _plant(cells, "post", s, FAST, 0.9)
    answer = _answers(params, cells)["bn-post-steps"].answers[0]
    first_target = answer.conditions[0]
    # Kaplan-Meier with one run censored at step 30: 4 of 5 reach at 20, the censored one leaves at 30,
    # so the curve stays at 1/5 from 20 to the budget: 20 + 80 x 1/5 = 36 (counting it as the budget gives the same
    # here; treating it as reached, or dropping it, would give 20).
    assert first_target.treatment_value == pytest.approx(36.0)
    accuracy = _answers(params, cells)["bn-post-rescues-sigmoid"].answers[0]
    # the diverged seed has no test accuracy: it counts at chance (0.1), its pair kept, never left out
    assert accuracy.effect.seeds == 5 and accuracy.left_out == 0 and accuracy.diverged == 1
    assert accuracy.conditions[0].treatment_value == pytest.approx((4 * 0.9 + 0.1) / 5)
    html, results, _, _report_answers, _curves = build_report(params, cells, links=RunLinks())
    assert "1 run(s) diverged, counted as outcomes" in html and (results["outcome"] == "diverged").sum() == 1


def test_when_no_run_reaches_a_target_the_answer_says_so(tmp_path):
    params = study_params(tmp_path, activation=["sigmoid"], bn=["off", "post"], seed=SEEDS)
    cells = tmp_path / "cells"
    for s in SEEDS:
        _plant(cells, "off", s, (None, None, None), 0.1)
        _plant(cells, "post", s, (None, None, None), 0.1)
    effect = _answers(params, cells)["bn-post-steps"].answers[0].effect
    # no estimate, rather than a ratio of 1 that would read as a measured null effect
    assert math.isnan(effect.estimate) and effect.interval is None and effect.verdict == "inconclusive"
    assert effect.reason == "no run of either configuration reached the target"
    html, _, _, _report_answers, _curves = build_report(params, cells, links=RunLinks())
    assert "no estimate" in html and "neither BN after the activation nor no BN reached the target" in html


def test_what_a_study_cannot_answer_is_named_from_its_matrix(tmp_path):
    params = study_params(tmp_path, activation=["sigmoid"], bn=["off", "post"], seed=[0, 1])
    cells = tmp_path / "cells"
    for s in (0, 1):
        _plant(cells, "off", s, SLOW, 0.2)
        _plant(cells, "post", s, FAST, 0.8)
    findings = _answers(params, cells)
    assert (
        findings["bn-pre-steps"].missing
        == "no runs with BN before the activation; this study's bn values are off, post"
    )
    assert findings["sigmoid-stalls"].missing == "no runs with relu; this study's activation values are sigmoid"
    assert findings["dropout-with-bn"].missing == "no dropout other than 0 in this study"
    html, _, _, _report_answers, _curves = build_report(params, cells, links=RunLinks())
    assert (
        "Not answerable here (no runs with BN before the activation; this study&#39;s bn values are off, post)" in html
    )


def test_runs_that_diverge_early_never_reach_the_target_and_count_as_slower(tmp_path):
    # BN post diverges at step 5 in every seed, before any target; BN off reaches every target.
    # Censored where it stopped, post would look as fast as off up to step 5; it never gets there.
    params = study_params(tmp_path, activation=["sigmoid"], bn=["off", "post"], seed=SEEDS)
    cells = tmp_path / "cells"
    for s in SEEDS:
        _plant(cells, "off", s, _shift(SLOW, JITTER[s]), TEST_ACCURACY[s])
        _plant(cells, "post", s, (None, None, None), None, diverged_at=5)
    speedup = _answers(params, cells)["bn-post-steps"].answers[0]
    assert speedup.effect.verdict == "refuted" and speedup.effect.estimate < 1
    assert all(c.horizon == 100 for c in speedup.conditions)  # followed to the budget, not to step 5


def test_dvc_metrics_carry_each_headline_answer_as_the_page_gives_it(planted):
    scenario, params, cells = planted
    report = build_report(params, cells, links=RunLinks())
    findings = _answers(params, cells)
    for key in ("bn-post-steps", "bn-post-seconds", "bn-post-rescues-sigmoid"):
        effect = findings[key].answers[0].effect
        assert report.metrics[key]["cifar10"] == {
            "effect": pytest.approx(effect.estimate, abs=1e-6),
            "ci_low": pytest.approx(effect.interval.low, abs=1e-6),
            "ci_high": pytest.approx(effect.interval.high, abs=1e-6),
            "n": 5,
            "verdict": EXPECTED[scenario],
        }


def test_an_answer_without_an_estimate_is_null_in_the_dvc_metrics(tmp_path):
    params = study_params(tmp_path, activation=["sigmoid"], bn=["off", "post"], seed=SEEDS)
    cells = tmp_path / "cells"
    for s in SEEDS:  # no run reaches any target: no speed-up to give
        _plant(cells, "off", s, (None, None, None), TEST_ACCURACY[s])
        _plant(cells, "post", s, (None, None, None), TEST_ACCURACY[s])
    report = build_report(params, cells, links=RunLinks())
    no_speedup = {"effect": None, "ci_low": None, "ci_high": None, "n": 5, "verdict": "inconclusive"}
    assert report.metrics["bn-post-steps"]["cifar10"] == no_speedup
    out = tmp_path / "metrics.json"
    write_report(params, cells, tmp_path / "reports", metrics_path=out)
    json.loads(out.read_text(), parse_constant=lambda c: pytest.fail(f"{c} in a DVC metrics file"))
