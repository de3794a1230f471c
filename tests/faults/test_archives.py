"""Hostile archives, and the promise that nothing is ever unpickled.

Each hostile CIFAR-10 archive holds the real batch files plus one member that could reach
outside the archive; it is refused whole, naming the archive and the member, before any
member is read. The pickle tests read the code itself: no module under pipeline/ can
unpickle, and the parsers run end to end with pickle made to fail.
"""

from __future__ import annotations

import ast
import io
import pickle
import tarfile
from pathlib import Path

import numpy as np
import pytest

from pipeline.data.cifar import ARCHIVE, read_cifar10
from pipeline.data.fashion_mnist import read_fashion_mnist
from pipeline.data.prepared import load_prepared
from pipeline.data.raw import FormatError
from tests.helpers import REPO, write_tiny_prepared
from tools.fake_data import write_cifar10

EVIL = b"evil"
PICKLING_MODULES = {"pickle", "_pickle", "cPickle", "cloudpickle", "dill", "joblib", "shelve"}


def fault(case: str, holds: str):
    return pytest.mark.fault(area="archives", case=case, holds=holds)


def _member(name: str, kind: bytes, linkname: str = "") -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type, info.linkname = kind, linkname
    info.size = len(EVIL) if kind == tarfile.REGTYPE else 0
    if kind in (tarfile.CHRTYPE, tarfile.BLKTYPE):
        info.devmajor, info.devminor = 1, 3  # /dev/null's numbers
    return info


HOSTILE = [
    pytest.param(
        _member("/tmp/bnbench-evil", tarfile.REGTYPE), "has an absolute path",
        marks=fault("an archive member with an absolute path", "refused, naming the archive and the member; nothing read"),
        id="absolute",
    ),
    pytest.param(
        _member("cifar-10-batches-bin/../../bnbench-evil", tarfile.REGTYPE), "has a '..' component",
        marks=fault("an archive member with a '..' component", "refused, naming the archive and the member; nothing read"),
        id="dotdot",
    ),
    pytest.param(
        _member("cifar-10-batches-bin/passwd", tarfile.SYMTYPE, "/etc/passwd"), "is a symbolic link to /etc/passwd",
        marks=fault("an archive member that is a symbolic link", "refused, naming the archive and the member; nothing read"),
        id="symlink",
    ),
    pytest.param(
        _member("cifar-10-batches-bin/again.bin", tarfile.LNKTYPE, "cifar-10-batches-bin/data_batch_1.bin"),
        "is a hard link to cifar-10-batches-bin/data_batch_1.bin",
        marks=fault("an archive member that is a hard link (even to a member inside)", "refused, naming the archive and the member; nothing read"),
        id="hardlink",
    ),
    pytest.param(
        _member("cifar-10-batches-bin/null", tarfile.CHRTYPE), "is a character device",
        marks=fault("an archive member that is a character device", "refused, naming the archive and the member; nothing read"),
        id="chardev",
    ),
    pytest.param(
        _member("cifar-10-batches-bin/disk", tarfile.BLKTYPE), "is a block device",
        marks=fault("an archive member that is a block device", "refused, naming the archive and the member; nothing read"),
        id="blockdev",
    ),
    pytest.param(
        _member("cifar-10-batches-bin/pipe", tarfile.FIFOTYPE), "is a FIFO",
        marks=fault("an archive member that is a FIFO", "refused, naming the archive and the member; nothing read"),
        id="fifo",
    ),
]  # fmt: skip


@pytest.fixture(scope="module")
def good_archive(tmp_path_factory) -> bytes:
    path = tmp_path_factory.mktemp("cifar") / ARCHIVE
    write_cifar10(path, per_batch=4, test=4)
    return path.read_bytes()


def _with_member(good: bytes, extra: tarfile.TarInfo, out: Path) -> None:
    """The good archive's members, then `extra` last: a check made while reading would come too late."""
    with tarfile.open(fileobj=io.BytesIO(good), mode="r:gz") as source, tarfile.open(out, "w:gz") as archive:
        for member in source.getmembers():
            archive.addfile(member, source.extractfile(member))
        archive.addfile(extra, io.BytesIO(EVIL) if extra.isfile() else None)


@pytest.mark.parametrize(("member", "problem"), HOSTILE)
def test_a_hostile_member_refuses_the_archive_before_anything_is_read(
    tmp_path, monkeypatch, good_archive, member, problem
):
    path = tmp_path / ARCHIVE
    _with_member(good_archive, member, path)
    read = []
    original = tarfile.TarFile.extractfile
    monkeypatch.setattr(tarfile.TarFile, "extractfile", lambda self, m: read.append(m) or original(self, m))
    with pytest.raises(FormatError) as raised:
        read_cifar10(tmp_path)
    assert str(raised.value).startswith(f"{path}: member {member.name} {problem}"), raised.value
    assert read == []  # refused before any member was read


@fault(
    "a clean archive, as published (folders and regular files)", "read in full; the check refuses nothing legitimate"
)
def test_a_clean_archive_with_its_folder_is_read(tmp_path, good_archive):
    folder = tarfile.TarInfo("cifar-10-batches-bin")
    folder.type = tarfile.DIRTYPE
    with (
        tarfile.open(fileobj=io.BytesIO(good_archive), mode="r:gz") as source,
        tarfile.open(tmp_path / ARCHIVE, "w:gz") as out,
    ):
        out.addfile(folder)
        for member in source.getmembers():
            out.addfile(member, source.extractfile(member))
    raw = read_cifar10(tmp_path)
    assert raw.train_images.shape == (20, 32, 32, 3) and raw.test_labels.shape == (4,)


def _pickle_uses(path: Path, root: Path = REPO) -> list[str]:
    """Every way `path` could unpickle: an import of a pickling module, read_pickle, np.load not refusing pickles."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        where = f"{path.relative_to(root)}:{getattr(node, 'lineno', 0)}"
        if isinstance(node, ast.Import):
            found += [f"{where}: import {a.name}" for a in node.names if a.name.split(".")[0] in PICKLING_MODULES]
        elif isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] in PICKLING_MODULES:
            found.append(f"{where}: from {node.module} import")
        elif isinstance(node, ast.ImportFrom) and node.module == "numpy" and any(a.name == "load" for a in node.names):
            found.append(f"{where}: from numpy import load (call np.load, with allow_pickle=False)")
        elif isinstance(node, ast.Attribute) and node.attr == "read_pickle":
            found.append(f"{where}: read_pickle")
        elif isinstance(node, ast.keyword) and node.arg == "allow_pickle":
            if not (isinstance(node.value, ast.Constant) and node.value.value is False):
                found.append(f"{where}: allow_pickle is not the literal False")
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "load":
            owner = node.func.value
            if isinstance(owner, ast.Name) and owner.id in ("np", "numpy"):
                if not any(k.arg == "allow_pickle" for k in node.keywords):
                    found.append(f"{where}: np.load without allow_pickle=False")
    return found


@fault("code under pipeline/ that could unpickle", "none: no pickling module, every np.load says allow_pickle=False")
def test_no_module_under_pipeline_can_unpickle():
    modules = sorted((REPO / "pipeline").rglob("*.py"))
    assert len(modules) > 20  # the scan sees the package
    assert [use for path in modules for use in _pickle_uses(path)] == []
    uses_np_load = [p for p in modules if "np.load(" in p.read_text(encoding="utf-8")]
    assert uses_np_load, "the scan of np.load calls would prove nothing"


@fault("the scan for unpickling, shown code that unpickles", "each way to unpickle is found")
def test_the_pickle_scan_finds_each_way_to_unpickle(tmp_path):
    bad = tmp_path / "bad.py"
    bad.write_text(
        "import pickle\nfrom joblib import load\nfrom numpy import load as npl\nimport numpy as np\nimport pandas as pd\n"
        "np.load('a.npy')\nnp.load('b.npy', allow_pickle=True)\npd.read_pickle('c')\n"
    )
    uses = _pickle_uses(bad, root=tmp_path)
    assert sorted(u.split(": ", 1)[1] for u in uses) == sorted(
        [
            "import pickle",
            "from joblib import",
            "from numpy import load (call np.load, with allow_pickle=False)",
            "np.load without allow_pickle=False",
            "allow_pickle is not the literal False",
            "read_pickle",
        ]
    ), uses


@fault(
    "parsing both datasets and loading prepared arrays, with pickle made to fail",
    "all of it works: pickle is never called",
)
def test_the_data_path_never_calls_pickle(tmp_path, monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("pickle was called")

    for name in ("load", "loads", "Unpickler"):
        monkeypatch.setattr(pickle, name, refuse)
    write_cifar10(tmp_path / ARCHIVE, per_batch=10, test=10)
    prepared = load_prepared(write_tiny_prepared(tmp_path, train=200, test=50))
    assert read_cifar10(tmp_path).train_images.shape == (50, 32, 32, 3)
    assert np.array_equal(prepared.test.labels, read_fashion_mnist(tmp_path / "raw").test_labels)
