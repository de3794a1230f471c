"""The questions the report answers, declared as data.

A claim names two configurations that differ along one axis (treatment against
reference, every other setting equal), the quantity compared, and the direction
the claim predicts. `findings.py` answers each claim for every condition present
in the results; nothing here is a number from the runs. A claim of an article is
wired in by adding its declaration (with `where` naming its study's settings).
"""

from __future__ import annotations

from dataclasses import dataclass, field

FASTER = HIGHER = 1  # the claim predicts an effect above no effect (speed-up > 1, difference > 0)
SLOWER = LOWER = -1

# Which axis splits the first screen's answers into columns; every other axis is a condition.
ANSWER_COLUMNS_AXIS = "dataset"


@dataclass(frozen=True)
class TimeToTarget:
    """Speed-up: restricted mean time to each target of the reference divided by the treatment's."""

    unit: str  # "steps" (optimizer steps) or "seconds" (training seconds)

    @property
    def label(self) -> str:
        return f"speed-up in {'optimizer steps' if self.unit == 'steps' else 'training seconds'}"


@dataclass(frozen=True)
class Difference:
    """Treatment minus reference of a per-run metric, seed by seed."""

    metric: str  # a column of results.csv
    label: str  # what the page calls it


@dataclass(frozen=True)
class Claim:
    key: str  # stable id: anchors on the page, tests
    statement: str  # what the claim predicts; "{treatment}" and "{reference}" are filled in
    axis: str
    treatment: object | None  # None: each value of the axis in the results other than the reference
    reference: object
    quantity: TimeToTarget | Difference
    predicts: int  # FASTER/HIGHER or SLOWER/LOWER
    where: dict[str, tuple] = field(default_factory=dict)  # only runs with these axis values


@dataclass(frozen=True)
class Question:
    key: str
    text: str
    source: str  # where the question or claim comes from
    claims: tuple[Claim, ...]


TEST_ACCURACY = Difference("test_accuracy", "test accuracy")

QUESTIONS: tuple[Question, ...] = (
    Question(
        "speed",
        "How many steps (and seconds) does batch normalization save to reach a target accuracy?",
        "SPEC question 1",
        tuple(
            Claim(
                f"bn-{bn}-{unit}",
                "{treatment} reaches each target sooner than {reference}",
                "bn",
                bn,
                "off",
                TimeToTarget(unit),
                FASTER,
            )
            for bn in ("pre", "post")
            for unit in ("steps", "seconds")
        ),
    ),
    Question(
        "sigmoid",
        "Does a sigmoid network without BN stall, and does BN rescue it?",
        "SPEC question 2",
        (
            Claim(
                "sigmoid-stalls",
                "without BN, {treatment} ends below {reference}",
                "activation",
                "sigmoid",
                "relu",
                TEST_ACCURACY,
                LOWER,
                where={"bn": ("off",)},
            ),
            *(
                Claim(
                    f"bn-{bn}-rescues-sigmoid",
                    "with sigmoid, {treatment} ends above {reference}",
                    "bn",
                    bn,
                    "off",
                    TEST_ACCURACY,
                    HIGHER,
                    where={"activation": ("sigmoid",)},
                )
                for bn in ("pre", "post")
            ),
        ),
    ),
    Question(
        "placement",
        "Is BN better before the activation (pre, as in the BN paper) or after it (post)?",
        "SPEC question 3",
        (
            Claim(
                "pre-vs-post-accuracy", "{treatment} ends above {reference}", "bn", "pre", "post", TEST_ACCURACY, HIGHER
            ),
            Claim(
                "pre-vs-post-steps",
                "{treatment} reaches each target sooner than {reference}",
                "bn",
                "pre",
                "post",
                TimeToTarget("steps"),
                FASTER,
            ),
        ),
    ),
    Question(
        "dropout",
        "Does dropout help or hurt when BN is present?",
        "SPEC question 4",
        (
            Claim(
                "dropout-with-bn",
                "with BN present, {treatment} ends below {reference}",
                "dropout",
                None,
                0.0,
                TEST_ACCURACY,
                LOWER,
                where={"bn": ("pre", "post")},
            ),
        ),
    ),
)

# How an axis value reads in a sentence.
_BN_WORDS = {"off": "no BN", "pre": "BN before the activation", "post": "BN after the activation"}


def describe(axis: str, value: object) -> str:
    if axis == "bn":
        return _BN_WORDS.get(str(value), f"BN {value}")
    if isinstance(value, float):
        return f"{axis} {value:g}"
    if axis == "activation":
        return str(value)
    return f"{axis} {value}"
