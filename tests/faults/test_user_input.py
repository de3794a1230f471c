"""What a user types or sets, through the command a user runs: a mirror given as a file:// URL, a new study's
name, a `bnbench repro --glob` pattern that matches no stage, an overlay without a name, and a CPU machine
whose TensorFlow probes for CUDA.

Each bad input gets one line naming the problem and the fix, exit 1, and nothing written; a good one works.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from ruamel.yaml import YAML

from pipeline.cell.device import CUINIT_FAILED, NVIDIA_DRIVER
from tests.helpers import REPO, write_tiny_prepared
from tools.fake_data import md5, write_fashion_mnist
from tools.repo_copy import copy_repo

BNBENCH = Path(sys.executable).parent / "bnbench"  # the console script the project installs ([project.scripts])


def fault(area: str, case: str, holds: str):
    return pytest.mark.fault(area=area, case=case, holds=holds)


def _env(**extra: str) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "DVC_", "BNBENCH_", "KERAS_"))}
    return {**env, **extra}


def _one_line(done: subprocess.CompletedProcess, *needles: str) -> str:
    assert done.returncode == 1, done.stdout + done.stderr
    lines = done.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("bnbench: "), done.stderr
    for needle in needles:
        assert needle in lines[0], lines[0]
    return lines[0]


# --- the mirror -----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def mirror(tmp_path_factory) -> tuple[Path, Path]:
    """A local mirror of Fashion-MNIST-format files, and the checksums file that vouches for them."""
    root = tmp_path_factory.mktemp("mirror")
    (root / "fashion_mnist").mkdir()
    write_fashion_mnist(root / "fashion_mnist", train=60, test=20)
    sums = root.parent / f"{root.name}-sums.json"
    sums.write_text(json.dumps({"fashion_mnist": {p.name: md5(p) for p in (root / "fashion_mnist").iterdir()}}))
    return root, sums


def _fetch(tmp_path: Path, mirror_value: str, sums: Path | None = None) -> subprocess.CompletedProcess:
    env = _env(BNBENCH_DATA_MIRROR=mirror_value, BNBENCH_CACHE_DIR=str(tmp_path / "cache"))
    if sums:  # the mirror's own files: vouched for by a checksums file (one warning line)
        env["BNBENCH_DATA_CHECKSUMS"] = str(sums)
    argv = ["--params", str(REPO / "params.yaml"), "--dataset", "fashion_mnist", "--out", str(tmp_path / "raw")]
    return subprocess.run(
        [sys.executable, "-m", "pipeline.fetch", *argv], cwd=REPO, env=env, capture_output=True, text=True, timeout=300
    )


@fault("mirror", "a file:// URL as the mirror (file:///path)", "accepted as the directory it names; every file fetched")
def test_a_file_url_mirror_is_the_directory_it_names(tmp_path, mirror):
    folder, sums = mirror
    done = _fetch(tmp_path, folder.as_uri(), sums)
    assert done.returncode == 0, done.stderr
    assert sorted(p.name for p in (tmp_path / "raw").iterdir() if p.suffix == ".gz") == sorted(
        p.name for p in (folder / "fashion_mnist").iterdir()
    )


@pytest.mark.parametrize(
    ("url", "needles"),
    [
        pytest.param("file://fileserver/share/mirror", ["file:///path", "mount fileserver's share"],
                     marks=fault("mirror", "a file:// URL naming another host", "exit 1; one line; no files"), id="host"),
        pytest.param("ftp://example.org/mirror", ["an http(s) URL, a file:// URL or a local directory", "not ftp://"],
                     marks=fault("mirror", "a mirror URL of another scheme (ftp://)", "exit 1; one line; no files"),
                     id="scheme"),
    ],
)  # fmt: skip
def test_a_mirror_url_that_names_no_local_folder_is_refused(tmp_path, url, needles):
    _one_line(_fetch(tmp_path, url), "BNBENCH_DATA_MIRROR", *needles)
    assert not (tmp_path / "raw").exists()


# --- a CPU machine --------------------------------------------------------------------------------

CELL = "fashion_mnist-sigmoid-off-0.0-0"
OVERLAY = {
    "study": {"name": "device-probe"},
    "matrix": {"dataset": ["fashion_mnist"], "activation": ["sigmoid"], "bn": ["off"], "dropout": [0.0], "seed": [0]},
    "train": {"architecture": "mlp", "epochs": 1, "evals_per_epoch": 1, "gradient_probe": 0, "bn_probe": 0},
    "sweep": None,
}


@pytest.mark.skipif(NVIDIA_DRIVER.exists(), reason="an NVIDIA driver is loaded here: cuInit succeeds, nothing to quiet")
@fault("device", "a CPU cell on a machine without an NVIDIA driver (TensorFlow probes CUDA)",
       "the cell trains; no 'failed call to cuInit' error on its stderr")  # fmt: skip
def test_a_cpu_cell_logs_no_cuda_error(tmp_path):
    env = _env(PYTHONPATH=str(REPO), MLFLOW_TRACKING_URI=f"sqlite:///{tmp_path / 'mlflow.db'}")
    # This machine's TensorFlow does complain when asked plainly: without that the check below could not fail.
    probe = "import tensorflow as tf; tf.config.list_physical_devices('GPU')"
    bare = subprocess.run([sys.executable, "-c", probe], env=env, capture_output=True, timeout=600)
    if CUINIT_FAILED not in bare.stderr:
        pytest.skip("this TensorFlow logs no cuInit error here, even when asked plainly")
    root = tmp_path / "repo"
    root.mkdir()
    (root / ".dvc").mkdir()  # a bnbench repository, as repo_root knows one
    shutil.copy(REPO / "params.yaml", root / "params.yaml")
    YAML().dump(OVERLAY, root / "study.yaml")
    write_tiny_prepared(root / "data")
    command = [
        sys.executable, "-m", "pipeline.train", "--params", "params.yaml", "--params", "study.yaml",
        "--cell", CELL, "--data", "data/prepared", "--out", f"results/cells/{CELL}",
    ]  # the stage's command, as dvc.yaml gives it  # fmt: skip
    done = subprocess.run(command, cwd=root, env=env, capture_output=True, timeout=900)
    assert done.returncode == 0, done.stderr.decode(errors="replace")[-4000:]
    assert (root / "results" / "cells" / CELL / "metrics.json").is_file()
    assert CUINIT_FAILED not in done.stderr, done.stderr.decode(errors="replace")[-4000:]


# --- a new study ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def repo(tmp_path_factory) -> Path:
    """A scratch copy of the repository: new studies are written there, never in the working tree."""
    root = tmp_path_factory.mktemp("cli") / "repo"
    copy_repo(root)
    return root


def _bnbench(repo: Path, *args: str) -> subprocess.CompletedProcess:
    env = _env(PYTHONPATH=str(repo))  # the copy's package, not the one installed from the original checkout
    return subprocess.run([str(BNBENCH), *args], cwd=repo, env=env, capture_output=True, text=True, timeout=300)


def _tree(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.mark.parametrize(
    ("name", "needles"),
    [
        pytest.param("quick", ["studies/quick exists already", "pick another name"],
                     marks=fault("study", "bnbench new-study NAME for a study that exists", "exit 1; one line; "
                                 "its files untouched"), id="exists"),
        pytest.param("My Study", ["'My Study' is not a study name", "e.g. my_study"],
                     marks=fault("study", "bnbench new-study with a name no folder, stage or experiment can take",
                                 "exit 1; one line; nothing written"), id="bad-name"),
        pytest.param("../escape", ["'../escape' is not a study name"],
                     marks=fault("study", "bnbench new-study with a path for a name (../escape)",
                                 "exit 1; one line; nothing written"), id="path"),
    ],
)  # fmt: skip
def test_a_new_study_that_cannot_be_is_refused(repo, name, needles):
    before = _tree(repo / "studies")
    _one_line(_bnbench(repo, "new-study", name), *needles)
    assert _tree(repo / "studies") == before


@fault("study", "bnbench repro --glob with a pattern that matches no stage (a typo: 'artcle001-*')",
       "exit 1; one line naming the nearest stages; DVC never runs, nothing downloaded or recorded")  # fmt: skip
def test_a_glob_that_matches_no_stage_is_refused_before_dvc_runs(repo):
    done = _bnbench(repo, "repro", "--glob", "artcle001-*")
    _one_line(done, "--glob 'artcle001-*' matches no stage", "nearest: article001-")
    assert "Running stage" not in done.stdout
    assert not (repo / "data").exists() and not (repo / "dvc.lock").exists()


@fault("study", "an overlay without study.name in a folder whose name cannot make one ('my study')",
       "exit 1; one line naming the file and both fixes")  # fmt: skip
def test_an_unnamed_overlay_in_a_folder_that_cannot_name_it(tmp_path):
    overlay = tmp_path / "studies" / "my study" / "params.yaml"
    overlay.parent.mkdir(parents=True)
    overlay.write_text("train:\n  epochs: 1\n")
    shutil.copy(REPO / "params.yaml", tmp_path / "params.yaml")
    done = subprocess.run([str(BNBENCH), "check", str(overlay)], cwd=tmp_path, env=_env(), capture_output=True,
                          text=True, timeout=300)  # fmt: skip
    _one_line(done, "study.name is not set", "'my study'", "set study.name in this file, or rename the folder")


# --- a study's params, checked before anything runs ----------------------------------------------


def _repro_quick(tmp_path: Path, edit) -> tuple[Path, subprocess.CompletedProcess]:
    """`dvc repro` of the quick study in a fresh copy whose overlay `edit` changed, as a user would, unregenerated."""
    repo = tmp_path / "repo"
    copy_repo(repo)
    overlay = repo / "studies" / "quick" / "params.yaml"
    overlay.write_text(edit(overlay.read_text()))
    env = _env(
        PYTHONPATH=str(repo),
        PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
        BNBENCH_DATA_MIRROR=str(tmp_path / "no-mirror"),  # were fetch to run, it would fail on this instead
        BNBENCH_CACHE_DIR=str(tmp_path / "cache"),
    )
    done = subprocess.run([sys.executable, "-m", "dvc", "repro", "studies/quick/dvc.yaml"], cwd=repo, env=env,
                          capture_output=True, text=True, timeout=600)  # fmt: skip
    return repo, done


def _stopped_at_preflight(repo: Path, tmp_path: Path, done: subprocess.CompletedProcess) -> str:
    assert done.returncode != 0, done.stdout + done.stderr
    ran = re.findall(r"Running stage '([^']+)'", done.stdout)
    assert ran == ["preflight"], done.stdout  # the first stage, and the only one
    ours = [line for line in done.stderr.splitlines() if line.startswith("bnbench: ")]
    assert len(ours) == 1, done.stderr
    assert not (repo / "data").exists() and not (tmp_path / "cache").exists()  # nothing downloaded
    assert not (repo / "results" / "preflight.json").exists()
    return ours[0]


@fault("study", "a typo in a study's overlay (train.epocs), then dvc repro of that study",
       "the first stage stops it with one line naming the file and key; nothing downloaded, no other stage run")  # fmt: skip
def test_a_typo_in_an_overlay_stops_dvc_repro_before_any_download(tmp_path):
    repo, done = _repro_quick(tmp_path, lambda text: text.replace("  epochs: 2\n", "  epochs: 2\n  epocs: 3\n"))
    line = _stopped_at_preflight(repo, tmp_path, done)
    assert "studies/quick/params.yaml" in line and "train.epocs: unknown key" in line, line


@fault("study", "an overlay's matrix changed and its dvc.yaml not regenerated, then dvc repro",
       "the first stage stops it with one line naming the dvc.yaml and the command; no stage deletes its outputs")  # fmt: skip
def test_an_out_of_date_pipeline_stops_dvc_repro_before_any_stage_runs(tmp_path):
    repo, done = _repro_quick(tmp_path, lambda text: text.replace("  seed: [0, 1]\n", "  seed: [0, 1, 2]\n"))
    line = _stopped_at_preflight(repo, tmp_path, done)
    assert "out of date with the params: studies/quick/dvc.yaml" in line and "pipeline.dvcfile" in line, line


@fault("study", "two studies under one study.name (an overlay copied from another)",
       "refused with one line naming both; no dvc.yaml written")  # fmt: skip
def test_two_studies_of_one_name_are_refused(tmp_path):
    repo = tmp_path / "repo"
    copy_repo(repo)
    copied = repo / "studies" / "copied" / "params.yaml"
    copied.parent.mkdir()
    shutil.copy(repo / "studies" / "quick" / "params.yaml", copied)  # still says name: bnbench-quick
    before = (repo / "dvc.yaml").read_bytes()
    _one_line(_bnbench(repo, "generate"), "study.name bnbench-quick is studies/copied's too", "its own name")
    assert (repo / "dvc.yaml").read_bytes() == before and not (copied.parent / "dvc.yaml").exists()
