"""Download a dataset's original files and verify each against its md5.

pooch keeps the cache: each file streams into a temporary name beside it, its md5 is
checked, and only then is it renamed into place, so a killed, cut-short or corrupt
download never leaves a file that a later run trusts. transfer.py makes one attempt at a
file; here tenacity repeats the attempts that may succeed next time (a 5xx, a refused,
broken or silent connection), with a doubling pause, until `attempts` or the deadline.
A 404, wrong bytes or a full disk stop at once. Nothing goes into the stage's folder
until every file of the dataset is verified.
"""

from __future__ import annotations

import json
import os
import shutil
import time
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import pooch
import requests
import tenacity

from pipeline.data.datasets import DATASETS
from pipeline.data.transfer import (
    DEADLINE_ENV,
    TIMEOUT_ENV,
    Attempt,
    DiskUsage,
    DownloadError,
    DownloadSettings,
    describe,
    ensure_free_space,
    is_transient,
)

MIRROR_ENV = "BNBENCH_DATA_MIRROR"
CHECKSUMS_ENV = "BNBENCH_DATA_CHECKSUMS"
CACHE_ENV = "BNBENCH_CACHE_DIR"
MAX_PAUSE_S = 30.0  # the longest pause between two attempts
DEFAULT_SETTINGS = DownloadSettings()


@dataclass(frozen=True)
class FetchedFiles:
    dataset: str
    md5: dict[str, str]  # file name -> md5 the file was verified against
    published: bool  # False when BNBENCH_DATA_CHECKSUMS replaced a published checksum

    def to_json(self) -> str:
        return json.dumps(
            {"dataset": self.dataset, "files": self.md5, "published": self.published},
            indent=2,
            sort_keys=True,
        )


def load_checksum_overrides(path: str | None) -> dict[str, dict[str, str]]:
    """Read BNBENCH_DATA_CHECKSUMS: {dataset: {file name: md5}}, for data that are not the published files."""
    if not path:
        return {}
    try:
        overrides = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as error:
        raise DownloadError(f"{CHECKSUMS_ENV}={path}: cannot read it as JSON ({error})") from None
    if not isinstance(overrides, dict):
        raise DownloadError(f"{CHECKSUMS_ENV}={path}: expected {{dataset: {{file name: md5}}}}")
    for dataset, files in overrides.items():
        if dataset not in DATASETS:
            raise DownloadError(f"{CHECKSUMS_ENV}={path}: unknown dataset {dataset!r} (known: {', '.join(DATASETS)})")
        if not isinstance(files, dict):
            raise DownloadError(f"{CHECKSUMS_ENV}={path}: {dataset} must map file names to md5s")
        for name, md5 in files.items():
            if name not in DATASETS[dataset].md5:
                raise DownloadError(
                    f"{CHECKSUMS_ENV}={path}: {dataset} has no file {name!r} "
                    f"(expected one of {', '.join(DATASETS[dataset].md5)})"
                )
            if not (isinstance(md5, str) and len(md5) == 32 and all(c in "0123456789abcdef" for c in md5.lower())):
                raise DownloadError(f"{CHECKSUMS_ENV}={path}: {dataset}/{name}: {md5!r} is not an md5")
    return overrides


def expected_md5(dataset: str, overrides: dict[str, dict[str, str]]) -> dict[str, str]:
    return {**DATASETS[dataset].md5, **{k: v.lower() for k, v in overrides.get(dataset, {}).items()}}


def _mirror_location(mirror: str) -> str:
    """The mirror as the download reads it: an http(s) URL as given, a file:// URL as the directory it names."""
    parsed = urllib.parse.urlsplit(mirror)
    if parsed.scheme in ("", "http", "https"):  # a URL, or a path
        return mirror
    if parsed.scheme != "file":
        raise DownloadError(
            f"{MIRROR_ENV}={mirror}: a mirror is an http(s) URL, a file:// URL or a local directory, not {parsed.scheme}://"
        )
    if parsed.netloc not in ("", "localhost"):
        raise DownloadError(
            f"{MIRROR_ENV}={mirror}: a file:// URL names a directory on this machine (file:///path); "
            f"mount {parsed.netloc}'s share and give its path"
        )
    return urllib.request.url2pathname(parsed.path)


def _base_location(dataset: str, mirror: str | None) -> str:
    if not mirror:
        return DATASETS[dataset].base_url
    return _mirror_location(mirror).rstrip("/") + f"/{dataset}/"


def _is_url(location: str) -> bool:
    return location.startswith(("http://", "https://"))


def fetch_dataset(
    dataset: str,
    out_dir: Path,
    *,
    mirror: str | None,
    overrides: dict[str, dict[str, str]],
    cache_dir: Path,
    settings: DownloadSettings = DEFAULT_SETTINGS,
    disk_usage: DiskUsage = shutil.disk_usage,
) -> FetchedFiles:
    """Fetch every original file of `dataset` into `out_dir`, each verified against its md5.

    Verified files are kept in a cache outside the pipeline's outputs, so a re-run of
    the stage copies instead of downloading again.
    """
    md5 = expected_md5(dataset, overrides)
    base = _base_location(dataset, mirror)
    if not _is_url(base) and not Path(base).is_dir():
        raise DownloadError(
            f"{MIRROR_ENV}: {base} is not a directory; a mirror is an http(s) URL, a file:// URL or a local "
            f"directory holding <dataset>/<original file name>"
        )
    cache = pooch.create(
        path=cache_dir / dataset,
        base_url=base if _is_url(base) else "",
        registry={name: f"md5:{digest}" for name, digest in md5.items()},
        urls={name: str(Path(base) / name) for name in md5} if not _is_url(base) else None,
        retry_if_failed=0,  # the retries are ours: only transient errors, within the deadline
    )
    pooch.get_logger().setLevel("WARNING")  # its notices would go to stderr, which is for the one error line
    deadline = time.monotonic() + settings.deadline_s
    attempts = {name: Attempt(name, md5[name], settings, deadline, disk_usage) for name in md5}
    try:
        verified = [_fetch_verified(cache, attempts[name], settings, deadline) for name in md5]
        _copy_out(verified, out_dir, disk_usage)  # only now: a failure above leaves the stage's folder untouched
    except DownloadError as error:
        raise DownloadError(f"{dataset}: {error}") from None
    published = md5 == DATASETS[dataset].md5
    return FetchedFiles(dataset=dataset, md5=md5, published=published)


def _fetch_verified(cache: pooch.Pooch, attempt: Attempt, settings: DownloadSettings, deadline: float) -> Path:
    """The cached, verified path of one file, downloaded if need be: a clear DownloadError otherwise."""
    url = cache.get_url(attempt.name)
    retrying = tenacity.Retrying(
        retry=tenacity.retry_if_exception(is_transient),
        stop=tenacity.stop_after_attempt(settings.attempts)
        | tenacity.stop_before_delay(max(0.0, deadline - time.monotonic())),
        wait=tenacity.wait_exponential(multiplier=settings.backoff_s, max=MAX_PAUSE_S),
        before_sleep=lambda state: print(
            f"fetch: {url}: {describe(state.outcome.exception(), settings)}; attempt "
            f"{state.attempt_number + 1} of {settings.attempts} in {state.upcoming_sleep:.1f} s",
            flush=True,
        ),
        reraise=True,
    )
    started = time.monotonic()
    try:
        return Path(retrying(cache.fetch, attempt.name, downloader=attempt))
    except FileNotFoundError:
        raise DownloadError(f"{url} does not exist in the mirror") from None
    except PermissionError as error:
        raise DownloadError(
            f"cannot write the download cache ({error}); make {CACHE_ENV} (default "
            "~/.cache/bnbench) a folder you can write"
        ) from None
    except Exception as error:
        if is_transient(error):
            raise DownloadError(_gave_up(url, error, retrying, settings, time.monotonic() - started)) from None
        if isinstance(error, requests.HTTPError) and error.response is not None:
            status, reason = error.response.status_code, error.response.reason
            fix = (
                f"the mirror has no such file: check {MIRROR_ENV} (it holds <dataset>/<original file name>)"
                if status in (404, 410)
                else "the server refuses it, and asking again would not help"
            )
            raise DownloadError(f"{url} answered HTTP {status} {reason}; {fix}") from None
        if isinstance(error, requests.RequestException):
            raise DownloadError(f"could not download {url} ({error})") from None
        raise


def _gave_up(
    url: str, error: BaseException, retrying: tenacity.Retrying, settings: DownloadSettings, took_s: float
) -> str:
    tried = retrying.statistics["attempt_number"]
    why = (
        f"all {tried} attempts failed"
        if tried >= settings.attempts
        else f"{tried} attempt(s) failed and the deadline ({DEADLINE_ENV}={settings.deadline_s:g} s) would pass "
        "before the next"
    )
    return (
        f"could not download {url}: {describe(error, settings)}; {why}, in {took_s:.1f} s. "
        f"Nothing was kept. Check the network or set {MIRROR_ENV} to a mirror; on a slow one, raise "
        f"{TIMEOUT_ENV} or {DEADLINE_ENV}."
    )


def _copy_out(files: list[Path], out_dir: Path, disk_usage: DiskUsage) -> None:
    """Copy verified files into the stage's folder: called once all of them are verified."""
    size = sum(path.stat().st_size for path in files)
    ensure_free_space(out_dir, size, disk_usage, f"{len(files)} verified file(s)", "free some space there")
    out_dir.mkdir(parents=True, exist_ok=True)
    for path in files:
        shutil.copyfile(path, out_dir / path.name)


def verify_files(raw_dir: Path) -> FetchedFiles:
    """Re-check the files a fetch recorded, before anything parses them."""
    try:
        record = json.loads((raw_dir / "files.json").read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as error:
        raise DownloadError(f"{raw_dir}: no readable files.json ({error}); run the fetch stage") from None
    for name, digest in record["files"].items():
        path = raw_dir / name
        if not path.is_file():
            raise DownloadError(f"{path} is missing; run the fetch stage again")
        actual = pooch.file_hash(str(path), alg="md5")
        if actual != digest:
            raise DownloadError(f"{path}: md5 {actual} does not match {digest}; run the fetch stage again")
    return FetchedFiles(dataset=record["dataset"], md5=record["files"], published=record["published"])


def mirror_from_env() -> str | None:
    return os.environ.get(MIRROR_ENV) or None


def cache_dir_from_env() -> Path:
    return Path(os.environ.get(CACHE_ENV) or pooch.os_cache("bnbench"))
