"""Download a dataset's original files and verify each against its md5.

pooch does the work: it streams each file into a temporary name beside the
cache, checks the md5, and only then renames it into place, so a killed or
corrupt download never leaves a file that a later run trusts. Failed downloads
(network errors or a checksum mismatch) are retried with a growing pause.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path

import pooch
import requests

from pipeline.data.datasets import DATASETS
from pipeline.errors import UserError

MIRROR_ENV = "BNBENCH_DATA_MIRROR"
CHECKSUMS_ENV = "BNBENCH_DATA_CHECKSUMS"
CACHE_ENV = "BNBENCH_CACHE_DIR"
RETRIES = 3  # after the first attempt; pooch waits 1 s, 2 s, 3 s between them
HTTP_TIMEOUT_S = 60  # per connection attempt and per read, not for the whole file


class DownloadError(UserError):
    """A file could not be fetched or did not match its checksum."""


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


def _base_location(dataset: str, mirror: str | None) -> str:
    if not mirror:
        return DATASETS[dataset].base_url
    return mirror.rstrip("/") + f"/{dataset}/"


def _is_url(location: str) -> bool:
    return location.startswith(("http://", "https://"))


def _copy_local(source: str, output_file: str, _pooch: object) -> None:
    # A local mirror goes through the same verify-then-rename path as a download.
    shutil.copyfile(source, output_file)


def fetch_dataset(
    dataset: str,
    out_dir: Path,
    *,
    mirror: str | None,
    overrides: dict[str, dict[str, str]],
    cache_dir: Path,
) -> FetchedFiles:
    """Fetch every original file of `dataset` into `out_dir`, each verified against its md5.

    Verified files are kept in a cache outside the pipeline's outputs, so a re-run of
    the stage copies instead of downloading again.
    """
    md5 = expected_md5(dataset, overrides)
    base = _base_location(dataset, mirror)
    if not _is_url(base) and not Path(base).is_dir():
        raise DownloadError(
            f"{MIRROR_ENV}: {base} is not a directory; a mirror is an http(s) URL or a local "
            f"directory holding <dataset>/<original file name>"
        )
    cache = pooch.create(
        path=cache_dir / dataset,
        base_url=base if _is_url(base) else "",
        registry={name: f"md5:{digest}" for name, digest in md5.items()},
        urls={name: str(Path(base) / name) for name in md5} if not _is_url(base) else None,
        retry_if_failed=RETRIES,
    )
    out_dir.mkdir(parents=True, exist_ok=True)
    for name in md5:
        url = cache.get_url(name)
        downloader = (
            pooch.HTTPDownloader(progressbar=sys.stderr.isatty(), timeout=HTTP_TIMEOUT_S)
            if _is_url(url)
            else _copy_local
        )
        try:
            cached = cache.fetch(name, downloader=downloader)
        except FileNotFoundError:
            raise DownloadError(f"{dataset}: {url} does not exist in the mirror") from None
        except ValueError as error:
            raise DownloadError(
                f"{dataset}: {name} from {url} failed verification after {RETRIES + 1} attempts "
                f"({error}). The file is corrupt or truncated and was not kept; check the mirror, "
                f"or {CHECKSUMS_ENV} if you meant to use other data."
            ) from None
        except PermissionError as error:
            raise DownloadError(
                f"{dataset}: cannot write the download cache ({error}); make {CACHE_ENV} (default "
                "~/.cache/bnbench) a folder you can write"
            ) from None
        except requests.RequestException as error:
            raise DownloadError(
                f"{dataset}: could not download {url} after {RETRIES + 1} attempts ({error}). "
                f"Check the network, or set {MIRROR_ENV} to a mirror (http(s) URL or directory)."
            ) from None
        shutil.copyfile(cached, out_dir / name)
    published = md5 == DATASETS[dataset].md5
    return FetchedFiles(dataset=dataset, md5=md5, published=published)


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
