"""A cell's checkpoint file: its key, an exact round trip, and writes that a kill cannot leave half done."""

from __future__ import annotations

import shutil

import numpy as np
import pytest

from pipeline.cell import checkpoints
from pipeline.cell.checkpoints import FileCheckpoint, checkpoint_key, source_digest
from pipeline.cell.training import TrainingState
from pipeline.study.schema import CellSettings

CELL = {"dataset": "fashion_mnist", "activation": "relu", "bn": "post", "dropout": 0.5, "seed": 0}
TRAIN = {
    "architecture": "mlp", "optimizer": {"name": "rmsprop", "learning_rate": 0.001}, "epochs": 3, "batch_size": 32,
    "evals_per_epoch": 2, "bn_momentum": 0.99, "bn_epsilon": 0.001,
}  # fmt: skip


def _settings(cell: dict = CELL, **train) -> CellSettings:
    return CellSettings.model_validate({**cell, "train": {**TRAIN, **train}})


def _state(step: int) -> TrainingState:
    rng = np.random.default_rng(step)
    order = np.random.default_rng(7)
    order.permutation(10)
    return TrainingState(
        step=step,
        model_variables=[rng.normal(size=(3, 2)).astype(np.float32), np.array([5, 9], dtype=np.uint32)],
        optimizer_variables=[np.array(step, dtype=np.int64), rng.normal(size=(3, 2)).astype(np.float32)],
        data_order=order.bit_generator.state,
        measured={
            "rows": [
                {"step": 0, "epoch": 0.0, "seconds": 0.0, "train_loss": None, "val_accuracy": 0.1},
                {"step": step, "epoch": 1.0, "seconds": 0.1 + 0.2, "train_loss": 2.302585092994046, "val_accuracy": 1 / 3},
            ],
            "step_losses": [float(x) for x in rng.normal(size=step)],
            "step": step,
            "seconds": 1 / 7,
            "compile_seconds": 0.5,
            "images_after_compile": 288,
            "last_eval_step": step,
        },
    )  # fmt: skip


def _assert_same(a: TrainingState, b: TrainingState) -> None:
    assert a.step == b.step and a.data_order == b.data_order and a.measured == b.measured
    for ours, theirs in ((a.model_variables, b.model_variables), (a.optimizer_variables, b.optimizer_variables)):
        assert len(ours) == len(theirs)
        for x, y in zip(ours, theirs, strict=True):
            assert x.dtype == y.dtype
            np.testing.assert_array_equal(x, y)


def test_key_changes_with_whatever_decides_the_result():
    base = checkpoint_key(_settings(), "digest", "fixed", source="code")
    assert checkpoint_key(_settings(), "digest", "fixed", source="code") == base
    others = [
        checkpoint_key(_settings(optimizer={"name": "rmsprop", "learning_rate": 0.01}), "digest", "fixed", "code"),
        checkpoint_key(_settings(epochs=4), "digest", "fixed", source="code"),
        checkpoint_key(_settings({**CELL, "seed": 1}), "digest", "fixed", source="code"),
        checkpoint_key(_settings({**CELL, "dropout": 0.0}), "digest", "fixed", source="code"),
        checkpoint_key(_settings(), "other data", "fixed", source="code"),
        checkpoint_key(_settings(), "digest", "sweep", source="code"),
        checkpoint_key(_settings(), "digest", "fixed", source="changed code"),
    ]
    assert base not in others and len(set(others)) == len(others)


def test_source_digest_follows_the_cells_code_and_nothing_else(tmp_path):
    shutil.copytree(
        checkpoints.CODE_ROOT / "pipeline", tmp_path / "pipeline", ignore=shutil.ignore_patterns("__pycache__")
    )
    before = source_digest(tmp_path)
    assert before == source_digest(checkpoints.CODE_ROOT)
    for module in ("tracking/runs.py", "runner/record.py", "report/stats.py"):  # record results, decide none
        path = tmp_path / "pipeline" / module
        path.write_text(path.read_text() + "\n# a comment\n")
    assert source_digest(tmp_path) == before
    for module in ("cell/models.py", "study/schema.py", "data/prepared.py"):  # each decides a cell's result
        path = tmp_path / "pipeline" / module
        original = path.read_text()
        path.write_text(original + "\n# a comment\n")
        assert source_digest(tmp_path) != before, module
        path.write_text(original)


def test_a_saved_state_comes_back_exactly(tmp_path):
    store = FileCheckpoint(tmp_path / "cell", key="k")
    assert store.load() is None
    state = _state(10)
    store.save(state)
    _assert_same(store.load(), state)
    store.save(_state(20))  # replaces the previous epoch's
    _assert_same(store.load(), _state(20))
    assert sorted(p.name for p in store.folder.iterdir()) == ["k.npz"]


def test_a_kill_during_a_write_leaves_the_previous_checkpoint(tmp_path, monkeypatch):
    store = FileCheckpoint(tmp_path / "cell", key="k")
    store.save(_state(10))

    def killed_midway(file, **arrays):  # some bytes out, then the process is gone
        file.write(b"PK\x03\x04 half a zip")
        file.flush()
        raise KeyboardInterrupt

    monkeypatch.setattr(checkpoints.np, "savez", killed_midway)
    with pytest.raises(KeyboardInterrupt):
        store.save(_state(20))
    monkeypatch.undo()
    _assert_same(FileCheckpoint(tmp_path / "cell", key="k").load(), _state(10))
    leftovers = [p for p in store.folder.iterdir() if p != store.path]
    assert leftovers  # the half-written temporary file, never read...
    store.discard_others()  # ...and deleted when the cell starts again
    assert [p.name for p in store.folder.iterdir()] == ["k.npz"]


def test_an_unreadable_checkpoint_is_never_trusted(tmp_path, capsys):
    store = FileCheckpoint(tmp_path / "cell", key="k")
    store.save(_state(10))
    store.path.write_bytes(store.path.read_bytes()[:200])
    assert store.load() is None
    assert "unreadable checkpoint" in capsys.readouterr().err and not store.path.exists()


def test_a_checkpoint_of_another_key_is_never_resumed(tmp_path):
    FileCheckpoint(tmp_path / "cell", key="old").save(_state(10))
    (tmp_path / "cell" / "old.npz").rename(tmp_path / "cell" / "new.npz")  # another key's bytes under this name
    assert FileCheckpoint(tmp_path / "cell", key="new").load() is None
    store = FileCheckpoint(tmp_path / "cell", key="current")
    FileCheckpoint(tmp_path / "cell", key="stale").save(_state(10))
    store.discard_others()
    assert not any(store.folder.iterdir())
    store.save(_state(10))
    store.clear()
    assert not store.folder.exists()
