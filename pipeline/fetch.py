"""Stage `fetch`: download one dataset's original files and verify each against its md5.

Reads:  the canonical location, or BNBENCH_DATA_MIRROR (http(s) URL or directory
        holding <dataset>/<original file name>); BNBENCH_DATA_CHECKSUMS optionally
        names a JSON {dataset: {file name: md5}} for data that are not the published files;
        BNBENCH_DOWNLOAD_{TIMEOUT,DEADLINE,BACKOFF}_S bound the waiting (docs/operations.md).
Writes: <out>/<original files> and <out>/files.json (the md5s verified, and whether
        they are the published ones).
Run:    python -m pipeline.fetch --dataset cifar10 --out data/raw/cifar10
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from pipeline.data.datasets import DATASETS
from pipeline.data.download import (
    CHECKSUMS_ENV,
    DownloadSettings,
    cache_dir_from_env,
    fetch_dataset,
    load_checksum_overrides,
    mirror_from_env,
)
from pipeline.errors import run_cli
from pipeline.study.params import load_params


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--params", type=Path, action="append", help="params.yaml, then overlays; validated first")
    parser.add_argument("--dataset", required=True, choices=sorted(DATASETS))
    parser.add_argument("--out", type=Path, required=True)
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    load_params(*(args.params or [Path("params.yaml")]))  # fetch is the first stage: stop a bad params.yaml here
    settings = DownloadSettings.from_env()
    overrides = load_checksum_overrides(os.environ.get(CHECKSUMS_ENV))
    if args.dataset in overrides:
        print(
            f"bnbench: WARNING: {args.dataset} is verified against checksums from {CHECKSUMS_ENV}, "
            "not the published ones; runs and the report will say these are not the published data.",
            file=sys.stderr,
        )
    fetched = fetch_dataset(
        args.dataset,
        args.out,
        mirror=mirror_from_env(),
        overrides=overrides,
        cache_dir=cache_dir_from_env(),
        settings=settings,
    )
    (args.out / "files.json").write_text(fetched.to_json() + "\n", encoding="utf-8")
    print(f"fetch: {args.dataset}: {len(fetched.md5)} file(s) verified into {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main))
