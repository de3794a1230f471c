"""The runner's parts that need no training: stages from dvc.yaml, rounds, stale cells, progress, a worker's task."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from pipeline.runner.local import slot_config, slot_threads
from pipeline.runner.record import Progress, commit_command
from pipeline.runner.stages import Stage, cell_argv, cell_rounds, load_stages, select, stale, upstream_of
from pipeline.runner.worker import SlotConfig, Task, run_task, slot_environment
from pipeline.train import parse_args
from tests.helpers import REPO


def test_cell_argv_is_the_train_stage_command_s_arguments():
    cmd = "python -m pipeline.train --params ../../params.yaml --cell 'a b' --data d --out o"
    assert cell_argv(cmd) == ("--params", "../../params.yaml", "--cell", "a b", "--data", "d", "--out", "o")
    assert cell_argv("python -m pipeline.prepare --dataset cifar10") is None
    assert cell_argv("python -m pipeline.report --cells results/cells") is None


@pytest.fixture(scope="module")
def stages():
    return load_stages(REPO)


def test_stages_of_a_study_with_its_own_dvc_yaml(stages):
    quick = select(stages, ["studies/quick/dvc.yaml"])
    cells = [s for s in quick.values() if s.is_cell]
    assert len(cells) == 16 and all(s.dvcfile == "studies/quick/dvc.yaml" for s in quick.values())
    for stage in cells:
        name = stage.addressing.removeprefix("studies/quick/dvc.yaml:train@")
        assert stage.wdir == REPO / "studies" / "quick"
        args = parse_args(stage.argv)  # the stage's own parser reads the arguments the runner passes
        assert args.cell == name and args.out == Path("results/cells") / name
        assert [str(p) for p in args.params] == ["../../params.yaml", "params.yaml"]
        assert stage.outs == (REPO / "studies" / "quick" / "results" / "cells" / name,)
        dataset = name.split("-")[0]
        assert {f"studies/quick/dvc.yaml:prepare@{dataset}", f"fetch@{dataset}"} <= stage.upstream
    assert not quick["studies/quick/dvc.yaml:report"].is_cell


def test_stages_of_a_study_run_with_the_main_one(stages):
    root = select(stages, ["dvc.yaml"])
    prefixed = [s for a, s in root.items() if a.startswith("article000-train@")]
    assert prefixed and all(s.is_cell and s.wdir == REPO / "studies" / "article000" for s in prefixed)
    assert all(s.outs[0].parent == REPO / "studies" / "article000" / "results" / "cells" for s in prefixed)
    main = [s for a, s in root.items() if a.startswith("train@")]
    assert main and all(s.wdir == REPO for s in main)


def _stage(address: str, cmd: str, upstream: set[str] = frozenset()) -> Stage:
    return Stage(address, "dvc.yaml", cmd, Path("/r"), (), frozenset(upstream))


TRAIN, OTHER = "python -m pipeline.train --cell x --data d --out o", "python -m pipeline.choose"


def _sweep_study() -> dict[str, Stage]:
    parts = [
        _stage("fetch@a", "python -m pipeline.fetch"),
        _stage("prepare@a", "python -m pipeline.prepare", {"fetch@a"}),
        _stage("train@x", TRAIN, {"prepare@a", "fetch@a"}),
        _stage("sweep@x-1", TRAIN, {"prepare@a", "fetch@a"}),
        _stage("sweep@x-2", TRAIN, {"prepare@a", "fetch@a"}),
        _stage("choose", OTHER, {"sweep@x-1", "sweep@x-2", "prepare@a", "fetch@a"}),
        _stage("tuned@x", TRAIN, {"choose", "sweep@x-1", "sweep@x-2", "prepare@a", "fetch@a"}),
        _stage("report", "python -m pipeline.report", {"train@x", "tuned@x", "choose", "sweep@x-1", "sweep@x-2"}),
    ]
    return {s.addressing: s for s in parts}


def test_tuned_cells_come_in_a_round_after_the_sweep_they_need():
    stages = _sweep_study()
    assert cell_rounds(stages, stages) == [["sweep@x-1", "sweep@x-2", "train@x"], ["tuned@x"]]
    assert cell_rounds(stages, ["train@x", "report"]) == [["train@x"]]
    assert cell_rounds(stages, ["report"]) == []


def test_upstream_stages_are_the_ones_that_are_not_cells():
    stages = _sweep_study()
    assert upstream_of(stages, ["train@x", "sweep@x-1"]) == ["fetch@a", "prepare@a"]
    assert upstream_of(stages, ["tuned@x"]) == ["choose", "fetch@a", "prepare@a"]


def test_stale_cells_are_those_dvc_status_lists_with_a_change():
    status = {
        "s.yaml:train@b": [{"changed deps": {"data/prepared/a": "modified"}}],
        "s.yaml:train@c": ["always changed"],
        "s.yaml:train@d": [],
        "s.yaml:prepare@a": [{"changed outs": {"data/prepared/a": "deleted"}}],
    }
    assert stale(status, ["s.yaml:train@a", "s.yaml:train@b", "s.yaml:train@c", "s.yaml:train@d"]) == [
        "s.yaml:train@b",
        "s.yaml:train@c",
    ]
    assert stale({}, ["s.yaml:train@a"]) == []


def test_progress_counts_and_eta():
    now = [100.0]
    progress = Progress(5, clock=lambda: now[0])
    assert progress.line() == "done 0/5, running 0, failed 0, elapsed 0:00, ETA ?"
    progress.start("a")
    progress.start("b")
    now[0] = 120.0
    progress.stop("a")
    progress.finish("a", ok=True)
    progress.start("a")  # a start event read after the cell ended: not running again
    progress.start("c")
    assert (progress.done, progress.failed, progress.running) == (1, 0, {"b", "c"})
    assert progress.eta() == pytest.approx(20.0 * 4)  # 20 s per finished cell, 4 left
    now[0] = 130.0
    progress.stop("b")
    progress.finish("b", ok=False)
    assert progress.line() == "done 1/5, running 1, failed 1, elapsed 0:30, ETA 0:45"


def test_threads_and_devices_per_slot():
    assert [slot_threads(2, k) for k in (1, 2, 3)] == [2, 1, 1]
    assert slot_threads(16, 3) == 5
    assert slot_config(2, None, None, threads=2).threads == 2  # --threads: every slot gets that many
    assert slot_config(1, "0", 4096).gpu_memory_mb == 4096 and slot_config(4, "0", None).gpu_memory_fraction == 0.225
    config = SlotConfig(threads=4, devices=("0", "1"), gpu_memory_fraction=0.45)
    env = [slot_environment(config, slot) for slot in range(3)]
    assert [e["CUDA_VISIBLE_DEVICES"] for e in env] == ["0", "1", "0"]
    assert env[0]["TF_NUM_INTRAOP_THREADS"] == env[0]["OMP_NUM_THREADS"] == "4"
    assert env[0]["XLA_PYTHON_CLIENT_MEM_FRACTION"] == "0.450"
    assert "CUDA_VISIBLE_DEVICES" not in slot_environment(SlotConfig(threads=1), 0)


def test_a_slot_s_cells_say_whether_other_slots_share_their_device():
    # slots on one device train at the same time: the CPU with no GPU given, or one GPU for several slots
    assert [slot_config(k, None, None).device_shared for k in (1, 2)] == [False, True]
    assert [slot_config(k, "0,1", None).device_shared for k in (1, 2, 3, 4)] == [False, False, True, True]
    assert slot_environment(slot_config(2, None, None), 0)["BNBENCH_DEVICE_SHARED"] == "true"
    assert slot_environment(slot_config(1, None, None), 0)["BNBENCH_DEVICE_SHARED"] == "false"


def test_a_finished_cell_is_committed_as_dvc_repro_records_it():
    command = commit_command(["s/dvc.yaml:train@a", "s/dvc.yaml:train@b"])
    assert command[:3] == [sys.executable, "-m", "dvc"]
    assert command[3:] == ["commit", "--force", "s/dvc.yaml:train@a", "s/dvc.yaml:train@b"]


@pytest.fixture
def task(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    wdir = tmp_path / "studies" / "s"
    out = wdir / "results" / "cells" / "c"
    out.mkdir(parents=True)
    (out / "stale.txt").write_text("from an older run")
    monkeypatch.setenv("DVC_STAGE", "before")  # run_task sets both as dvc repro does: restored after the test
    monkeypatch.setenv("DVC_ROOT", "before")
    yield Task("studies/s/dvc.yaml:train@c", tmp_path, wdir, ("--cell", "c"), (out,), tmp_path / "logs" / "c.log")


def test_a_task_runs_the_stage_entry_where_and_as_dvc_would(task):
    seen = {}

    def entry(argv):
        seen.update(argv=argv, cwd=Path.cwd(), stage=os.environ["DVC_STAGE"], root=os.environ["DVC_ROOT"])
        seen["out_left"] = task.outs[0].exists()
        print("from python")
        os.write(2, b"from the C++ side\n")
        return 0

    result = run_task(task, entry)
    assert result.ok and result.addressing == task.addressing and result.ended >= result.started
    assert seen == {
        "argv": ("--cell", "c"),
        "cwd": task.wdir,
        "stage": task.addressing,
        "root": str(task.root),
        "out_left": False,  # removed before the cell ran, as dvc repro removes a stage's outputs
    }
    log = task.log.read_text()
    assert "from python" in log and "from the C++ side" in log
    assert Path.cwd() == task.root


def test_a_failing_task_returns_non_zero_with_its_traceback_in_its_log(task, capfd):
    def entry(argv):
        raise ValueError("broken cell")

    assert run_task(task, entry).returncode == 1
    assert "ValueError: broken cell" in task.log.read_text()
    assert "broken cell" not in capfd.readouterr().err  # in the log, not on the runner's display
    assert run_task(task, lambda argv: 2).returncode == 2


def _task(stage: Stage, root: Path = REPO) -> Task:
    return Task(stage.addressing, root, stage.wdir, stage.argv, stage.outs, root / "logs" / "x.log")


def test_cells_that_differ_only_in_seed_train_as_one_group_split_by_size(stages):
    from pipeline.runner.groups import group_tasks

    quick = [_task(s) for s in select(stages, ["studies/quick/dvc.yaml"]).values() if s.is_cell]
    batches = group_tasks(quick)  # 2 datasets x 2 activations x 2 BN placements x 2 seeds: 8 kinds of two seeds
    names = [[t.addressing.rsplit("@", 1)[1] for t in batch] for batch in batches]
    assert [len(batch) for batch in batches] == [2] * 8
    assert all(len({n.rsplit("-", 1)[0] for n in batch}) == 1 for batch in names)  # only the seed differs
    assert [len(batch) for batch in group_tasks(quick, size=1)] == [1] * 16


def test_a_sweeps_rates_share_a_group_and_other_studies_do_not(stages):
    from pipeline.runner.groups import group_tasks

    root = select(stages, ["dvc.yaml"])
    config = "cifar10-relu-pre-0.0"
    sweep = [_task(s) for a, s in root.items() if a.startswith(f"sweep@{config}-") and s.is_cell]
    assert len(sweep) == 7  # the grid's seven rates
    assert group_tasks(sweep) == [sweep]
    article = [_task(s) for a, s in root.items() if a.startswith("article000-train@") and s.is_cell][:1]
    assert len(group_tasks(sweep + article)) == 2  # another study's params: its own program


def test_a_group_runs_as_its_stages_would_each_with_its_log(task, tmp_path):
    from pipeline.runner.worker import run_group

    other = Task("studies/s/dvc.yaml:train@d", task.root, task.wdir, ("--cell", "d"), (), tmp_path / "logs" / "d.log")
    seen = {}

    def entry(argvs, stages):
        seen.update(argvs=argvs, stages=stages, cwd=Path.cwd(), out_left=task.outs[0].exists())
        print("from the group")
        return 0

    results = run_group([task, other], entry)
    assert [r.addressing for r in results] == [task.addressing, other.addressing] and all(r.ok for r in results)
    assert seen == {
        "argvs": [("--cell", "c"), ("--cell", "d")],
        "stages": [task.addressing, other.addressing],
        "cwd": task.wdir,
        "out_left": False,
    }
    assert "from the group" in task.log.read_text() and "from the group" in other.log.read_text()
    assert [r.returncode for r in run_group([task, other], lambda argvs, stages: 1)] == [1, 1]


def test_the_group_engine_is_refused_where_it_cannot_run(monkeypatch, capsys):
    from pipeline.cli import main

    monkeypatch.delenv("KERAS_BACKEND", raising=False)
    assert main(["run", "studies/quick/dvc.yaml", "--engine", "group"]) != 0
    assert "KERAS_BACKEND=jax" in capsys.readouterr().err
    monkeypatch.setenv("KERAS_BACKEND", "jax")
    assert main(["run", "--engine", "group", "--ray", "auto"]) != 0
    assert "local slots" in capsys.readouterr().err
    assert main(["run", "--engine", "group", "--group-size", "0"]) != 0
    assert "--group-size 0" in capsys.readouterr().err


def test_cells_that_differ_in_dropout_rate_never_share_a_program(stages):
    from pipeline.runner.groups import group_tasks

    root = select(stages, ["dvc.yaml"])
    cells = [_task(s) for a, s in root.items() if a.startswith("train@cifar10-relu-pre-") and s.is_cell]
    batches = group_tasks(cells)
    assert len(cells) == 20 and [len(batch) for batch in batches] == [10, 10]  # two rates, ten seeds each
    assert [{t.addressing.split("-")[3] for t in batch} for batch in batches] == [{"0.0"}, {"0.5"}]
