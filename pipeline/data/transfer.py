"""One attempt at one file: from an http(s) or local mirror into the temporary file pooch names.

pooch owns the cache: it names a temporary file beside it, calls an `Attempt` to fill it,
checks the md5 again and only then renames it into place, and deletes it on any error. An
attempt adds what pooch's own downloader lacks: it checks the free space before writing,
gives up on a server silent for `timeout_s` and on the whole fetch at its deadline, and
hashes the bytes as they arrive, so wrong bytes are refused with both checksums. Whether a
failed attempt is worth another is `is_transient`'s call; the retries are download.py's.
"""

from __future__ import annotations

import contextlib
import hashlib
import math
import os
import re
import shutil
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import requests
import urllib3
from tqdm import tqdm

from pipeline.errors import UserError

TIMEOUT_ENV = "BNBENCH_DOWNLOAD_TIMEOUT_S"
DEADLINE_ENV = "BNBENCH_DOWNLOAD_DEADLINE_S"
BACKOFF_ENV = "BNBENCH_DOWNLOAD_BACKOFF_S"
MARGIN_BYTES = 64 * 2**20  # left free after a file is written: the disk is shared with everything else
CHUNK_BYTES = 1 << 20

DiskUsage = Callable[[Path], Any]  # shutil.disk_usage, or a stand-in in tests: only `.free` is read


class DownloadError(UserError):
    """A file could not be fetched or did not match its checksum."""


@dataclass(frozen=True)
class DownloadSettings:
    timeout_s: float = 60.0  # to connect, and the longest silence while a file streams in
    deadline_s: float = 3600.0  # all attempts at all of one dataset's files together
    backoff_s: float = 1.0  # pause after the first failed attempt; it doubles each time, up to MAX_PAUSE_S
    attempts: int = 4  # the first one and three retries

    @classmethod
    def from_env(cls) -> DownloadSettings:
        """The defaults, with any of BNBENCH_DOWNLOAD_{TIMEOUT,DEADLINE,BACKOFF}_S set in the environment."""
        fields = {"timeout_s": TIMEOUT_ENV, "deadline_s": DEADLINE_ENV, "backoff_s": BACKOFF_ENV}
        return cls(**{field: _seconds(env) for field, env in fields.items() if os.environ.get(env)})


def _seconds(env: str) -> float:
    raw = os.environ[env]
    try:
        value = float(raw)
    except ValueError:
        value = math.nan
    if not (math.isfinite(value) and value > 0):
        raise DownloadError(f"{env}={raw!r}: expected a number of seconds above 0")
    return value


def is_transient(error: BaseException) -> bool:
    """Whether another attempt may succeed: a server error, a refused, broken or silent connection.

    A 4xx answer is final (the mirror lacks the file, or refuses us). So are wrong bytes: a body
    that arrived whole (urllib3 checks its length against Content-Length, so a cut-short body is
    a broken connection, retried) but hashes wrong is what the mirror holds, and asking again
    would download the same bytes (170 MB for CIFAR-10) to fail the same way.
    """
    if isinstance(error, requests.HTTPError):
        status = error.response.status_code if error.response is not None else 0
        return status >= 500 or status in (408, 429)
    if isinstance(error, requests.exceptions.SSLError):
        return False  # a certificate problem does not go away by asking again
    return isinstance(error, (requests.ConnectionError, requests.Timeout, urllib3.exceptions.HTTPError))


def describe(error: BaseException, settings: DownloadSettings) -> str:
    """A transient error in a few words, for the retry notices and the final message."""
    if isinstance(error, requests.HTTPError) and error.response is not None:
        return f"HTTP {error.response.status_code} {error.response.reason}"
    if isinstance(error, (requests.Timeout, urllib3.exceptions.TimeoutError)):
        return f"the server sent nothing for {settings.timeout_s:g} s ({TIMEOUT_ENV})"
    if isinstance(error, urllib3.exceptions.ProtocolError):
        return f"the connection broke mid-file ({error.args[0]})"
    errno_text = re.search(r"\[Errno -?\d+\] ([^'\")]+)", str(error))
    return errno_text.group(1) if errno_text else f"{type(error).__name__}: {error}"


def _size(n: int) -> str:
    for unit, scale in (("GiB", 2**30), ("MiB", 2**20)):
        if n >= scale:
            return f"{n / scale:.1f} {unit}"
    return f"{n} bytes"


def ensure_free_space(folder: Path, size: int, disk_usage: DiskUsage, what: str, fix: str) -> None:
    """Refuse to write `size` bytes into `folder` unless MARGIN_BYTES stay free after them."""
    existing = next(p for p in (folder, *folder.parents) if p.exists())  # the stage's folder may not exist yet
    free = disk_usage(existing).free
    needed = size + MARGIN_BYTES
    if needed > free:
        raise DownloadError(
            f"{folder}: not enough free disk space for {what}: needs {_size(size)} plus {_size(MARGIN_BYTES)} "
            f"to spare, but {_size(free)} is free; {fix}"
        )


@contextlib.contextmanager
def _open_http(url: str, timeout_s: float) -> Iterator[tuple[int | None, Iterator[bytes]]]:
    # identity: the bytes as stored; a server that gzips a .gz file again would change its md5.
    headers = {"Accept-Encoding": "identity"}
    with requests.get(url, stream=True, timeout=(timeout_s, timeout_s), headers=headers) as response:
        response.raise_for_status()
        length = response.headers.get("Content-Length")

        def chunks() -> Iterator[bytes]:
            # read1 returns whatever has arrived, so the deadline is checked however slowly it comes.
            while chunk := response.raw.read1(CHUNK_BYTES):
                yield chunk

        yield (int(length) if length and length.isdigit() else None), chunks()


@contextlib.contextmanager
def _open_local(path: str) -> Iterator[tuple[int | None, Iterator[bytes]]]:
    with open(path, "rb") as source:
        yield os.fstat(source.fileno()).st_size, iter(lambda: source.read(CHUNK_BYTES), b"")


@dataclass(frozen=True)
class Attempt:
    """A pooch downloader for one file: fills pooch's temporary file, or raises."""

    name: str
    expected_md5: str
    settings: DownloadSettings
    deadline: float  # time.monotonic() past which no byte more is read
    disk_usage: DiskUsage = shutil.disk_usage

    def __call__(self, url: str, output_file: str, _pooch: object) -> None:
        is_url = url.startswith(("http://", "https://"))
        source = _open_http(url, self.settings.timeout_s) if is_url else _open_local(url)
        folder = Path(output_file).parent
        with source as (size, chunks):
            ensure_free_space(  # a size the server does not tell (no Content-Length): the margin alone
                folder, size or 0, self.disk_usage, f"{self.name} from {url}",
                "free some, or set BNBENCH_CACHE_DIR to a folder on a disk with room",
            )  # fmt: skip
            digest = hashlib.md5()
            progress = tqdm(total=size, unit="B", unit_scale=True, leave=False, disable=not sys.stderr.isatty())
            with progress, open(output_file, "wb") as out:
                for chunk in chunks:
                    if time.monotonic() > self.deadline:
                        raise DownloadError(
                            f"{url}: not complete {self.settings.deadline_s:g} s after the fetch began; "
                            f"nothing was kept. Raise {DEADLINE_ENV} on a slow network, or use a nearer mirror."
                        )
                    out.write(chunk)
                    digest.update(chunk)
                    progress.update(len(chunk))
        actual = digest.hexdigest()
        if actual != self.expected_md5:
            raise DownloadError(
                f"{self.name} from {url} failed verification: its md5 is {actual}, expected {self.expected_md5}. "
                f"It was not kept; the mirror holds other bytes: fix the mirror, or set BNBENCH_DATA_CHECKSUMS "
                "if you meant to use other data."
            )
