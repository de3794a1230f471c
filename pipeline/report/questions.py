"""The questions the report answers, declared as data.

A claim names two configurations that differ along one axis (treatment against
reference, every other setting equal), the quantity compared, the direction the
claim predicts and, through its quantity, the smallest effect that counts (the
margin of verdicts.py). `findings.py` answers each claim for every condition
present in the results; nothing here is a number from the runs. A claim of an
article is wired in by adding its declaration (with `where` naming its study's
settings); a claim not tested says why (`Untested`), and the article's setup and
its text-against-code disagreements live in `articles.py`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

FASTER = HIGHER = 1  # the claim predicts an effect above no effect (speed-up > 1, difference > 0)
SLOWER = LOWER = -1

# What a comparison claims (verdicts.py judges each): an effect of at least the margin, or "not worse than the
# reference by the margin". Declared here, not imported from the rule: the generator's command
# (pipeline/dvcfile.py) checks a study's question keys against this module, which stays free of the rule.
SUPERIORITY, NON_INFERIORITY = "superiority", "non-inferiority"

# Which axis splits the first screen's answers into columns; every other axis is a condition.
ANSWER_COLUMNS_AXIS = "dataset"

SPEED_MARGIN = 1.1  # the smallest speed-up (or slow-down) of interest: 10% fewer steps or seconds
ACCURACY_MARGIN = 0.01  # the smallest accuracy difference of interest: 1 point
# Per-run metrics measured in seconds: a verdict on them uses only runs whose timing is comparable (timing.py).
TIMED_METRICS = ("seconds_per_epoch", "train_seconds", "throughput_images_per_s")


@dataclass(frozen=True)
class TimeToTarget:
    """Speed-up: restricted mean time to each target of the reference divided by the treatment's."""

    unit: str  # "steps" (optimizer steps) or "seconds" (training seconds)
    on: str | None = None  # only targets on this quantity ("val_accuracy", "train_loss"); None: every target
    margin: float = SPEED_MARGIN
    ratio = True

    @property
    def label(self) -> str:
        unit = "optimizer steps" if self.unit == "steps" else "training seconds"
        to = {"val_accuracy": " to validation-accuracy targets", "train_loss": " to training-loss targets"}
        return f"speed-up in {unit}{to.get(self.on, '')}"

    @property
    def timed(self) -> bool:
        return self.unit == "seconds"


@dataclass(frozen=True)
class Difference:
    """Treatment minus reference of a per-run metric, seed by seed."""

    metric: str  # a column of results.csv
    label: str  # what the page calls it
    margin: float  # the smallest difference of interest, in the metric's unit
    ratio = False

    @property
    def timed(self) -> bool:
        return self.metric in TIMED_METRICS


@dataclass(frozen=True)
class Ratio:
    """Treatment over reference of a per-run metric, seed by seed (the geometric mean of the ratios)."""

    metric: str
    label: str
    margin: float  # the smallest ratio of interest (> 1), either way
    ratio = True

    @property
    def timed(self) -> bool:
        return self.metric in TIMED_METRICS


@dataclass(frozen=True)
class Spread:
    """How far a per-run metric moves across the values of one axis (max - min, seed by seed):
    the treatment's spread minus the reference's."""

    metric: str
    across: str  # the axis whose values the spread is taken over, e.g. train.kernel_initializer
    margin: float = ACCURACY_MARGIN
    ratio = False
    timed = False

    @property
    def label(self) -> str:
        return f"spread of {self.metric.replace('_', ' ')} across {self.across.rsplit('.', 1)[-1].replace('_', ' ')}s"


@dataclass(frozen=True)
class Learns:
    """Whether a run learned at all: its validation accuracy ever reached chance + `above_chance`
    (a near-chance target); the treatment's share of such runs minus the reference's, seed by seed."""

    above_chance: float = 0.1
    margin: float = 0.2  # one run in five
    metric = "best_val_accuracy"
    ratio = False
    timed = False

    @property
    def label(self) -> str:
        return f"share of runs whose validation accuracy ever reaches chance + {self.above_chance:g}"


@dataclass(frozen=True)
class Interaction:
    """How the treatment's effect on a metric changes along an axis: its difference at the upper half of
    the axis's values minus at the lower half, seed by seed (a difference in differences)."""

    metric: str
    metric_label: str  # what the page calls the metric
    across: str  # e.g. train.optimizer.learning_rate
    margin: float = ACCURACY_MARGIN
    ratio = False
    timed = False

    @property
    def label(self) -> str:
        axis = self.across.rsplit(".", 1)[-1].replace("_", " ")
        return f"{self.metric_label} difference at the upper half of the {axis}s minus at the lower half"


@dataclass(frozen=True)
class Level:
    """A per-run metric's mean lies within [low, high], a range an article states (not a comparison),
    judged per configuration: a range is never judged on an average of different models."""

    metric: str
    low: float
    high: float
    timed = False

    @property
    def label(self) -> str:
        return f"{self.metric.replace('_', ' ')} within [{self.low:g}, {self.high:g}], per configuration"


Quantity = TimeToTarget | Difference | Ratio | Spread | Learns | Interaction | Level


@dataclass(frozen=True)
class Claim:
    key: str  # stable id: anchors on the page, tests
    statement: str  # what the claim predicts; "{treatment}" and "{reference}" are filled in
    axis: str
    treatment: object | None  # None: each value of the axis in the results other than the reference
    reference: object
    quantity: Quantity
    predicts: int  # FASTER/HIGHER or SLOWER/LOWER (a Level: the range is the prediction)
    where: dict[str, tuple] = field(default_factory=dict)  # only runs with these axis values
    article_says: str | None = None  # the article's own words for it, shown beside the measured one
    stated: tuple[float, float] | None = None  # the article's number (low == high) or range, judged on the intervals
    test: str = SUPERIORITY  # or NON_INFERIORITY: "not worse than the reference by the margin"


@dataclass(frozen=True)
class Untested:
    """A claim an article makes that no study tests, and why."""

    text: str  # the article's words
    why: str


@dataclass(frozen=True)
class Question:
    key: str
    text: str
    source: str  # where the question or claim comes from
    claims: tuple[Claim, ...]
    article: str | None = None  # the seed article's id ("000"): its setup and disagreements (articles.py)
    untested: tuple[Untested, ...] = ()


TEST_ACCURACY = Difference("test_accuracy", "test accuracy", ACCURACY_MARGIN)

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
                "without BN, {treatment} stalls near chance in more runs than {reference}",
                "activation",
                "sigmoid",
                "relu",
                Learns(),
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

GRADIENT_SHARE = Ratio(
    "grad_norm_first_over_last", "first layer's share of the gradient (first / last hidden layer's norm)", 1.5
)
FINAL_TRAIN_LOSS = Ratio("final_train_loss", "final training loss (trailing mean)", SPEED_MARGIN)
NOT_MEASURED_SMOOTHNESS = (
    "no measure of smoothness is declared; the per-step training losses are recorded (steps.csv), so one could be wired"
)
NOT_MEASURED_REGULARISATION = (
    "no study compares generalisation (the gap between training and validation at an equal training loss) "
    "with and without BN"
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
                "000a-loss",
                "with sigmoid, {treatment} reaches each training loss sooner than {reference}",
                "bn", "post", "off", TimeToTarget("steps", on="train_loss"), FASTER,
                where={"activation": ("sigmoid",)},
            ),
            Claim(
                "000a-final-loss",
                "with sigmoid, {treatment} ends with a lower training loss than {reference}",
                "bn", "post", "off", FINAL_TRAIN_LOSS, LOWER,
                where={"activation": ("sigmoid",)},
                article_says="the training plots \"achieve significantly better results\"",
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
        article="000",
        untested=(
            Untested("the training loss and training accuracy plots are much smoother", NOT_MEASURED_SMOOTHNESS),
            Untested("batch normalization is used to stabilize the learning process", NOT_MEASURED_SMOOTHNESS),
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
                stated=(5.0, 5.0),
            ),
            Claim(
                "001b",
                "the strided net tops out at 65-70% test accuracy",
                "bn", None, None, Level("test_accuracy", 0.65, 0.70), HIGHER,
                article_says="65 to 70%",
                stated=(0.65, 0.70),
            ),
        ),
        article="001",
        untested=(
            Untested("there are no ups and downs (the notebook, of the BN model's loss)", NOT_MEASURED_SMOOTHNESS),
            Untested("BN also provides a weak form of regularization", NOT_MEASURED_REGULARISATION),
        ),
    ),
    Question(
        "article002",
        "Article 002: is BN after the activation better than before it?",
        "Article 002 (a Keras MLP; tested here on the 300-200-100 MLP, both datasets)",
        (
            Claim(
                "002-accuracy",
                "{treatment} reaches a higher best validation accuracy than {reference}",
                "bn", "post", "pre", Difference("best_val_accuracy", "best validation accuracy", ACCURACY_MARGIN),
                HIGHER,
            ),
            Claim(
                "002-steps",
                "{treatment} reaches each target in fewer steps than {reference}",
                "bn", "post", "pre", TimeToTarget("steps"), FASTER,
            ),
        ),
        article="002",
        untested=(
            Untested(
                "batch normalization helps a network work with better speed",
                "this study compares two placements, not BN against none: the main page's speed question answers it",
            ),
            Untested(
                "batch normalization increases the stability of a neural network",
                "no measure of stability is declared; the runs that diverged are counted per condition",
            ),
            Untested(
                "batch normalization deals with the vanishing/exploding gradient problem",
                "a claim about BN against none, which this study does not train; articles 000 and 004's gradient "
                "claims test it on their studies' recorded gradient norms",
            ),
        ),
    ),
    Question(
        "article003",
        "Article 003: BN costs time per epoch; does faster convergence make up for it?",
        "Article 003 (Fashion-MNIST MLP 300-200-100 without biases, SGD Nesterov with decay)",
        (
            Claim(
                "003a",
                "{treatment} takes longer per epoch than {reference}",
                "bn", None, "off", Ratio("seconds_per_epoch", "training seconds per epoch", 1.05), HIGHER,
            ),
            Claim(
                "003b",
                "{treatment} reaches each target in no more training seconds than {reference} (balanced)",
                "bn", None, "off", TimeToTarget("seconds"), FASTER,
                test=NON_INFERIORITY,
                article_says="\"balanced with\" the faster convergence",
            ),
        ),
        article="003",
        untested=(
            Untested(
                "the model is too shallow to notice the full benefits of batch normalization",
                "a statement about deeper networks, which no study trains",
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
                "{treatment}'s advantage over {reference} grows at the higher learning rates",
                "bn", "pre", "off",
                Interaction("test_accuracy", "test accuracy", "train.optimizer.learning_rate"), HIGHER,
            ),
            Claim(
                "004-lr-faster",
                "{treatment} reaches each target in fewer steps than {reference}",
                "bn", "pre", "off", TimeToTarget("steps"), FASTER,
                article_says="\"so it converges in less iterations\"",
            ),
        ),
        article="004",
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
        article="004",
    ),
    Question(
        "article004_sigmoid",
        "Article 004: does BN make a saturating sigmoid usable, and improve gradient flow?",
        "Article 004 (a conv net with BN before the activation, momentum 0.9)",
        (
            Claim(
                "004-sigmoid",
                "with sigmoid, {treatment} ends above {reference}",
                "bn", "pre", "off", TEST_ACCURACY, HIGHER,
                where={"activation": ("sigmoid",)},
            ),
            Claim(
                "004-gradient-flow",
                "{treatment} gives the first layer a larger share of the gradient than {reference}",
                "bn", "pre", "off", GRADIENT_SHARE, HIGHER,
                article_says="\"Improves gradient flow\"",
            ),
        ),
        article="004",
        untested=(Untested("BN gives some sort of regularization effect", NOT_MEASURED_REGULARISATION),),
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
