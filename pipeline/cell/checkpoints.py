"""A cell's training checkpoint on disk, so that a killed cell resumes from its last completed epoch.

Where: <repo>/.bnbench/checkpoints/<study>/<lr policy>/<cell>/<key>.npz (the folder the train
stage passes in: `CHECKPOINTS_DIR` under the repository), outside every DVC
output (DVC deletes a stage's outputs before it runs the stage again) and git-ignored. One file
per cell, replaced at the end of each epoch, deleted once the cell's outputs are written.

The key is a digest of everything that decides the cell's result: its effective settings, the
data digest, the learning-rate policy, the cells' code (the files of pipeline/study/code.py's
`cell_code`, as the stage train-code digests them) and the library versions. A checkpoint written under other settings, data or code is never resumed; the cell
deletes such files when it starts.

Writes are atomic: the state goes to a temporary file beside the checkpoint, is flushed to disk,
and is renamed over it (`os.replace`), so a kill during a write leaves the previous epoch's file
whole and the temporary one is never read. Clearing them all by hand: `rm -rf .bnbench/checkpoints`.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sys
import zipfile
from pathlib import Path

import numpy as np

from pipeline.cell.training import TrainingState
from pipeline.provenance import library_versions
from pipeline.study.code import cell_code
from pipeline.study.schema import CellSettings

CHECKPOINTS_DIR = Path(".bnbench") / "checkpoints"
FORMAT = 1  # bumped when the file's layout changes
CODE_ROOT = Path(__file__).resolve().parents[2]  # the folder holding the `pipeline` package this runs


def source_digest(code_root: Path = CODE_ROOT) -> str:
    """sha256 over the cells' code, names and bytes: a change to any file that decides a cell's result gives another."""
    digest = hashlib.sha256()
    for name in cell_code(code_root):
        digest.update(name.encode() + b"\0")
        digest.update((code_root / name).read_bytes() + b"\0")
    return digest.hexdigest()


def checkpoint_key(settings: CellSettings, data_digest: str, lr_policy: str, source: str | None = None) -> str:
    """Digest of what decides a cell's result; a checkpoint is resumed only under the same key."""
    identity = {
        "format": FORMAT,
        "settings": settings.model_dump(mode="json"),
        "data_digest": data_digest,
        "lr_policy": lr_policy,
        "source": source if source is not None else source_digest(),
        "libraries": library_versions(),
    }
    return hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()[:20]


def _safe(name: str) -> str:
    return "".join(c if c.isalnum() or c in "@._-" else "_" for c in name)


class FileCheckpoint:
    """One cell's checkpoint file: `pipeline.cell.training.Checkpoints` on disk."""

    def __init__(self, folder: Path, key: str):
        self.folder = folder
        self.key = key
        self.path = folder / f"{key}.npz"

    def save(self, state: TrainingState) -> None:
        """Replace the checkpoint with `state`, atomically."""
        arrays = {f"model_{i:04d}": value for i, value in enumerate(state.model_variables)}
        arrays.update({f"optimizer_{i:04d}": value for i, value in enumerate(state.optimizer_variables)})
        measured = dict(state.measured)
        arrays["step_losses"] = np.asarray(measured.pop("step_losses"), dtype=np.float64)
        header = {"format": FORMAT, "key": self.key, "step": state.step, "data_order": state.data_order}
        header["measured"] = measured  # history rows are plain floats and None: JSON keeps them exactly
        arrays["header"] = np.frombuffer(json.dumps(header).encode(), dtype=np.uint8)
        self.folder.mkdir(parents=True, exist_ok=True)
        temporary = self.folder / f".{self.path.name}.{os.getpid()}.tmp"
        with temporary.open("wb") as file:
            np.savez(file, **arrays)
            file.flush()
            os.fsync(file.fileno())  # the bytes are on disk before the name points at them
        os.replace(temporary, self.path)

    def load(self) -> TrainingState | None:
        """The saved state, or None when there is none (or it cannot be read: then it is deleted)."""
        if not self.path.is_file():
            return None
        try:
            with np.load(self.path, allow_pickle=False) as archive:
                header = json.loads(archive["header"].tobytes().decode())
                if header.get("format") != FORMAT or header.get("key") != self.key:
                    raise ValueError("written for another cell, settings or code")
                model = [archive[name] for name in sorted(n for n in archive.files if n.startswith("model_"))]
                optimizer = [archive[name] for name in sorted(n for n in archive.files if n.startswith("optimizer_"))]
                losses = archive["step_losses"].tolist()
        except (OSError, ValueError, KeyError, zipfile.BadZipFile) as error:
            print(
                f"bnbench: {self.path}: unreadable checkpoint ({error}); training the cell from the start",
                file=sys.stderr,
            )
            self.path.unlink(missing_ok=True)
            return None
        return TrainingState(
            step=int(header["step"]),
            model_variables=model,
            optimizer_variables=optimizer,
            data_order=header["data_order"],
            measured={**header["measured"], "step_losses": losses},
        )

    def discard_others(self) -> None:
        """Delete what else the cell's folder holds: checkpoints of other settings or code, temporary files of killed writes."""
        if self.folder.is_dir():
            for path in self.folder.iterdir():
                if path != self.path:
                    path.unlink()

    def clear(self) -> None:
        """Delete the cell's checkpoints: its outputs hold the result now, and a rerun trains afresh."""
        shutil.rmtree(self.folder, ignore_errors=True)


def cell_checkpoint(
    checkpoints_dir: Path, study: str, cell: str, settings: CellSettings, data_digest: str, lr_policy: str
) -> FileCheckpoint:
    """The checkpoint of `cell` of `study` under `checkpoints_dir` (a repository's CHECKPOINTS_DIR)."""
    folder = checkpoints_dir / _safe(study) / _safe(lr_policy) / _safe(cell)
    return FileCheckpoint(folder, checkpoint_key(settings, data_digest, lr_policy))
