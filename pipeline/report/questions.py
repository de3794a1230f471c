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
    on: str | None = None  # only targets on this quantity ("val_accuracy", "train_loss"); None: every target

    @property
    def label(self) -> str:
        unit = "optimizer steps" if self.unit == "steps" else "training seconds"
        to = {"val_accuracy": " to validation-accuracy targets", "train_loss": " to training-loss targets"}
        return f"speed-up in {unit}{to.get(self.on, '')}"


@dataclass(frozen=True)
class Difference:
    """Treatment minus reference of a per-run metric, seed by seed."""

    metric: str  # a column of results.csv
    label: str  # what the page calls it


@dataclass(frozen=True)
class Spread:
    """How far a per-run metric moves across the values of one axis (max - min, seed by seed):
    the treatment's spread minus the reference's."""

    metric: str
    across: str  # the axis whose values the spread is taken over, e.g. train.kernel_initializer

    @property
    def label(self) -> str:
        return f"spread of {self.metric.replace('_', ' ')} across {self.across.rsplit('.', 1)[-1].replace('_', ' ')}s"


@dataclass(frozen=True)
class Level:
    """A per-run metric's mean lies within [low, high], a range an article states (not a comparison)."""

    metric: str
    low: float
    high: float

    @property
    def label(self) -> str:
        return f"{self.metric.replace('_', ' ')} within [{self.low:g}, {self.high:g}]"


@dataclass(frozen=True)
class Claim:
    key: str  # stable id: anchors on the page, tests
    statement: str  # what the claim predicts; "{treatment}" and "{reference}" are filled in
    axis: str
    treatment: object | None  # None: each value of the axis in the results other than the reference
    reference: object
    quantity: TimeToTarget | Difference | Spread | Level
    predicts: int  # FASTER/HIGHER or SLOWER/LOWER (a Level: the range is the prediction)
    where: dict[str, tuple] = field(default_factory=dict)  # only runs with these axis values
    article_says: str | None = None  # the article's own number, shown beside the measured one


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

GRADIENT_SHARE = Difference(
    "grad_norm_first_over_last", "first layer's share of the gradient (first / last hidden layer's norm)"
)

# The seed articles' claims, each answered on the runs of its claim study (studies/article*/, whose
# `report.questions` names the question). The statements are the articles'; every number is the runs'.
ARTICLE_QUESTIONS: tuple[Question, ...] = (
    Question(
        "article000",
        "Article 000: with sigmoid, does BN beat no BN, and does ReLU fix the vanishing gradient?",
        "Article 000 (Keras CNN on CIFAR-10, BN after the activation, rmsprop, augmentation)",
        (
            Claim(
                "000a-accuracy",
                "with sigmoid, {treatment} ends above {reference}",
                "bn", "post", "off", TEST_ACCURACY, HIGHER,
                where={"activation": ("sigmoid",)},
                article_says="significantly better results",
            ),
            Claim(
                "000a-loss",
                "with sigmoid, {treatment} reaches each training loss sooner than {reference}",
                "bn", "post", "off", TimeToTarget("steps", on="train_loss"), FASTER,
                where={"activation": ("sigmoid",)},
            ),
            Claim(
                "000b-accuracy",
                "without BN, {treatment} ends above {reference}",
                "activation", "relu", "sigmoid", TEST_ACCURACY, HIGHER,
                where={"bn": ("off",)},
            ),
            Claim(
                "000b-gradient",
                "without BN, {treatment} gives the first layer a larger share of the gradient than {reference}",
                "activation", "relu", "sigmoid", GRADIENT_SHARE, HIGHER,
                where={"bn": ("off",)},
            ),
        ),
    ),
    Question(
        "article001",
        "Article 001: does BN reach the no-BN model's training loss in about 5x fewer steps?",
        "Article 001 (TensorFlow strided CNN on CIFAR-10, BN at every layer's input, Adam)",
        (
            Claim(
                "001a",
                "{treatment} reaches each training loss in fewer steps than {reference}",
                "bn", "post", "off", TimeToTarget("steps", on="train_loss"), FASTER,
                article_says="5x (70 steps against 350, to a loss of 0.2)",
            ),
            Claim(
                "001b",
                "the strided net tops out at 65-70% accuracy",
                "bn", None, None, Level("best_val_accuracy", 0.65, 0.70), HIGHER,
                article_says="65 to 70%",
            ),
        ),
    ),
    Question(
        "article002",
        "Article 002: is BN after the activation better than before it?",
        "Article 002 (a Keras MLP; tested here on the 300-200-100 MLP, both datasets)",
        (Claim("002", "{treatment} ends above {reference}", "bn", "post", "pre", TEST_ACCURACY, HIGHER),),
    ),
    Question(
        "article003",
        "Article 003: BN costs time per epoch; does faster convergence make up for it?",
        "Article 003 (Fashion-MNIST MLP 300-200-100 without biases, SGD Nesterov with decay)",
        (
            Claim(
                "003a",
                "{treatment} takes longer per epoch than {reference}",
                "bn", None, "off", Difference("seconds_per_epoch", "training seconds per epoch"), HIGHER,
            ),
            Claim(
                "003b",
                "{treatment} reaches each target in fewer training seconds than {reference}",
                "bn", None, "off", TimeToTarget("seconds"), FASTER,
            ),
        ),
    ),
    Question(
        "article004_lr",
        "Article 004: does BN allow higher learning rates?",
        "Article 004 (a conv net with BN before the activation, momentum 0.9)",
        (
            Claim(
                "004-lr",
                "at each learning rate, {treatment} ends above {reference}",
                "bn", "pre", "off", TEST_ACCURACY, HIGHER,
            ),
        ),
    ),
    Question(
        "article004_init",
        "Article 004: does BN make training less sensitive to the initialisation?",
        "Article 004 (a conv net with BN before the activation, momentum 0.9)",
        (
            Claim(
                "004-init",
                "{treatment} varies less across initialisations than {reference}",
                "bn", "pre", "off", Spread("test_accuracy", "train.kernel_initializer"), LOWER,
            ),
        ),
    ),
    Question(
        "article004_sigmoid",
        "Article 004: does BN make a saturating sigmoid usable?",
        "Article 004 (a conv net with BN before the activation, momentum 0.9)",
        (
            Claim(
                "004-sigmoid",
                "with sigmoid, {treatment} ends above {reference}",
                "bn", "pre", "off", TEST_ACCURACY, HIGHER,
                where={"activation": ("sigmoid",)},
            ),
        ),
    ),
)  # fmt: skip

_BY_KEY = {q.key: q for q in (*QUESTIONS, *ARTICLE_QUESTIONS)}


def unknown_questions(keys: list[str] | None) -> list[str]:
    """The keys of `report.questions` that name no declared question."""
    return [k for k in keys or [] if k not in _BY_KEY]


def known_questions_text() -> str:
    return f"the declared questions are {', '.join(_BY_KEY)} (pipeline/report/questions.py)"


def questions_for(keys: list[str] | None) -> tuple[Question, ...]:
    """A study's questions: those `report.questions` names, or the SPEC's when it names none."""
    return tuple(_BY_KEY[k] for k in keys) if keys else QUESTIONS


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
