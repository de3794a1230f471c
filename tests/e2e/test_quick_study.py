"""`dvc repro` of a shrunk quick study in a copy of the repository, data served from 127.0.0.1."""

from __future__ import annotations

import csv
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient
from ruamel.yaml import YAML

from tests.conftest import REPO
from tests.fake_data import write_mirror

pytestmark = pytest.mark.e2e


def _copy_repo(dest: Path) -> None:
    files = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z"],
        cwd=REPO, capture_output=True, text=True, check=True,
    ).stdout.split("\0")  # fmt: skip
    for name in filter(None, files):
        if (REPO / name).is_file():
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO / name, dest / name)
    for command in (["git", "init", "-q"], ["git", "add", "-A"], ["git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "copy"]):
        subprocess.run(command, cwd=dest, check=True)


def _shrink(params_path: Path) -> None:
    """The quick study's own settings, made smaller still: 8 cells of one short epoch."""
    yaml = YAML(typ="rt")
    params = yaml.load(params_path)
    params["prepare"].update(max_train_examples=400, max_test_examples=200)
    params["matrix"].update(activation=["sigmoid"], bn=["off", "post"], seed=[0, 1])
    params["train"].update(epochs=1, evals_per_epoch=2)
    yaml.dump(params, params_path)


def _dvc(repo: Path, env: dict, *args: str) -> subprocess.CompletedProcess:
    done = subprocess.run([sys.executable, "-m", "dvc", *args], cwd=repo, env=env, capture_output=True, text=True)
    assert done.returncode == 0, f"dvc {' '.join(args)} failed:\n{done.stdout[-4000:]}\n{done.stderr[-4000:]}"
    return done


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    """Run the study once; the tests below look at what it left."""
    import http.server, functools, threading  # noqa: E401 - a module-scoped server, unlike the conftest fixture

    root = tmp_path_factory.mktemp("e2e")
    repo = root / "repo"
    _copy_repo(repo)
    _shrink(repo / "quick" / "params.yaml")
    checksums = write_mirror(root / "mirror", cifar_per_batch=100, cifar_test=200, fmnist_train=500, fmnist_test=200)
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(root / "mirror"))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "DVC_", "BNBENCH_"))}
    env.update(
        BNBENCH_DATA_MIRROR=f"http://127.0.0.1:{server.server_address[1]}",
        BNBENCH_DATA_CHECKSUMS=str(checksums),
        BNBENCH_CACHE_DIR=str(root / "download-cache"),
        PYTHONPATH=str(repo),  # the copy's package, not the one installed from the original checkout
        PATH=f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}",
    )
    first = _dvc(repo, env, "repro", "quick/dvc.yaml")
    yield repo, env, first
    server.shutdown()
    server.server_close()


CELLS = [f"{d}-sigmoid-{bn}-0.0-{s}" for d in ("cifar10", "fashion_mnist") for bn in ("off", "post") for s in (0, 1)]


def test_report_and_results_cover_every_cell(study):
    repo, _, _ = study
    html = (repo / "quick" / "reports" / "index.html").read_text()
    assert "bnbench: bnbench-quick" in html and "Not the published datasets" in html
    assert html.count('src="data:image/png;base64,') == 2  # one figure per dataset, inlined
    assert all(cell in html for cell in CELLS)
    with (repo / "quick" / "reports" / "results.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    assert sorted(f"{r['dataset']}-{r['activation']}-{r['bn']}-{float(r['dropout'])}-{r['seed']}" for r in rows) == sorted(CELLS)
    assert all(0 <= float(r["test_accuracy"]) <= 1 and r["outcome"] == "completed" for r in rows)


def test_one_mlflow_run_per_cell_under_the_study(study):
    repo, _, _ = study
    client = MlflowClient(f"sqlite:///{repo / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("bnbench-quick")
    runs = client.search_runs([experiment.experiment_id], "tags.`bnbench.role` = 'cell'")
    assert sorted(r.data.tags["bnbench.cell"] for r in runs) == sorted(CELLS)
    parents = {r.data.tags["mlflow.parentRunId"] for r in runs}
    assert len(parents) == 1 and client.get_run(parents.pop()).data.tags["bnbench.role"] == "study"
    for run in runs:
        assert run.info.status == "FINISHED"
        name = run.data.tags["bnbench.cell"]
        assert f"{run.data.params['dataset']}-{run.data.params['activation']}-{run.data.params['bn']}" in name
        assert run.data.params["seed"] == name[-1] and run.data.params["train.epochs"] == "1"
        assert run.data.tags["bnbench.dvc_stage"] == f"quick/dvc.yaml:train@{name}"
        assert run.data.tags["bnbench.published_data"] == "false"
        assert "test_accuracy" in run.data.metrics
        curve = client.get_metric_history(run.info.run_id, "val_accuracy")
        assert [m.step for m in curve][0] == 0 and len(curve) == 3  # step 0 and two passes
        artifacts = {a.path for a in client.list_artifacts(run.info.run_id)}
        assert {"history.csv", "metrics.json", "curves.png"} <= artifacts


def test_second_repro_trains_nothing_and_status_is_clean(study):
    repo, env, _ = study
    again = _dvc(repo, env, "repro", "quick/dvc.yaml")
    assert "Running stage" not in again.stdout
    assert "up to date" in _dvc(repo, env, "status", "quick/dvc.yaml").stdout


def test_dvc_metrics_and_plots_work(study):
    repo, env, _ = study
    metrics = _dvc(repo, env, "metrics", "show", "--json").stdout
    assert "test_accuracy" in metrics
    _dvc(repo, env, "plots", "show", "--out", str(repo / "plots"))
    assert (repo / "plots" / "index.html").is_file()
