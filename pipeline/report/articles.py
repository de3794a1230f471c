"""What each seed article ran, and where its text and its code disagree, declared as data.

A claim study copies its article's setup where the article states it (studies/article*/params.yaml
says where each setting comes from) and departs from it where it must (a validation split held
out of training, a budget rounded to whole epochs). The article's heading on the page lists every
setting here on which the runs differ from the article: the study's value is read from the runs
(results.csv's columns), never written here, so a study that drifts from its article says so.

Where an article's text and its code disagree, the study follows the code, and the page says so
(`text_vs_code`); what the article leaves unstated and the study fills in is `unstated`.
Sources: the articles' text (../shared/seeds/) and, for article 001, the author's repository
github.com/ilango100/batch_norm as it stood when the article appeared (3 June 2018): cifar.py
divides the pixels by 255 in every version from commit 5732f28 ("Make into generators",
2018-05-26) on; commit 91f396b (2018-05-26) sets batches of 5,000; the notebook as published
(388a10e, 2018-06-04) passes no BN momentum, so TensorFlow's default 0.99 ran; `momentum: 0.75`
came with 2a641e2 ("Trained with adjusted momentum", 2018-06-08), after the article.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import pandas as pd

from pipeline.report.tables import value_text


@dataclass(frozen=True)
class Setting:
    """One setting as the article ran it: the results.csv column that holds the study's, and the article's value."""

    label: str  # how the page names it
    column: str  # the per-run column the study's value is read from
    article: tuple  # the article's value(s): a study value outside them is a difference
    article_text: str  # the article's value in words, with where it comes from


@dataclass(frozen=True)
class Article:
    key: str  # "000"
    settings: tuple[Setting, ...]
    text_vs_code: tuple[str, ...] = ()  # each place the text and the code disagree, and which the study follows
    unstated: str = ""  # what the article does not state and the study fills in


ARTICLES: dict[str, Article] = {
    "000": Article(
        "000",
        (
            Setting("training images", "train_examples", (50_000,), "all 50,000 (it validates on the test set)"),
            Setting("input scaling", "input_scaling", ("l2_axis1",), "keras.utils.normalize(x, axis=1)"),
            Setting(
                "optimizer",
                "train.optimizer.epsilon_placement",
                ("after_sqrt",),
                "standalone Keras 2.2's rmsprop: lr·g / (√a + 1e-7)",
            ),
            Setting("learning rate", "train.optimizer.learning_rate", (0.001,), "0.001 (Keras' default)"),
            Setting("batch size", "train.batch_size", (32,), "32"),
            Setting("augmentation: zoom", "train.augmentation.zoom", (0.2,), "zoom_range=0.2"),
            Setting("augmentation: shear", "train.augmentation.shear_degrees", (0.2,), "shear_range=0.2 (degrees)"),
            Setting("augmentation: flip", "train.augmentation.horizontal_flip", (True,), "horizontal_flip=True"),
            Setting("budget", "budget_steps", (7_810,), "7,810 steps of 32 (10 'epochs' of 781 steps: 5 passes)"),
            Setting("BN momentum", "train.bn_momentum", (0.99,), "Keras' default 0.99"),
        ),
        text_vs_code=(
            'The text normalizes "the output of the neuron before it enters the activation function" (BN before '
            "the activation); the code adds BatchNormalization() after Conv2D(..., activation=...), after the "
            "activation. The study follows the code: BN after the activation.",
            "The text normalizes the inputs so that their mean is 0 and their standard deviation 1; the code's "
            "keras.utils.normalize(X, axis=1) scales each image's columns to unit L2 norm. The study follows the code.",
            "The code sets steps_per_epoch = 50,000 / 64 while drawing batches of 32, so each of its 10 'epochs' is "
            "half a pass. The study follows the code's budget in passes over the training images (5).",
        ),
    ),
    "001": Article(
        "001",
        (
            Setting("training images", "train_examples", (50_000,), "all 50,000 (it evaluates on the test set)"),
            Setting("input scaling", "input_scaling", ("unit_range",), "pixels / 255 (cifar.py, commit 5732f28 on)"),
            Setting(
                "BN momentum",
                "train.bn_momentum",
                (0.99,),
                "TensorFlow's default 0.99 (the published notebook, 388a10e, passes none)",
            ),
            Setting("batch size", "train.batch_size", (5_000,), "5,000 (cifar.py, commit 91f396b)"),
            Setting("optimizer", "train.optimizer.name", ("adam",), "tf.train.AdamOptimizer()"),
            Setting("budget", "budget_steps", (400, 100), "400 steps without BN, 100 with BN"),
        ),
        text_vs_code=(
            'The text says what no BN "achieves in 350 steps" BN achieves "in just 70" without naming the '
            'quantity; the notebook names it: "about 350 steps to reach 0.2 loss" (training loss). The study '
            "follows the notebook.",
            'The text puts BN "after Activation, ... before the input of each layer"; the code also normalizes '
            "the raw image (before the first convolution) and the softmax layer's input. The study follows the code.",
        ),
        unstated="Adam's epsilon is TensorFlow 1's 1e-8 in the notebook; Keras 3 uses 1e-7, not a setting here.",
    ),
    "002": Article(
        "002",
        (
            Setting(
                "model and data",
                "train.architecture",
                ("toy",),
                "a toy Dense 16-32-2 on inputs of shape (1, 5), never trained on data",
            ),
        ),
        text_vs_code=(
            "The code's Dense(32, activation-'relu') is a syntax error; the study reads it as activation='relu'.",
            "The text calls the batch mean and standard deviation trainable parameters; its own numpy code, and "
            "Keras, compute them from each batch.",
        ),
        unstated="The article trains nothing: the net, the data, the optimizer and the budget are the benchmark's.",
    ),
    "003": Article(
        "003",
        (
            Setting(
                "training images",
                "train_examples",
                (60_000,),
                "all 60,000, its 5,000 validation images among them",
            ),
            Setting("input scaling", "input_scaling", ("unit_range",), "pixels / 255.0"),
            Setting("optimizer", "train.optimizer.name", ("sgd",), "SGD(lr=0.01, decay=1e-6, momentum=0.9, nesterov)"),
            Setting("learning rate", "train.optimizer.learning_rate", (0.01,), "0.01"),
            Setting("epochs", "train.epochs", (60,), "60"),
            Setting("batch size", "train.batch_size", (32,), "model.fit's default, 32"),
            Setting("bias before BN", "train.post_bn_bias", (False,), "Dense(..., use_bias=False) in both placements"),
        ),
        text_vs_code=(
            'The text sets "a validation portion" aside to assess the network during training; the code takes '
            "train_images[:5000] as validation but trains on all 60,000, those 5,000 included. Here the study "
            "follows the text: the 5,000 are held out of training, or the validation would assess nothing.",
        ),
    ),
    "004": Article(
        "004",
        (
            Setting("BN momentum", "train.bn_momentum", (0.9,), "momentum=0.9"),
            Setting("BN epsilon", "train.bn_epsilon", (0.001,), "epsilon=0.001"),
        ),
        unstated=(
            "The article shows one block (conv 32 5x5, BN, ReLU, max pool); the rest of the net, the optimizer, "
            "the data and the budget are not stated and are filled in (pipeline/cell/models.py, conv5_cnn)."
        ),
    ),
}


def _same(study: object, article: object) -> bool:
    if isinstance(study, bool) or isinstance(article, bool):
        return study == article
    if isinstance(study, int | float) and isinstance(article, int | float):
        return math.isclose(float(study), float(article), rel_tol=1e-9)
    return study == article


def differences(article: Article, runs: pd.DataFrame) -> list[str]:
    """How the runs differ from the article, setting by setting, in words ("" where they do not)."""
    lines = []
    for setting in article.settings:
        if setting.column not in runs or runs[setting.column].isna().all():
            lines.append(f"{setting.label}: the article {setting.article_text}; not recorded by these runs")
            continue
        values = sorted(runs[setting.column].dropna().unique().tolist(), key=str)  # numpy scalars as Python's
        if all(any(_same(v, a) for a in setting.article) for v in values):
            continue
        here = ", ".join(value_text(v) for v in values)
        lines.append(f"{setting.label}: the article {setting.article_text}; here {here}")
    return lines
