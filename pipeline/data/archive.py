"""Refuse a tar archive with a member that could reach outside it, before anything in it is read.

The parsers read members by name and never extract, but an archive that holds links,
devices, absolute paths or `..` is not what any dataset's authors publish: it is refused
whole, with the member named, rather than read around.
"""

from __future__ import annotations

import tarfile
from pathlib import Path, PurePosixPath

from pipeline.data.raw import FormatError

_KINDS = {
    tarfile.SYMTYPE: "a symbolic link",
    tarfile.LNKTYPE: "a hard link",
    tarfile.CHRTYPE: "a character device",
    tarfile.BLKTYPE: "a block device",
    tarfile.FIFOTYPE: "a FIFO",
}


def _problem(member: tarfile.TarInfo) -> str | None:
    name = PurePosixPath(member.name)
    if name.is_absolute():
        return "has an absolute path"
    if ".." in name.parts:
        return "has a '..' component"
    if member.isfile() or member.isdir():
        return None
    target = f" to {member.linkname}" if member.issym() or member.islnk() else ""
    return f"is {_KINDS.get(member.type, f'of tar type {member.type!r}')}{target}, not a regular file or a folder"


def check_members(archive: tarfile.TarFile, path: Path) -> None:
    """Raise FormatError naming `path` and the first member that is not a plain file or folder inside it."""
    for member in archive.getmembers():
        problem = _problem(member)
        if problem:
            raise FormatError(
                f"{path}: member {member.name} {problem}; the archive is refused and nothing in it was read. "
                "Delete it and fetch it again from a mirror you trust."
            )
